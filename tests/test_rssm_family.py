"""PlaNet, Dreamer V1 and DreamerV2 on the shared RSSM: KL variants, heads, actor
distributions, the CEM planner and where each actor's gradient flows."""
import math

import numpy as np
import pytest
import torch

from wmtool import config, spaces
from wmtool.behavior.actor_critic import frozen
from wmtool.behavior.cem import CEMPlanner
from wmtool.engine.agent import Agent
from wmtool.errors import WmtoolError
from wmtool.models.rssm import RSSM
from wmtool.nets.dists import (
    MSE,
    BoundedNormal,
    TanhNormal,
    TruncNormal,
    categorical_kl,
    gaussian_kl,
)
from wmtool.nets.layers import ObsScaling


def test_kl_balancing_alpha_08_against_the_plain_kl_gradients():
    """DreamerV2: β(α KL[sg(q)||p] + (1-α) KL[q||sg(p)]) trains the prior with α of the KL's
    gradient and the posterior with 1-α; free nats clamp the batch mean."""
    cfg = config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="dreamerv2")
    alpha = 0.8
    assert (cfg.wm.kl_dyn, cfg.wm.kl_rep) == pytest.approx((alpha, 1 - alpha))  # β = 1 on DMC
    rssm = RSSM(embed_dim=4, act_dim=2, deter=8, hidden=8, stoch=1, classes=3)
    post = torch.log(torch.tensor([[[0.7, 0.2, 0.1]], [[0.1, 0.1, 0.8]]])).requires_grad_(True)
    prior = torch.log(torch.tensor([[[0.3, 0.3, 0.4]], [[0.2, 0.5, 0.3]]])).requires_grad_(True)
    per_step = [sum(p * math.log(p / q) for p, q in zip(ps, qs)) for ps, qs in
                [((.7, .2, .1), (.3, .3, .4)), ((.1, .1, .8), (.2, .5, .3))]]
    plain_post, plain_prior = torch.autograd.grad(categorical_kl(post, prior).mean(), [post, prior])
    loss, _ = rssm.kl_loss({"logits": post}, {"logits": prior}, 0.0, cfg.wm.kl_dyn,
                           cfg.wm.kl_rep, free_avg=True)
    assert loss.item() == pytest.approx(np.mean(per_step), rel=1e-5)  # α + (1-α) = 1
    g_post, g_prior = torch.autograd.grad(loss, [post, prior])
    assert torch.allclose(g_prior, alpha * plain_prior, atol=1e-6)
    assert torch.allclose(g_post, (1 - alpha) * plain_post, atol=1e-6)
    # free nats on the mean: step 0 (0.27 nats) is below 0.4 but the mean (0.46) is not, so
    # both steps still learn; clamping each step would silence step 0
    assert min(per_step) < 0.4 < np.mean(per_step)
    loss, _ = rssm.kl_loss({"logits": post}, {"logits": prior}, 0.4, 0.8, 0.2, free_avg=True)
    g_post = torch.autograd.grad(loss, post)[0]
    assert g_post[0].abs().sum() > 0 and g_post[1].abs().sum() > 0
    loss, _ = rssm.kl_loss({"logits": post}, {"logits": prior}, 0.4, 0.8, 0.2)
    assert torch.autograd.grad(loss.mean(), post)[0][0].abs().sum() == 0


def test_plain_gaussian_kl_with_3_free_nats_as_planet_and_v1():
    """dyn = rep = 1 gives KL[q||p]'s own gradients to both; below 3 nats, none."""
    mq, sq = torch.tensor([[0.5, -1.0]], requires_grad=True), torch.tensor([[1.0, 0.5]])
    mp, sp = torch.tensor([[0.0, 0.0]], requires_grad=True), torch.tensor([[2.0, 1.0]])
    # KL(N(m1,s1)||N(m2,s2)) = ln(s2/s1) + (s1² + (m1-m2)²) / (2 s2²) - 1/2, per dimension
    hand = sum(math.log(b / a) + (a**2 + (m - n) ** 2) / (2 * b**2) - 0.5
               for m, a, n, b in [(0.5, 1.0, 0.0, 2.0), (-1.0, 0.5, 0.0, 1.0)])
    assert gaussian_kl(mq, sq, mp, sp).item() == pytest.approx(hand, rel=1e-6)
    rssm = RSSM(embed_dim=4, act_dim=2, deter=8, hidden=8, stoch=2, classes=0)
    post, prior = {"mean": mq, "std": sq}, {"mean": mp, "std": sp}
    direct = torch.autograd.grad(gaussian_kl(mq, sq, mp, sp).sum(), [mq, mp])
    loss, _ = rssm.kl_loss(post, prior, 0.0, 1.0, 1.0, free_avg=True)
    assert torch.allclose(torch.stack(torch.autograd.grad(loss, [mq, mp])), torch.stack(direct))
    loss, _ = rssm.kl_loss(post, prior, 3.0, 1.0, 1.0, free_avg=True)
    assert hand < 3.0 and loss.item() == pytest.approx(6.0)  # two clamped halves of 3 nats
    assert all(g.abs().sum() == 0 for g in torch.autograd.grad(loss, [mq, mp]))


