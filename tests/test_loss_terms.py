"""Each algorithm's loss terms pinned directly, in value and in gradient, on tiny tensors.

Every test here compares a loss (or the gradient it sends) with the same quantity written out
independently from docs/algorithms/, so that a flipped sign, a dropped or rescaled term, a target
taken from the wrong network or a stop-gradient in the wrong place fails a fast test rather
than a learning curve. docs/mutation.md lists the bugs each test was seen to catch.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wmtool import config, spaces
from wmtool.behavior.actor_critic import ActorCritic
from wmtool.engine.agent import Agent
from wmtool.nets.dists import (
    MSE,
    BoundedNormal,
    OneHot,
    TanhNormal,
    TruncNormal,
    TwoHot,
    categorical_kl,
    gaussian_kl,
    symlog,
)
from wmtool.spaces import Space


def twohot_ce(twohot: TwoHot, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The twohot cross-entropy written densely: -sum(encode(y) * log_softmax(logits))."""
    return -(twohot.encode(target.detach()) * logits.log_softmax(-1)).sum(-1)


# -- Dreamer's actor-critic in a world whose maths is known ------------------------------------
class Drift(nn.Module):
    """Features are positions x; x_{t+1} = x_t + a_t; reward -|x_{t+1} - goal|^2 on arriving;
    continue probability `cont` everywhere. Records the actions it was given (with their
    gradients kept) and the states it visited."""

    def __init__(self, goal: float = 0.5, cont: float = 0.9):
        super().__init__()
        self.goal = nn.Parameter(torch.tensor(goal))  # a parameter, for frozen() to freeze
        self.cont = cont

    def features(self, state):
        return state["x"]

    def imagine(self, start, act, horizon):
        xs, self.actions = [start["x"]], []
        for t in range(horizon):
            action = act(xs[-1], t)
            if action.requires_grad:
                action.retain_grad()
            self.actions.append(action)
            xs.append(xs[-1] + action)
        self.states = torch.stack(xs)
        return {"x": self.states}, torch.stack(self.actions)

    def reward_of(self, x):
        return -((x - self.goal.detach()) ** 2).sum(-1)

    def predict_reward(self, feat):
        return -((feat - self.goal) ** 2).sum(-1)

    def predict_cont(self, feat):
        return torch.full(feat.shape[:-1], self.cont)


def dreamer_behaviour(act_space, *sets, algo="dreamerv3"):
    """The actor-critic of `algo` with the debug size, on 2-d features, one imagined step."""
    cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, algo=algo, size="debug",
                         sets=["behavior.horizon=1", *sets])
    torch.manual_seed(0)
    return ActorCritic(2, act_space, cfg)


def start_states(n=8):
    torch.manual_seed(7)
    return {"x": 0.3 * torch.randn(n, 2)}, torch.ones(n)


def randomise_critic_head(behaviour, scale=0.5):
    """Values that depend on the state (the critic's output layer starts at zero)."""
    with torch.no_grad():
        for p in behaviour.critic.head.parameters():
            p.copy_(scale * torch.randn_like(p))
        behaviour.slow_critic.load_state_dict(behaviour.critic.state_dict())


def losses_of(behaviour, wm, seed=1):
    start, start_cont = start_states()
    torch.manual_seed(seed)
    return behaviour.loss(wm, start, start_cont)


def assert_same_gradients(module, total, want, atol: float) -> None:
    """The loss under test moves every trained parameter of `module` as the written-out loss
    does (a parameter the written-out loss does not reach gets no gradient, or zero)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for got, expected in zip(torch.autograd.grad(total, params, allow_unused=True,
                                                 retain_graph=True),
                             torch.autograd.grad(want, params, allow_unused=True,
                                                 retain_graph=True)):
        if expected is None:
            assert got is None or got.abs().max() == 0
        else:
            assert torch.allclose(got, expected, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("act_space", [spaces.continuous(2), spaces.discrete(2)],
                         ids=["continuous", "discrete"])
def test_actor_entropy_bonus_is_subtracted_from_the_loss_and_raises_entropy(act_space):
    """DreamerV3: actor loss = policy term - eta * H[pi]. The bonus lowers the loss by
    eta times the mean entropy, and its gradient, followed, makes the policy more random."""
    eta = 0.5
    bonus = dreamer_behaviour(act_space, f"actor.entropy={eta}")
    plain = dreamer_behaviour(act_space, "actor.entropy=0.0")  # the same weights
    wm = Drift()
    with_bonus, _, metrics = losses_of(bonus, wm)
    without, _, _ = losses_of(plain, wm)
    x0 = start_states()[0]["x"]
    entropy = bonus.dist(x0).entropy().mean()  # one imagined step from the start states
    assert metrics["actor/entropy"].item() == pytest.approx(entropy.item(), rel=1e-5)
    assert (with_bonus - without).item() == pytest.approx(-eta * entropy.item(), rel=1e-4)
    # the gradient of the bonus alone is that of -eta * H
    params = list(bonus.actor.parameters())
    diff = [a - b for a, b in zip(torch.autograd.grad(with_bonus, params),
                                  torch.autograd.grad(without, list(plain.actor.parameters())))]
    want = torch.autograd.grad(-eta * bonus.dist(x0).entropy().mean(), params)
    for got, expected in zip(diff, want):
        assert torch.allclose(got, expected, atol=1e-6)
    # and a descent step along it raises the entropy
    with torch.no_grad():
        for p, g in zip(params, diff):
            p.sub_(0.1 * g)
    assert bonus.dist(x0).entropy().mean() > entropy + 1e-4


def test_critic_is_regularised_towards_the_slow_critic():
    """DreamerV3: critic loss = CE(twohot(R^lambda)) + slowreg * CE(twohot(v_slow)), with v_slow
    the slow (EMA) critic's value, not the critic's own; weighted by the chance of being alive."""
    behaviour = dreamer_behaviour(spaces.continuous(2))
    randomise_critic_head(behaviour)
    with torch.no_grad():  # a slow critic that disagrees with the critic: it predicts 3.0
        head = behaviour.slow_critic.head
        head.weight.zero_()
        head.bias.copy_(torch.log(behaviour.head.encode(torch.tensor([3.0]))[0] + 1e-12))
    wm = Drift()
    _, critic_loss, _ = losses_of(behaviour, wm)
    x0, x1 = wm.states[0].detach(), wm.states[1].detach()
    cfg = behaviour.cfg.behavior
    with torch.no_grad():
        ret = wm.reward_of(x1) + cfg.discount * wm.cont * behaviour.value(x1)  # H = 1
        slow = behaviour.value(x0, slow=True)
    assert slow.allclose(torch.full_like(slow, 3.0), atol=1e-3)
    logits = behaviour.critic(x0)
    expected = (twohot_ce(behaviour.head, logits, ret)
                + 1.0 * twohot_ce(behaviour.head, logits, slow)).mean()  # slowreg 1 (paper)
    assert critic_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    params = list(behaviour.critic.parameters())
    for got, want in zip(torch.autograd.grad(critic_loss, params),
                         torch.autograd.grad(expected, params)):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    # the regulariser alone pulls the critic's values towards the slow critic's 3.0
    gap = lambda: (behaviour.value(x0) - 3.0).abs().mean().item()
    before = gap()
    pull = torch.autograd.grad(twohot_ce(behaviour.head, behaviour.critic(x0), slow).mean(),
                               params)
    with torch.no_grad():
        for p, g in zip(params, pull):
            p.sub_(0.1 * g)
    assert gap() < before


def test_dreamerv3_continuous_actor_learns_through_the_dynamics():
    """DreamerV3 (2023) with continuous actions: the actor maximises lambda-returns by
    backpropagation through the learned dynamics. With one step, the loss is
    -(r(x0 + a) + gamma c v(x0 + a)) / (N max(1, S)); each action, and through
    a = tanh(mean) + std * eps the actor's outputs, get exactly that gradient."""
    behaviour = dreamer_behaviour(spaces.continuous(2), "actor.entropy=0.0")
    assert not behaviour.reinforce  # actor.grad auto: dynamics for continuous actions
    randomise_critic_head(behaviour)  # the bootstrap value's gradient counts too
    with torch.no_grad():  # a narrow policy, so that no sample needs rescaling into [-1, 1]
        behaviour.actor.head.bias[2:].fill_(-10.0)
    outputs = []

    def keep(module, inputs, out):
        out.retain_grad()
        outputs.append(out)
    behaviour.actor.register_forward_hook(keep)
    wm = Drift()
    actor_loss, _, metrics = losses_of(behaviour, wm)
    actor_loss.backward()
    action = wm.actions[0]
    assert action.abs().max() < 1
    x1 = wm.states[1].detach().requires_grad_(True)
    gamma = behaviour.cfg.behavior.discount
    ret = wm.reward_of(x1) + gamma * wm.cont * behaviour.value(x1)
    (dret,) = torch.autograd.grad(ret.sum(), x1)
    n = x1.shape[0]
    want = -dret / (n * metrics["return/scale"])
    assert action.grad is not None and torch.allclose(action.grad, want, atol=1e-6)
    out = outputs[0]
    raw_mean, raw_std = out.detach().chunk(2, -1)
    a = behaviour.cfg.actor
    std = (a.max_std - a.min_std) * torch.sigmoid(raw_std + 2) + a.min_std
    eps = (action.detach() - torch.tanh(raw_mean)) / std
    dstd = (a.max_std - a.min_std) * torch.sigmoid(raw_std + 2) * (1 - torch.sigmoid(raw_std + 2))
    assert torch.allclose(out.grad[:, :2], want * (1 - torch.tanh(raw_mean) ** 2), atol=1e-6)
    assert torch.allclose(out.grad[:, 2:], want * eps * dstd, atol=1e-8)


