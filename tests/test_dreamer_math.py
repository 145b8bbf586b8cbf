"""The maths of DreamerV3, pinned directly against hand-computed values."""
import math

import pytest
import torch

from wmtool import config
from wmtool.behavior.actor_critic import ReturnNorm, lambda_return
from wmtool.models.rssm import RSSM
from wmtool.nets.dists import (
    OneHot,
    TwoHot,
    categorical_kl,
    sample_onehot,
    symexp,
    symlog,
    unimix_probs,
)


def test_symlog_symexp():
    x = torch.tensor([-1000.0, -2.5, -1.0, 0.0, 0.3, 1.0, 7.0, 1e5])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)
    assert symlog(torch.tensor(math.e - 1)).item() == pytest.approx(1.0)
    assert symlog(torch.tensor(-(math.e - 1))).item() == pytest.approx(-1.0)


def test_twohot_round_trip_and_weights():
    twohot = TwoHot(255, -20.0, 20.0)
    y = torch.tensor([-500.0, -3.2, 0.0, 0.5, 17.0, 1234.5])
    enc = twohot.encode(y)
    assert enc.shape == (6, 255) and torch.allclose(enc.sum(-1), torch.ones(6))
    assert ((enc > 0).sum(-1) <= 2).all()
    decoded = symexp((enc * twohot.bins).sum(-1))  # the expectation of the encoding
    assert torch.allclose(decoded, y, rtol=1e-4, atol=1e-4)
    # 0 sits exactly on the middle bin
    assert enc[2, 127].item() == pytest.approx(1.0)
    # logits equal to log of the encoding decode back to the value
    assert torch.allclose(twohot.mean(torch.log(enc + 1e-12)), y, rtol=1e-3, atol=1e-3)
    # zero logits (zero-initialised heads) predict 0
    assert twohot.mean(torch.zeros(3, 255)).abs().max() < 1e-5


def test_twohot_loss_is_the_cross_entropy_with_the_dense_encoding():
    """The loss gathers the two bins a target's weights sit on; it must equal the full
    cross-entropy -sum(encode(y) * log_softmax(logits)) at every shape and value."""
    twohot = TwoHot(255, -20.0, 20.0)
    torch.manual_seed(0)
    logits = 3 * torch.randn(4, 5, 255)
    target = torch.cat([torch.tensor([-1e6, 0.0, 1e6, 0.3, -7.5]),
                        100 * torch.randn(15)]).reshape(4, 5)
    dense = -(twohot.encode(target) * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(twohot.loss(logits, target), dense, rtol=1e-5, atol=1e-5)
    # and the mean is the softmax expectation of the bins, mapped back through symexp
    expected = symexp((logits.softmax(-1) * twohot.bins).sum(-1))
    torch.testing.assert_close(twohot.mean(logits), expected, rtol=1e-4, atol=1e-4)


def test_lambda_return_hand_computed():
    reward = torch.tensor([1.0, 2.0, 3.0])
    cont = torch.tensor([1.0, 1.0, 0.0])
    value = torch.tensor([10.0, 20.0, 30.0, 40.0])
    gamma, lam = 0.9, 0.5
    r2 = 3.0 + gamma * 0.0 * ((1 - lam) * 40.0 + lam * 40.0)            # = 3
    r1 = 2.0 + gamma * 1.0 * ((1 - lam) * 30.0 + lam * r2)              # = 16.85
    r0 = 1.0 + gamma * 1.0 * ((1 - lam) * 20.0 + lam * r1)              # = 17.5825
    out = lambda_return(reward, cont, value, gamma, lam)
    assert torch.allclose(out, torch.tensor([r0, r1, r2]))
    # λ = 0: one-step TD targets; λ = 1: discounted Monte-Carlo bootstrapped with v_H
    assert torch.allclose(lambda_return(reward, cont, value, gamma, 0.0),
                          reward + gamma * cont * value[1:])
    mc = lambda_return(reward, torch.ones(3), value, 1.0, 1.0)
    assert torch.allclose(mc, torch.tensor([1 + 2 + 3 + 40.0, 2 + 3 + 40.0, 3 + 40.0]))


def test_unimix_and_inverse_cdf_sampling():
    logits = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    probs = unimix_probs(logits, 0.01)
    assert probs[0, 1].item() == pytest.approx(0.0025, rel=1e-4)
    assert probs[0, 0].item() == pytest.approx(0.99 + 0.0025, rel=1e-4)
    torch.manual_seed(0)
    p = torch.tensor([0.1, 0.2, 0.3, 0.4]).expand(200_000, 4)
    freq = sample_onehot(p).mean(0)
    assert torch.allclose(freq, p[0], atol=0.005)


def test_straight_through_gradients():
    logits = torch.randn(5, 8, requires_grad=True)
    dist = OneHot(logits, 0.0)
    sample = dist.sample()
    assert torch.allclose(sample, sample.round(), atol=1e-6)  # forward: exact one-hots
    assert (sample.round().sum(-1) == 1).all()
    weights = torch.randn(8)
    (sample * weights).sum().backward()
    # the gradient is that of the probabilities: d/dlogits sum(probs * w)
    logits2 = logits.detach().clone().requires_grad_(True)
    (logits2.softmax(-1) * weights).sum().backward()
    assert torch.allclose(logits.grad, logits2.grad, atol=1e-6)


def test_kl_free_bits_and_balancing():
    rssm = RSSM(embed_dim=4, act_dim=2, deter=8, hidden=8, stoch=2, classes=3)
    post_logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]))
    prior_logits = torch.log(torch.tensor([[[0.3, 0.3, 0.4], [0.2, 0.5, 0.3]]]))
    post_logits.requires_grad_(True)
    prior_logits.requires_grad_(True)
    kl = categorical_kl(post_logits, prior_logits)
    manual = sum(p * math.log(p / q) for p, q in [(0.7, .3), (.2, .3), (.1, .4), (.1, .2),
                                                   (.1, .5), (.8, .3)])
    assert kl.item() == pytest.approx(manual, rel=1e-5)
    post, prior = {"logits": post_logits}, {"logits": prior_logits}
    loss, metrics = rssm.kl_loss(post, prior, free=0.1, dyn_scale=0.5, rep_scale=0.1)
    assert loss.item() == pytest.approx(0.6 * manual, rel=1e-5)
    loss.backward()
    # dyn trains the prior only, rep the posterior only: each gradient carries its own scale
    g_prior, g_post = prior_logits.grad.clone(), post_logits.grad.clone()
    for lg in (post_logits, prior_logits):
        lg.grad = None
    rssm.kl_loss(post, prior, free=0.1, dyn_scale=1.0, rep_scale=0.0)[0].backward()
    assert torch.allclose(prior_logits.grad * 0.5, g_prior) and post_logits.grad.abs().sum() == 0
    for lg in (post_logits, prior_logits):
        lg.grad = None
    rssm.kl_loss(post, prior, free=0.1, dyn_scale=0.0, rep_scale=1.0)[0].backward()
    assert torch.allclose(post_logits.grad * 0.1, g_post) and prior_logits.grad.abs().sum() == 0
    # below the free bits the loss is constant and passes no gradient
    for lg in (post_logits, prior_logits):
        lg.grad = None
    loss, _ = rssm.kl_loss(post, prior, free=10.0, dyn_scale=0.5, rep_scale=0.1)
    assert loss.item() == pytest.approx(6.0)
    loss.backward()
    assert post_logits.grad.abs().sum() == 0 and prior_logits.grad.abs().sum() == 0