def test_rssm_family_recipes_pin_the_papers_values():
    planet = config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="planet")
    assert (planet.rssm.deter, planet.rssm.stoch, planet.rssm.classes) == (200, 30, 0)
    assert (planet.planner.horizon, planet.planner.iterations, planet.planner.candidates,
            planet.planner.top, planet.behavior.explore) == (12, 10, 1000, 100, 0.3)
    assert (planet.wm.lr, planet.wm.eps, planet.wm.kl_free, planet.model.image_bits) == \
        (1e-3, 1e-4, 3.0, 5)
    assert (planet.train.batch, planet.train.length) == (50, 50)
    repeats = {"cartpole-swingup": 8, "reacher-easy": 4, "cheetah-run": 4, "finger-spin": 2,
               "ball_in_cup-catch": 4, "walker-walk": 2}
    for task, repeat in repeats.items():
        cfg = config.compose({"env": {"id": f"dmc:{task}"}}, algo="planet")
        assert cfg.env.action_repeat == repeat, task
        # 100 updates of 50 x 50 per 1000-step episode, whatever the repeat
        assert cfg.train.train_ratio * 1000 / repeat == pytest.approx(100 * 50 * 50)
    v1 = config.compose({"env": {"id": "dmc:walker-walk"}}, algo="dreamerv1")
    assert (v1.wm.lr, v1.actor.lr, v1.critic.lr, v1.wm.clip, v1.actor.clip) == \
        (6e-4, 8e-5, 8e-5, 100.0, 100.0)
    assert (v1.behavior.horizon, v1.behavior.discount, v1.behavior.lam) == (15, 0.99, 0.95)
    assert (v1.actor.dist, v1.actor.grad, v1.critic.head, v1.wm.kl_free) == \
        ("tanh_normal", "dynamics", "mse", 3.0)
    v2 = config.compose({"env": {"id": "atari:pong"}}, algo="dreamerv2")
    assert (v2.rssm.stoch, v2.rssm.classes, v2.rssm.deter) == (32, 32, 600)
    assert (v2.wm.kl_dyn, v2.wm.kl_rep) == pytest.approx((0.1 * 0.8, 0.1 * 0.2))
    assert (v2.actor.entropy, v2.behavior.discount, v2.critic.slow_every, v2.critic.slow_rate) == \
        (1e-3, 0.995, 100, 1.0)
    v2dmc = config.compose({"env": {"id": "dmc:walker-walk"}}, algo="dreamerv2")
    assert (v2dmc.actor.entropy, v2dmc.behavior.discount) == (1e-4, 0.99)


def test_heads_and_observation_scaling():
    mse = MSE()
    out = torch.tensor([[1.5], [-2.0]])
    assert torch.equal(mse.mean(out), torch.tensor([1.5, -2.0]))
    assert torch.allclose(mse.loss(out, torch.tensor([0.5, 0.0])), torch.tensor([0.5, 2.0]))
    five = ObsScaling(symlog_vectors=False, image_bits=5)
    levels = five.image(torch.arange(256, dtype=torch.uint8))
    assert len(torch.unique(levels)) == 32  # 5 bits
    assert levels.min() > -0.5 and levels.max() < 0.5 and torch.all(levels.diff() >= 0)
    assert torch.allclose(ObsScaling().image(torch.tensor([0, 255])), torch.tensor([-0.5, 0.5]))
    x = torch.tensor([-50.0, 3.0])
    assert torch.equal(five.vector(x), x) and torch.equal(five.vector_out(x), x)
    assert torch.allclose(ObsScaling().vector_out(ObsScaling().vector(x)), x)


@pytest.mark.parametrize("dist, raw_std", [(TanhNormal, -5.4), (TruncNormal, -0.5)])
def test_bounded_actor_distributions_are_densities_on_the_box(dist, raw_std):
    make = lambda n: dist(torch.full((n, 1), 0.7), torch.full((n, 1), raw_std))
    torch.manual_seed(0)
    samples = make(20000).sample()
    assert samples.min() >= -1 and samples.max() <= 1
    grid = torch.linspace(-0.9999, 0.9999, 20001)[:, None]
    density = make(len(grid)).log_prob(grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=0.01)
    # the samples follow the density: their mean matches its first moment
    moment = torch.trapezoid(density * grid[:, 0], grid[:, 0]).item()
    assert samples.mean().item() == pytest.approx(moment, abs=0.02)


@pytest.mark.parametrize("dist", [TanhNormal, TruncNormal, BoundedNormal])
def test_actor_distributions_stay_finite_from_bf16_heads(dist):
    """Under bf16 autocast the actor's head hands over bf16 outputs; the distribution works in
    fp32, or a saturated TanhNormal sample rounds to 1 and its log-probability is infinite
    (Dreamer V1's actor loss went NaN on its first update from pixels)."""
    torch.manual_seed(0)
    raw_mean, raw_std = (torch.randn(4096, 2) * 20).bfloat16(), torch.randn(4096, 2).bfloat16()
    d = dist(raw_mean, raw_std)
    x = d.sample()
    assert x.dtype == torch.float32
    assert torch.isfinite(d.log_prob(x)).all() and torch.isfinite(d.entropy()).all()