def test_dreamerv3_continuous_actor_gets_the_returns_gradient_in_the_real_model():
    """The same path in the real DreamerV3 world model (RSSM, reward and continue heads):
    with no entropy bonus, the actor's gradient comes from the returns, through the actions
    and the imagined states."""
    cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, algo="dreamerv3", size="debug",
                         sets=["actor.entropy=0.0", "behavior.horizon=3"])
    torch.manual_seed(0)
    agent = Agent("dreamerv3", {"state": spaces.vector(5)}, spaces.continuous(2), cfg)
    with torch.no_grad():  # a reward head that is not zero-initialised: rewards vary
        for p in agent.wm.reward.parameters():
            p.add_(0.1 * torch.randn_like(p))
    start = {k: v.detach() for k, v in agent.wm.initial(8).items()}
    torch.manual_seed(1)
    actor_loss, _, _ = agent.behavior.loss(agent.wm, start, torch.ones(8))
    grads = torch.autograd.grad(actor_loss, list(agent.behavior.actor.parameters()))
    assert sum(g.abs().sum() for g in grads) > 0
    assert not agent.behavior.reinforce


def head_loss(behaviour, out, target):
    """The critic head's loss written out: twohot cross-entropy (V3) or squared error / 2
    (a unit-variance Gaussian: V1, V2)."""
    if behaviour.cfg.critic.head == "twohot":
        return twohot_ce(behaviour.head, out, target)
    return 0.5 * (out.squeeze(-1) - target.detach()) ** 2


def dreamer_reference(behaviour, wm, start_cont, scale):
    """The actor and critic losses of docs/algorithms/dreamerv3.md over the states and
    actions `wm` recorded:
    R_t = r_t + gamma c_{t+1} ((1 - lambda) v_{t+1} + lambda R_{t+1}), R_H = v_H, with v from
    the slow critic where the returns bootstrap from it (V2); weights: the chance of being
    alive, prod c; advantages (R - v) / scale; actor: -log pi(a) sg(adv) (REINFORCE) or -adv
    (dynamics), minus eta H[pi]; critic: head loss to sg(R), plus slowreg x to the slow value."""
    cfg, x = behaviour.cfg, wm.states
    b, c = cfg.behavior, cfg.critic
    horizon, n = len(wm.actions), x.shape[1]
    reward = wm.reward_of(x[1:])
    cont = torch.cat([start_cont[None], torch.full((horizon, n), wm.cont)])
    net = behaviour.slow_critic if c.slow_target else behaviour.critic
    v = behaviour.head.mean(net(x.detach() if behaviour.reinforce else x))
    returns, ret = [], v[-1]
    for t in reversed(range(horizon)):
        ret = reward[t] + b.discount * cont[t + 1] * ((1 - b.lam) * v[t + 1] + b.lam * ret)
        returns.insert(0, ret)
    ret = torch.stack(returns)
    weight = torch.cumprod(cont, 0)[:-1]
    adv = (ret - v[:-1].detach()) / scale
    dists = [behaviour.dist(x[t].detach()) for t in range(horizon)]
    logp = torch.stack([d.log_prob(a.detach()) for d, a in zip(dists, wm.actions)])
    entropy = torch.stack([d.entropy() for d in dists])
    policy = -logp * adv.detach() if behaviour.reinforce else -adv
    actor = (weight * (policy - cfg.actor.entropy * entropy)).mean()
    logits = behaviour.critic(x[:-1].detach())
    critic = head_loss(behaviour, logits, ret.detach())
    if c.slowreg:
        slow = behaviour.head.mean(behaviour.slow_critic(x[:-1].detach())).detach()
        critic = critic + c.slowreg * head_loss(behaviour, logits, slow)
    return actor, (weight * critic).mean(), ret