def test_return_normaliser_percentiles_ema_and_floor():
    norm = ReturnNorm(decay=0.99, low=5, high=95)
    returns = torch.arange(101, dtype=torch.float32)  # percentiles 5 and 95 are 5 and 95
    norm.update(returns)
    assert norm.lo.item() == pytest.approx(5.0) and norm.hi.item() == pytest.approx(95.0)
    norm.update(returns * 2)
    assert norm.hi.item() == pytest.approx(0.99 * 95 + 0.01 * 190)
    assert norm.scale().item() == pytest.approx(norm.hi.item() - norm.lo.item())
    small = ReturnNorm()
    small.update(torch.full((10,), 0.3))
    assert small.scale().item() == 1.0  # max(1, S): small returns are not blown up


def test_paper_defaults_are_pinned():
    cfg = config.compose({"env": {"id": "gym:CartPole-v1"}}, algo="dreamerv3")
    assert (cfg.rssm.stoch, cfg.rssm.classes, cfg.rssm.unimix) == (32, 32, 0.01)
    assert (cfg.wm.kl_free, cfg.wm.kl_dyn, cfg.wm.kl_rep, cfg.wm.bins) == (1.0, 0.5, 0.1, 255)
    assert (cfg.wm.lr, cfg.wm.eps, cfg.wm.clip) == (1e-4, 1e-8, 1000.0)
    actor = cfg.actor
    assert (actor.lr, actor.eps, actor.clip, actor.entropy) == (3e-5, 1e-5, 100.0, 3e-4)
    assert (cfg.critic.lr, cfg.critic.slow_rate, cfg.critic.slowreg) == (3e-5, 0.02, 1.0)
    b = cfg.behavior
    assert (b.horizon, b.discount, b.lam, b.retnorm_decay, b.retnorm_low, b.retnorm_high) == \
        (15, 0.997, 0.95, 0.99, 5.0, 95.0)
    assert (cfg.train.batch, cfg.train.length, cfg.train.train_ratio) == (16, 64, 512.0)