def test_truncated_normal_entropy_and_reparameterised_samples():
    mean = torch.tensor([[0.3]], requires_grad=True)
    dist = TruncNormal(mean, torch.tensor([[0.0]]))
    grid = torch.linspace(-1, 1, 20001)[:, None]
    wide = TruncNormal(mean.detach().expand(20001, 1), torch.zeros(20001, 1))
    p = wide.log_prob(grid).exp()
    numeric = -torch.trapezoid(p * torch.log(p), grid[:, 0]).item()
    assert dist.entropy().item() == pytest.approx(numeric, abs=1e-3)
    dist.sample().sum().backward()
    assert mean.grad is not None and mean.grad.abs().item() > 0  # dynamics backprop works


class ToyModel:
    """x_{t+1} = a_t (1-D), reward -(x - goal)²: the best action is goal clipped to [-1, 1]."""

    def __init__(self, goal: float):
        self.goal = goal

    def state_from_features(self, feat):
        return {"x": feat}

    def features(self, state):
        return state["x"]

    def imagine(self, start, act, horizon):
        states = [start["x"]]
        for t in range(horizon):
            states.append(act(states[-1], t))
        return {"x": torch.stack(states)}, None

    def predict_reward(self, feat):
        return -((feat[..., 0] - self.goal) ** 2)


@pytest.mark.parametrize("goal, best", [(5.0, 1.0), (-0.4, -0.4), (0.65, 0.65)])
def test_cem_finds_the_best_first_action_of_a_known_model(goal, best):
    cfg = config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="planet")
    torch.manual_seed(0)
    planner = CEMPlanner(ToyModel(goal), spaces.continuous(1), cfg)
    start = torch.zeros(3, 1)  # three beliefs planned at once
    action = planner.act(start, "greedy")
    assert action.shape == (3, 1)
    assert torch.allclose(action, torch.full((3, 1), best), atol=0.05)
    assert planner.acting_metrics()["plan/ms_per_action"] > 0
    assert planner.acting_metrics() == {}  # each call reports the time since the last
    with pytest.raises(WmtoolError, match="continuous"):
        CEMPlanner(ToyModel(0), spaces.discrete(3), cfg)


def _imagined(algo, act_space, env):
    torch.manual_seed(0)
    cfg = config.compose({"env": {"id": env}}, algo=algo, size="debug")
    agent = Agent(algo, {"state": spaces.vector(5)}, act_space, cfg)
    with torch.no_grad():  # a reward head that is not zero-initialised: rewards vary
        for p in agent.wm.reward.parameters():
            p.add_(0.1 * torch.randn_like(p))
    start = {k: v.detach() for k, v in agent.wm.initial(8).items()}
    with frozen(agent.wm):  # as in the behaviour's loss: the model is not trained here
        feat, actions, logp, _ = agent.behavior.imagine(agent.wm, start, 4)
    return agent, feat, actions, logp


def test_v1_actor_learns_through_the_dynamics():
    agent, feat, actions, _ = _imagined("dreamerv1", spaces.continuous(2), "dmc:walker-walk")
    assert actions.requires_grad and feat[1:].requires_grad  # imagined states depend on the actor
    ret = agent.wm.predict_reward(feat[1:]).sum()
    grads = torch.autograd.grad(ret, list(agent.behavior.actor.parameters()))
    assert sum(g.abs().sum() for g in grads) > 0  # predicted rewards move with the actor
    # and V1 uses no log-probabilities: the dynamics path is the actor's only signal
    assert agent.cfg.actor.entropy == 0 and agent.behavior.reinforce is False


def test_v2_reinforce_does_not_backpropagate_through_the_dynamics():
    agent, feat, actions, logp = _imagined("dreamerv2", spaces.discrete(3), "atari:pong")
    assert agent.behavior.reinforce
    assert not actions.requires_grad and not feat.requires_grad  # nothing flows back in time
    assert logp.requires_grad  # the score function is the actor's signal
    # with continuous actions V2 backpropagates through the dynamics instead
    agent, feat, actions, _ = _imagined("dreamerv2", spaces.continuous(2), "dmc:walker-walk")
    assert not agent.behavior.reinforce and feat[1:].requires_grad


def test_v2_target_critic_is_copied_every_100_updates():
    agent, *_ = _imagined("dreamerv2", spaces.discrete(3), "atari:pong")
    critic, slow = agent.behavior.critic, agent.behavior.slow_critic
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(1.0)
    for _ in range(99):
        agent.behavior.update_slow_critic()
    assert not torch.equal(next(slow.parameters()), next(critic.parameters()))
    agent.behavior.update_slow_critic()
    assert all(torch.equal(a, b) for a, b in zip(slow.parameters(), critic.parameters()))