VARIANTS = {  # (algo, env, action space, extra settings)
    "v3-continuous": ("dreamerv3", "dmc:walker-walk", spaces.continuous(2), []),
    "v3-discrete": ("dreamerv3", "atari:pong", spaces.discrete(2), []),
    "v2-continuous": ("dreamerv2", "dmc:walker-walk", spaces.continuous(2), []),
    "v2-discrete": ("dreamerv2", "atari:pong", spaces.discrete(2), []),
    "v1-continuous": ("dreamerv1", "dmc:walker-walk", spaces.continuous(2), []),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dreamer_actor_and_critic_losses_match_the_written_out_maths(variant):
    """Three imagined steps, a start state that is already terminal, critics that disagree
    with their slow copies: the losses and the gradients they send to actor and critic."""
    algo, env, act_space, sets = VARIANTS[variant]
    entropy = "0.0" if algo == "dreamerv1" else "0.2"  # V1's entropy is a one-sample estimate
    cfg = config.compose({"env": {"id": env}}, algo=algo, size="debug",
                         sets=["behavior.horizon=3", f"actor.entropy={entropy}", *sets])
    torch.manual_seed(0)
    behaviour = ActorCritic(2, act_space, cfg)
    with torch.no_grad():
        for net in (behaviour.critic, behaviour.slow_critic):
            for p in net.head.parameters():
                p.copy_(0.5 * torch.randn_like(p))
    wm = Drift(goal=0.3, cont=0.8)
    start, _ = start_states()
    start_cont = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 1.0])
    torch.manual_seed(1)
    actor_loss, critic_loss, metrics = behaviour.loss(wm, start, start_cont)
    b = cfg.behavior
    with torch.no_grad():
        ret_check = dreamer_reference(behaviour, wm, start_cont, 1.0)[2]
        if b.retnorm:  # the first batch's 5-95% range, floored at 1
            lo, hi = torch.quantile(ret_check.flatten(), torch.tensor([0.05, 0.95]))
            scale = max(1.0, (hi - lo).item())
        else:
            scale = 1.0
    assert metrics["return/scale"].item() == pytest.approx(scale, rel=1e-5)
    actor, critic, ret = dreamer_reference(behaviour, wm, start_cont, scale)
    assert metrics["return/mean"].item() == pytest.approx(ret.mean().item(), rel=1e-5, abs=1e-6)
    assert actor_loss.item() == pytest.approx(actor.item(), rel=1e-5, abs=1e-7)
    assert critic_loss.item() == pytest.approx(critic.item(), rel=1e-5, abs=1e-7)
    with torch.no_grad():  # what is logged: the losses, the bootstrap values, the rewards
        net = behaviour.slow_critic if cfg.critic.slow_target else behaviour.critic
        logged = {"actor/loss": actor, "critic/loss": critic,
                  "critic/value": behaviour.head.mean(net(wm.states)).mean(),
                  "return/mean": ret.mean(), "return/scale": torch.tensor(scale),
                  "imag/reward": wm.reward_of(wm.states[1:]).mean(),
                  "actor/entropy": torch.stack([behaviour.dist(x).entropy()
                                                for x in wm.states[:-1]]).mean()}
    assert set(metrics) == set(logged)
    for name, value in logged.items():
        if name != "actor/entropy" or algo != "dreamerv1":  # V1's is a one-sample estimate
            assert metrics[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6), name
    for net, got, want in ((behaviour.actor, actor_loss, actor),
                           (behaviour.critic, critic_loss, critic)):
        params = list(net.parameters())
        for g, w in zip(torch.autograd.grad(got, params, retain_graph=True),
                        torch.autograd.grad(w_ := want, params, retain_graph=True)):
            assert torch.allclose(g, w, atol=1e-6, rtol=1e-4), variant
        del w_
    # the critic's loss never reaches the actor, nor the actor's the critic's weights
    assert all(g is None for g in torch.autograd.grad(
        critic_loss, list(behaviour.actor.parameters()), allow_unused=True, retain_graph=True))
    assert all(g is None or g.abs().max() == 0 for g in torch.autograd.grad(
        actor_loss, list(behaviour.critic.parameters()), allow_unused=True))


def test_slow_critic_moves_two_percent_of_the_way_every_update_in_v3():
    behaviour = dreamer_behaviour(spaces.continuous(2))
    with torch.no_grad():
        for p in behaviour.critic.parameters():
            p.add_(1.0)
    before = [p.clone() for p in behaviour.slow_critic.parameters()]
    behaviour.update_slow_critic()
    for old, new, fast in zip(before, behaviour.slow_critic.parameters(),
                              behaviour.critic.parameters()):
        assert torch.allclose(new, old + 0.02 * (fast - old), atol=1e-7)
    assert int(behaviour.updates) == 1


# -- TD-MPC2: the three terms and their weights --------------------------------------------
CARTPOLE = {"position": Space((3,), "float32"), "velocity": Space((2,), "float32")}
ACTION = Space((1,), "float32", -1.0, 1.0)


class FixedPrior(nn.Module):
    """A policy prior whose 'sample' is a known function of z."""

    def sample(self, z):
        return torch.tanh(3.0 * z[..., :1] - 0.2)


def tdmpc2_window(batch=6, length=4):
    rng = np.random.default_rng(0)
    data = {"position": rng.normal(size=(batch, length, 3)).astype("float32"),
            "velocity": rng.normal(size=(batch, length, 2)).astype("float32"),
            "prev_action": rng.uniform(-1, 1, (batch, length, 1)).astype("float32"),
            "reward": rng.uniform(-2, 2, (batch, length)).astype("float32"),
            "is_first": np.zeros((batch, length), bool),
            "is_terminal": np.zeros((batch, length), bool)}
    data["is_first"][1, 2] = True     # row 1: a new episode from its third row on
    data["is_terminal"][0, 2] = True  # row 0: the second transition ends its episode
    return {k: torch.as_tensor(v) for k, v in data.items()}


def tdmpc2_model(*sets):
    cfg = config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="tdmpc2", size="debug",
                         sets=list(sets))
    torch.manual_seed(0)
    wm = Agent("tdmpc2", CARTPOLE, ACTION, cfg).wm.eval()  # eval: no dropout in the Qs
    with torch.no_grad():
        for p in wm.parameters():  # zero-initialised heads too: every term has a value
            p.add_(0.3 * torch.randn_like(p))
        for p in wm.target_q.parameters():  # equal target members: a min of two is their value
            p.copy_(p[:1].expand_as(p))
    wm.bind_prior(FixedPrior())
    return wm


def tdmpc2_reference(wm, batch):
    """TD-MPC2's loss written out from docs/algorithms/tdmpc2.md: over H steps weighted rho^t,
    20 * ||d(z_t, a_t) - sg(enc(o_{t+1}))||^2 + 0.1 * CE(R(z_t, a_t), r_t)
    + 0.1 * mean_q CE(Q_q(z_t, a_t), r_t + gamma (1 - term_t) Q_target(sg z'_{t+1}, pi(z'))),
    masked after an episode start, each step's term averaged over the valid rows, then / H."""
    h, rho = wm.c.horizon, wm.c.rho
    z_all = wm.encode({k: batch[k][:, :h + 1] for k in CARTPOLE})
    target = z_all[:, 1:].detach()
    action = batch["prev_action"][:, 1:h + 1]
    reward, term = batch["reward"][:, 1:h + 1], batch["is_terminal"][:, 1:h + 1].float()
    valid = (torch.cumsum(batch["is_first"][:, 1:h + 1].float(), 1) == 0).float()
    with torch.no_grad():
        q_next = wm.twohot.mean(wm.target_q(torch.cat([target, wm.prior.sample(target)], -1)))
        td = reward + wm.discount * (1 - term) * q_next[0]
    z, consistency, rewards, values, ends = z_all[:, 0], [], [], [], []
    for t in range(h):
        za = torch.cat([z, action[:, t]], -1)
        rewards.append(twohot_ce(wm.twohot, wm.reward(za), reward[:, t]))
        values.append(twohot_ce(wm.twohot, wm.q(za), td[:, t]).mean(0))
        z = wm.next(z, action[:, t])
        consistency.append(((z - target[:, t]) ** 2).mean(-1))
        if wm.termination is not None:  # episodic tasks: BCE of the episode ending there
            ends.append(F.binary_cross_entropy_with_logits(
                wm.termination(z)[..., 0], term[:, t], reduction="none"))

    def weighted(per_row):
        per_step = (torch.stack(per_row, 1) * valid).sum(0) / valid.sum(0)
        return sum(rho ** t * per_step[t] for t in range(h)) / h

    parts = {k: weighted(v) for k, v in
             (("consistency", consistency), ("reward", rewards), ("value", values))}
    total = 20.0 * parts["consistency"] + 0.1 * parts["reward"] + 0.1 * parts["value"]
    if ends:  # weight tdmpc2.termination, a plain mean over the valid transitions
        parts["termination"] = (torch.stack(ends, 1) * valid).sum() / valid.sum()
        total = total + wm.c.termination * parts["termination"]
    return parts, total, td


@pytest.mark.parametrize("termination", [0.0, 0.7])
def test_tdmpc2_loss_is_the_weighted_sum_of_consistency_reward_and_value(termination):
    wm = tdmpc2_model(f"tdmpc2.termination={termination}")
    assert (wm.termination is not None) == (termination > 0)
    batch = tdmpc2_window()
    total, groups, post, metrics = wm.loss(batch)
    parts, want, td = tdmpc2_reference(wm, batch)
    assert metrics["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert float(metrics["discount"]) == pytest.approx(float(wm.discount))
    assert metrics["td_target"].item() == pytest.approx(td.mean().item(), rel=1e-5)
    for name, value in parts.items():
        assert metrics[f"loss_{name}"].item() == pytest.approx(value.item(), rel=1e-5), name
        assert value.item() > 1e-3, name  # every term is present with a value of its own
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    assert 20.0 * parts["consistency"].item() > 0.05 * total.item()  # the term counts
    assert_same_gradients(wm, total, want, atol=1e-6)
    assert groups == ["wm", "encoder"]
    # the prior learns on the latents of this rollout, weighted rho^t while still valid
    with torch.no_grad():
        z = wm.encode({k: batch[k][:, :1] for k in CARTPOLE})[:, 0]
        rollout = [z]
        for t in range(wm.c.horizon):
            rollout.append(wm.next(rollout[-1], batch["prev_action"][:, t + 1]))
    assert torch.allclose(post["z"], torch.stack(rollout, 1), atol=1e-6)
    assert not post["z"].requires_grad
    seen = torch.ones(6, 4)
    seen[1, 2:] = 0.0  # row 1's episode restarts at its third row
    assert torch.allclose(post["weight"], seen * torch.tensor([1.0, 0.5, 0.25, 0.125]))


def test_tdmpc2_consistency_gradient_reaches_the_dynamics_and_encoder():
    """Without the consistency term (weight 20) the dynamics would learn only from the reward
    and value heads: its gradient must be 20 x that of the consistency loss plus theirs."""
    wm = tdmpc2_model()
    batch = tdmpc2_window()
    total, _, _, metrics = wm.loss(batch)
    parts, _, _ = tdmpc2_reference(wm, batch)
    dyn = list(wm.dynamics.parameters())
    got = torch.autograd.grad(total, dyn)
    others = torch.autograd.grad(0.1 * parts["reward"] + 0.1 * parts["value"], dyn,
                                 allow_unused=True, retain_graph=True)
    consistency = torch.autograd.grad(20.0 * parts["consistency"], dyn)
    for g, o, c in zip(got, others, consistency):
        o = torch.zeros_like(g) if o is None else o
        assert torch.allclose(g, o + c, atol=1e-6, rtol=1e-4)
    assert sum(c.abs().sum() for c in consistency) > 0


def test_dreamerv3_defaults_feed_the_loss_terms():
    """The paper's coefficients the tests above rely on (pinned in test_dreamer_math too)."""
    cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, algo="dreamerv3")
    assert (cfg.critic.slowreg, cfg.actor.entropy, cfg.actor.grad) == (1.0, 3e-4, "auto")
    assert math.isclose(cfg.behavior.discount, 0.997)


def test_tdmpc2_prior_loss_is_entropy_weighted_log_prob_minus_scaled_q():
    """The policy prior minimises rho^t-weighted eta log pi(a|z) - Q(z, a) / S, a ~ pi, with S
    the running Q scale after this batch's update; log pi of a tanh-squashed Gaussian."""
    cfg = config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="tdmpc2", size="debug",
                         sets=["tdmpc2.entropy=0.3"])
    torch.manual_seed(0)
    agent = Agent("tdmpc2", CARTPOLE, ACTION, cfg)
    planner, wm = agent.behavior, agent.wm
    with torch.no_grad():
        for p in planner.prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    wm.q_value = lambda z, action, kind="avg", target=False: \
        -4.0 * ((action - 0.3) ** 2).sum(-1) + 5.0 * z[..., 0]
    z = torch.softmax(torch.randn(16, 4, cfg.tdmpc2.latent), -1)
    weight = torch.tensor([1.0, 0.5, 0.25, 0.0]).expand(16, 4)
    planner.scale.value.fill_(2.0)
    torch.manual_seed(1)
    loss, metrics = planner.loss(wm, {"z": z, "weight": weight})
    # the prior written out: log std squashed into [min, max], a = tanh(mean + std * eps)
    torch.manual_seed(1)
    mean, raw = planner.prior.net(z).chunk(2, -1)
    c = cfg.tdmpc2
    log_std = c.log_std_min + 0.5 * (c.log_std_max - c.log_std_min) * (torch.tanh(raw) + 1)
    pre = mean + torch.randn_like(mean) * log_std.exp()
    action = torch.tanh(pre)
    log_prob = (torch.distributions.Normal(mean, log_std.exp()).log_prob(pre)
                - torch.log(1 - action ** 2 + 1e-6)).sum(-1)
    torch.manual_seed(1)
    got_mean, got_action, got_log_prob = planner.prior(z)
    assert torch.allclose(got_mean, torch.tanh(mean), atol=1e-6)
    assert torch.allclose(got_action, action, atol=1e-6)
    assert torch.allclose(got_log_prob, log_prob, atol=1e-4, rtol=1e-5)
    q = wm.q_value(z, action)
    lo, hi = torch.quantile(q[:, 0].detach(), torch.tensor([0.05, 0.95]))
    scale = 0.99 * 2.0 + 0.01 * max(1.0, (hi - lo).item())  # tau 0.01 towards the range
    assert metrics["prior/q_scale"].item() == pytest.approx(scale, rel=1e-5)
    want = (weight * (0.3 * log_prob - q / scale)).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)
    params = list(planner.prior.parameters())
    for g, w in zip(torch.autograd.grad(loss, params), torch.autograd.grad(want, params)):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-3)
    assert metrics["prior/entropy"].item() == pytest.approx(-log_prob.mean().item(), rel=1e-4)
    assert metrics["prior/loss"].item() == pytest.approx(want.item(), rel=1e-4)
    assert metrics["prior/q"].item() == pytest.approx(q.mean().item(), rel=1e-5)
    assert set(metrics) == {"prior/loss", "prior/entropy", "prior/q", "prior/q_scale"}


def test_tdmpc2_pixel_latents_stack_frames_and_augment_with_random_shifts():
    """Pixels: each latent encodes the last 3 frames (an episode's first frame repeated
    before it), randomly shifted by up to 3 px; the consistency targets use the same
    encodings. A window too short for history + horizon + 1 rows is refused."""
    from wmtool.errors import WmtoolError

    cfg = config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="tdmpc2", size="debug")
    torch.manual_seed(0)
    wm = Agent("tdmpc2", {"image": spaces.image(64, 64, 3)}, ACTION, cfg).wm.eval()
    assert wm.frames == 3 and wm.window() == 2 + 3 + 1
    rng = np.random.default_rng(0)
    batch = {"image": torch.as_tensor(rng.integers(0, 256, (2, 6, 64, 64, 3), np.uint8)),
             "prev_action": torch.as_tensor(rng.uniform(-1, 1, (2, 6, 1)).astype("float32")),
             "reward": torch.as_tensor(rng.normal(size=(2, 6)).astype("float32")),
             "is_first": torch.zeros(2, 6, dtype=torch.bool),
             "is_terminal": torch.zeros(2, 6, dtype=torch.bool)}
    batch["is_first"][0, 1] = True  # row 0's first latent stacks frames 1, 1, 2
    losses = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        losses.append(wm.loss(batch)[3]["loss_consistency"].item())
    torch.manual_seed(1)
    stacked = wm.stacked_inputs(batch, batch["is_first"])
    assert torch.equal(stacked["image"][0, 0], torch.cat([batch["image"][0, i]
                                                          for i in (1, 1, 2)], -1))
    z_all = wm.encode(stacked, augment=True)
    z, per_step = z_all[:, 0], []
    for t in range(3):
        z = wm.next(z, batch["prev_action"][:, 3 + t])
        per_step.append(((z - z_all[:, 1 + t]) ** 2).mean(-1).mean())
    want = sum(0.5 ** t * per_step[t] for t in range(3)) / 3
    assert losses[0] == pytest.approx(want.item(), rel=1e-5) and losses[0] == losses[1]
    assert losses[2] != pytest.approx(losses[0], rel=1e-4)  # other shifts, other latents
    short = {k: v[:, :5] for k, v in batch.items()}
    with pytest.raises(WmtoolError, match=r"windows of 6 rows \(history 2 \+ horizon 3 \+ 1\), "
                                          r"got 5") as error:
        wm.loss(short)
    assert error.value.hint == "set train.length=4"


# -- the Dreamer world model's loss --------------------------------------------------------
def dreamer_batch(batch=3, length=5, act_dim=2):
    rng = np.random.default_rng(0)
    data = {"state": rng.normal(size=(batch, length, 5)).astype("float32") * 3,
            "prev_action": rng.uniform(-1, 1, (batch, length, act_dim)).astype("float32"),
            "reward": rng.normal(size=(batch, length)).astype("float32") * 4,
            "is_first": np.zeros((batch, length), bool),
            "is_terminal": np.zeros((batch, length), bool)}
    data["is_first"][:, 0] = True
    data["is_first"][1, 3] = True
    data["is_terminal"][1, 2] = True
    data["is_terminal"][2, 4] = True
    return {k: torch.as_tensor(v) for k, v in data.items()}


@pytest.mark.parametrize("algo", ["dreamerv3", "dreamerv1"])
def test_dreamer_world_model_loss_is_prediction_plus_kl(algo):
    """Prediction (symlog squared error of vector observations (V3) or plain (V1), reward
    twohot CE (V3) or squared error / 2 (V1), continue BCE on 1 - terminal) plus
    beta_dyn max(free, KL[sg q || p]) + beta_rep max(free, KL[q || sg p]): each term's batch
    mean, summed; the KL clipped per step (V3) or on the batch mean (V1)."""
    cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, algo=algo, size="debug",
                         sets=["wm.kl_free=0.01"] if algo == "dreamerv3" else
                         ["rssm.classes=0", "wm.kl_free=0.01"])  # V1's Gaussian latents
    torch.manual_seed(0)
    wm = Agent(algo, {"state": spaces.vector(5)}, spaces.continuous(2), cfg).wm
    with torch.no_grad():
        for p in wm.reward.parameters():  # the zero-initialised reward head predicts 0
            p.add_(0.2 * torch.randn_like(p))
    batch = dreamer_batch()
    torch.manual_seed(1)
    total, groups, post, metrics = wm.loss(batch)
    torch.manual_seed(1)
    post, prior = wm.observe(batch)
    feat = wm.features(post)
    target = symlog(batch["state"]) if algo == "dreamerv3" else batch["state"]
    rec = ((wm.decoder(feat)["state"] - target) ** 2).sum(-1)
    out = wm.reward(feat)
    if algo == "dreamerv3":
        reward = twohot_ce(wm.reward_head, out, batch["reward"])
    else:
        reward = 0.5 * (out.squeeze(-1) - batch["reward"]) ** 2
    cont = F.binary_cross_entropy_with_logits(
        wm.cont(feat).squeeze(-1), 1.0 - batch["is_terminal"].float(), reduction="none")
    sg = lambda s: {k: v.detach() for k, v in s.items()}
    w = cfg.wm
    if algo == "dreamerv3":
        dyn = categorical_kl(sg(post)["logits"], prior["logits"])
        rep = categorical_kl(post["logits"], sg(prior)["logits"])
        kl = (w.kl_dyn * dyn.clamp(min=w.kl_free) + w.kl_rep * rep.clamp(min=w.kl_free)).mean()
    else:
        q, p = post, prior
        dyn = gaussian_kl(q["mean"].detach(), q["std"].detach(), p["mean"], p["std"]).mean()
        rep = gaussian_kl(q["mean"], q["std"], p["mean"].detach(), p["std"].detach()).mean()
        kl = w.kl_dyn * dyn.clamp(min=w.kl_free) + w.kl_rep * rep.clamp(min=w.kl_free)
    parts = {"rec_state": rec.mean(), "reward": reward.mean(), "cont": cont.mean(), "kl": kl}
    for name, value in parts.items():
        assert metrics[f"loss_{name}"].item() == pytest.approx(value.item(), rel=1e-5), name
    assert metrics["kl_dyn"].item() == pytest.approx(dyn.mean().item(), rel=1e-5)
    assert metrics["kl_rep"].item() == pytest.approx(rep.mean().item(), rel=1e-5)
    want = sum(parts.values())
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    assert metrics["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert_same_gradients(wm, total, want, atol=1e-5)
    assert groups == ["wm"]
    # what the behaviour reads from the model: the reward head's mean and the continue chance
    assert torch.allclose(wm.predict_reward(feat), wm.reward_head.mean(out), atol=1e-6)
    assert torch.allclose(wm.predict_cont(feat), torch.sigmoid(wm.cont(feat)[..., 0]), atol=1e-6)


def test_dreamer_world_model_loss_continues_from_a_given_state():
    """A window that starts mid-episode continues from the state it is given."""
    cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, algo="dreamerv3", size="debug")
    torch.manual_seed(0)
    wm = Agent("dreamerv3", {"state": spaces.vector(5)}, spaces.continuous(2), cfg).wm
    batch = dreamer_batch()
    batch["is_first"][:, 0] = False
    with torch.no_grad():
        torch.manual_seed(2)
        earlier, _ = wm.observe(dreamer_batch())
        state = {k: v[:, -1] for k, v in earlier.items()}
    torch.manual_seed(1)
    given = wm.loss(batch, state)[3]
    torch.manual_seed(1)
    fresh = wm.loss(batch)[3]
    torch.manual_seed(1)
    post, prior = wm.observe(batch, state)
    want = categorical_kl(post["logits"].detach(), prior["logits"]).mean()
    assert given["kl_dyn"].item() == pytest.approx(want.item(), rel=1e-5)
    assert given["kl_dyn"].item() != pytest.approx(fresh["kl_dyn"].item(), rel=1e-3)


def test_v1_free_nats_clip_the_batch_mean_kl_in_the_model_loss():
    """PlaNet/V1 (kl_free_avg): with free nats between the smallest step's KL and the mean,
    the KL term is the plain mean KL; clipping each step would raise it."""
    def model(free):
        cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, algo="dreamerv1", size="debug",
                             sets=["rssm.classes=0", f"wm.kl_free={free}"])
        torch.manual_seed(0)
        return Agent("dreamerv1", {"state": spaces.vector(5)}, spaces.continuous(2), cfg).wm

    batch = dreamer_batch()
    wm = model(3.0)
    with torch.no_grad():
        torch.manual_seed(1)
        post, prior = wm.observe(batch)
        kl = gaussian_kl(post["mean"], post["std"], prior["mean"], prior["std"])
    free = float((kl.min() + kl.mean()) / 2)
    clipped = model(free)
    torch.manual_seed(1)
    metrics = clipped.loss(batch)[3]
    assert metrics["loss_kl"].item() == pytest.approx(2 * kl.mean().item(), rel=1e-4)
    assert (2 * kl.clamp(min=free).mean()).item() > 1.01 * metrics["loss_kl"].item()


# -- shared densities and divergences on batches of several rows ----------------------------
def test_unit_gaussian_head_and_gaussian_kl_per_row():
    mse = MSE()
    out = torch.tensor([[[1.5], [-2.0]], [[0.0], [3.0]]])
    target = torch.tensor([[0.5, 0.0], [1.0, 1.0]])
    assert torch.equal(mse.mean(out), out[..., 0])
    assert torch.allclose(mse.loss(out, target), 0.5 * (out[..., 0] - target) ** 2)
    torch.manual_seed(0)  # (2, 3, 2): summing over the wrong axis gives another shape
    mq, mp = torch.randn(2, 3, 2), torch.randn(2, 3, 2)
    sq, sp = torch.rand(2, 3, 2) + 0.3, torch.rand(2, 3, 2) + 0.3
    want = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq),
                                             torch.distributions.Normal(mp, sp)).sum(-1)
    assert torch.allclose(gaussian_kl(mq, sq, mp, sp), want, atol=1e-6)


def test_actor_densities_against_torch_distributions():
    # (3, 2, 2): batch, time, action dimensions; densities sum over the last axis only
    raw_mean = torch.tensor([[0.3, -1.2], [2.0, 0.1], [-0.5, 0.0]])[:, None].repeat(1, 2, 1)
    raw_std = torch.tensor([[0.0, -1.0], [1.5, -3.0], [0.2, 0.7]])[:, None].repeat(1, 2, 1)
    x = torch.tensor([[0.1, -0.7], [0.95, 0.2], [-0.3, 0.4]])[:, None].repeat(1, 2, 1)
    raw_mean[:, 1] += 0.2
    raw_std[:, 1] -= 0.3
    x[:, 1] *= -0.5
    # DreamerV3: Normal(tanh(mean), (max - min) sigmoid(s + 2) + min)
    bounded = BoundedNormal(raw_mean, raw_std)  # std in [0.1, 1] (paper) unless told
    normal = torch.distributions.Normal(torch.tanh(raw_mean),
                                        0.9 * torch.sigmoid(raw_std + 2.0) + 0.1)
    assert torch.allclose(bounded.log_prob(x), normal.log_prob(x).sum(-1), atol=1e-5)
    assert torch.allclose(bounded.entropy(), normal.entropy().sum(-1), atol=1e-5)
    torch.manual_seed(0)
    eps = torch.randn(3, 2, 2)
    torch.manual_seed(0)
    assert torch.allclose(bounded.sample(), normal.mean + normal.stddev * eps, atol=1e-6)
    # Dreamer V1: tanh(Normal(5 tanh(m / 5), softplus(s + c) + min)), std 5 when s = 0
    tanh = TanhNormal(raw_mean, raw_std, min_std=1e-4, init_std=5.0)
    std = F.softplus(raw_std + math.log(math.expm1(5.0))) + 1e-4
    assert torch.allclose(TanhNormal(raw_mean, torch.zeros(3, 2)).std, torch.full((3, 2), 5.0001))
    assert torch.allclose(TanhNormal(raw_mean, raw_std, min_std=0.5).std, std - 1e-4 + 0.5)
    base = torch.distributions.Normal(5 * torch.tanh(raw_mean / 5), std)
    squashed = torch.distributions.TransformedDistribution(
        base, [torch.distributions.TanhTransform()])
    assert torch.allclose(tanh.log_prob(x), squashed.log_prob(x).sum(-1), atol=1e-4)
    assert torch.allclose(tanh.mode(), torch.tanh(5 * torch.tanh(raw_mean / 5)), atol=1e-6)
    torch.manual_seed(0)
    eps = torch.randn(3, 2, 2)
    torch.manual_seed(0)
    assert torch.allclose(tanh.sample(), torch.tanh(base.mean + std * eps), atol=1e-6)
    # the entropy is a one-sample estimate: -log p of a fresh sample
    torch.manual_seed(1)
    estimate = tanh.entropy()
    torch.manual_seed(1)
    assert torch.allclose(estimate, -tanh.log_prob(tanh.sample()), atol=1e-5)
    # Dreamer V2: Normal(tanh(mean), 2 sigmoid(s / 2) + min) truncated to [-1, 1]
    trunc = TruncNormal(raw_mean, raw_std)  # min std 0.1 unless told
    std = 2 * torch.sigmoid(raw_std / 2) + 0.1
    assert torch.allclose(trunc.std, std) and torch.allclose(trunc.mean, torch.tanh(raw_mean))
    normal = torch.distributions.Normal(torch.tanh(raw_mean), std)
    mass = normal.cdf(torch.tensor(1.0)) - normal.cdf(torch.tensor(-1.0))
    assert torch.allclose(trunc.log_prob(x), (normal.log_prob(x) - torch.log(mass)).sum(-1),
                          atol=1e-5)
    grid = torch.linspace(-1, 1, 20001)[:, None, None, None]
    density = (normal.log_prob(grid) - torch.log(mass)).exp()
    numeric = -torch.trapezoid(density * torch.log(density), grid[:, 0, 0, 0], dim=0)
    assert torch.allclose(trunc.entropy(), numeric.sum(-1), atol=2e-3)


def test_truncated_normal_samples_at_the_extreme_uniforms(monkeypatch):
    """Inverse-CDF sampling keeps 2u - 1 within 1e-6 of +-1, so a uniform draw of 0 (or the
    largest below 1) gives the 1e-6 (1 - 1e-6) quantile's neighbourhood, not an infinite
    erfinv clipped to the bound."""
    from wmtool import parallel

    dist = TruncNormal(torch.zeros(1, 2), torch.full((1, 2), -12.0), 0.1)  # std 0.105
    mean, std = dist.mean, dist.std
    assert dist._lo.max() < 1e-9 and dist._hi.min() > 1 - 1e-7  # far from both bounds
    for u, side in ((0.0, -1.0), (1.0 - 2 ** -24, 1.0)):
        monkeypatch.setattr(parallel, "rand_like", lambda x, dim=0, u=u: torch.full_like(x, u))
        sample = dist.sample()
        centred = (2 * (dist._lo + dist._z * u) - 1).clamp(-1 + 1e-6, 1 - 1e-6)
        want = mean + std * math.sqrt(2) * torch.erfinv(centred)
        assert torch.allclose(sample, want, atol=1e-5), side
        assert (sample.abs() < 1).all()
    # near the bounds erfinv's rounding lands a little outside [-1, 1]: samples are clipped
    grid = TruncNormal(torch.linspace(-3, 3, 61)[:, None].expand(61, 9),
                       torch.linspace(-4, 4, 9)[None].expand(61, 9))
    for u in (0.0, 1.0 - 2 ** -24):
        monkeypatch.setattr(parallel, "rand_like", lambda x, dim=0, u=u: torch.full_like(x, u))
        sample = grid.sample()
        assert sample.min() >= -1 and sample.max() <= 1
        assert (sample.abs() == 1).any()


def test_masked_mean_of_world_models_divides_by_the_count():
    from wmtool.models.worldmodels import _masked_mean

    x = torch.tensor([[3.0, 5.0], [7.0, 11.0]])
    assert _masked_mean(x, torch.tensor([[0.0, 1.0], [0.0, 0.0]])).item() == 5.0
    assert _masked_mean(x, torch.tensor([[1.0, 1.0], [0.0, 1.0]])).item() == pytest.approx(19 / 3)
    assert _masked_mean(x, torch.zeros(2, 2)).item() == 0.0


def test_categorical_actor_log_prob_and_entropy_with_unimix():
    torch.manual_seed(0)
    logits = 2 * torch.randn(3, 2, 4)  # batch, time, classes
    dist = OneHot(logits, unimix=0.1)
    probs = 0.9 * logits.softmax(-1) + 0.1 / 4
    assert torch.allclose(dist.probs, probs, atol=1e-6)
    reference = torch.distributions.Categorical(probs=probs)
    index = torch.randint(0, 4, (3, 2))
    onehot = torch.nn.functional.one_hot(index, 4).float()
    assert torch.allclose(dist.log_prob(onehot), reference.log_prob(index), atol=1e-5)
    assert torch.allclose(dist.entropy(), reference.entropy(), atol=1e-5)
    assert torch.allclose(OneHot(logits).probs, 0.99 * logits.softmax(-1) + 0.01 / 4)  # 1%


def test_return_normaliser_moves_both_percentiles_by_the_decay():
    from wmtool.behavior.actor_critic import ReturnNorm

    norm = ReturnNorm(decay=0.99, low=5, high=95)
    norm.update(torch.arange(101, dtype=torch.float32))
    norm.update(torch.arange(101, dtype=torch.float32) * 2)
    assert norm.lo.item() == pytest.approx(0.99 * 5 + 0.01 * 10)
    assert norm.hi.item() == pytest.approx(0.99 * 95 + 0.01 * 190)


# -- the twohot encoding: its two neighbouring bins, beyond the range, raw space ----------
def test_twohot_puts_weight_on_the_two_bins_around_a_value_and_clamps_beyond_the_range():
    twohot = TwoHot(5, -2.0, 2.0, transform=False)  # bins -2, -1, 0, 1, 2
    y = torch.tensor([[-1.75, 0.5], [1.9, -5.0], [7.0, 2.0]], dtype=torch.float64)
    enc = twohot.encode(y)
    want = torch.tensor([[[0.75, 0.25, 0, 0, 0], [0, 0, 0.5, 0.5, 0]],
                         [[0, 0, 0, 0.1, 0.9], [1, 0, 0, 0, 0]],
                         [[0, 0, 0, 0, 1], [0, 0, 0, 0, 1]]], dtype=torch.float64)
    assert enc.dtype == torch.float64 and torch.allclose(enc, want)
    assert torch.allclose(twohot.mean(torch.log(want.float() + 1e-12)),
                          y.float().clamp(-2, 2), atol=1e-4)  # raw space: no symexp
    logits = torch.randn(3, 2, 5)
    loss = twohot.loss(logits, y)
    assert loss.dtype == logits.dtype  # a float64 target is taken in the logits' precision
    assert torch.allclose(loss, -(want.float() * logits.log_softmax(-1)).sum(-1), atol=1e-5)
    # DreamerV3's bins in symlog space: +-1e10 lie beyond +-20 and sit on the end bins
    v3 = TwoHot(255, -20.0, 20.0)
    ends = v3.encode(torch.tensor([-1e10, 1e10]))
    assert ends[0, 0] == 1 and ends[1, -1] == 1 and ends.sum() == 2
    x = -20 + 100.25 * 40 / 254  # a quarter of the way from bin 100 to bin 101
    inside = v3.encode(torch.tensor([math.copysign(math.expm1(abs(x)), x)]))
    assert inside[0, 100].item() == pytest.approx(0.75, abs=1e-3)
    assert inside[0, 101].item() == pytest.approx(0.25, abs=1e-3)


def test_imagined_continuous_actions_are_scaled_into_the_box_not_clipped():
    """Like the env, |a| <= 1; a sample outside is divided by its size (its gradient kept)."""
    behaviour = dreamer_behaviour(spaces.continuous(2), "behavior.horizon=2")
    with torch.no_grad():  # a wide policy around 0.96: many samples beyond 1
        behaviour.actor.head.bias.copy_(torch.tensor([2.0, -2.0, 5.0, 5.0]))
        behaviour.actor.head.weight.zero_()
    wm = Drift()
    actor_loss, _, _ = losses_of(behaviour, wm)
    actions = torch.stack(wm.actions)
    assert actions.abs().max() <= 1 + 1e-6
    on_the_edge = actions.abs() > 1 - 1e-6
    assert on_the_edge.sum() > 2 and (actions.abs() < 1 - 1e-3).sum() > 2
    actor_loss.backward()
    grads = torch.stack([a.grad for a in wm.actions])
    assert (grads[on_the_edge] != 0).all()


def test_q_value_averages_or_takes_the_minimum_of_two_members_of_the_net_asked_for():
    wm = tdmpc2_model()
    with torch.no_grad():  # member i of the Qs predicts i, of the target Qs 10 + i
        for net, base in ((wm.q, 0.0), (wm.target_q, 10.0)):
            for p in net.parameters():
                p.zero_()
            head = list(net.parameters())[-1]
            for member in range(net.members):
                enc = wm.twohot.encode(torch.tensor([base + member]))[0]
                head[member, 0] = torch.log(enc + 1e-12)
    z, a = torch.softmax(torch.randn(3, wm.c.latent), -1), torch.zeros(3, 1)
    assert wm.q.members == 2  # debug size: the pair is the whole ensemble
    assert torch.allclose(wm.q_value(z, a), torch.full((3,), 0.5), atol=1e-3)
    assert torch.allclose(wm.q_value(z, a, "min"), torch.zeros(3), atol=1e-3)
    assert torch.allclose(wm.q_value(z, a, "avg", target=True), torch.full((3,), 10.5), atol=1e-3)
    assert torch.allclose(wm.q_value(z, a, "min", target=True), torch.full((3,), 10.0), atol=1e-3)


def test_policy_prior_log_prob_near_the_action_bounds_and_in_three_dimensions():
    from wmtool.behavior.mppi import PolicyPrior

    torch.manual_seed(0)
    prior = PolicyPrior(8, 16, 3, -10.0, 2.0)
    with torch.no_grad():  # means far beyond tanh's range, tiny stds: actions near +-1
        head = prior.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([8.0, -8.0, 0.5, -10.0, -10.0, -10.0]))
    z = torch.randn(5, 8)
    torch.manual_seed(1)
    mean, action, log_prob = prior(z)
    assert mean.shape == action.shape == (5, 3) and log_prob.shape == (5,)
    torch.manual_seed(1)
    eps = torch.randn(5, 3)
    log_std = torch.tensor([-10.0 + 6.0 * (math.tanh(-10.0) + 1)] * 3)
    pre = torch.tensor([8.0, -8.0, 0.5]) + eps * log_std.exp()
    gauss = -0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)  # log N(pre; mean, std)
    want = (gauss - torch.log(1 - torch.tanh(pre) ** 2 + 1e-6)).sum(-1)
    assert torch.allclose(log_prob, want, rtol=1e-4)
