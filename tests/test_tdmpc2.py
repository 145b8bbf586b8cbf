"""TD-MPC2's pieces, checked directly: SimNorm, the shared twohot, frame stacking, masking at
episode starts, the discount heuristic, target Qs, MPPI against its prior on a toy model with
a known optimum, and the size presets' parameter counts."""
import numpy as np
import pytest
import torch

from wmtool import config
from wmtool.behavior.mppi import MPPIPlanner
from wmtool.engine.agent import Agent
from wmtool.errors import WmtoolError
from wmtool.models.base import PlansWithValues
from wmtool.models.dreamer import DreamerModel
from wmtool.nets.dists import TwoHot
from wmtool.nets.normed import (
    Ensemble,
    Mish,
    SimNorm,
    evaluating,
    shift_augment,
    stack_frames,
)
from wmtool.spaces import Space

CARTPOLE = {"position": Space((3,), "float32"), "velocity": Space((2,), "float32")}
ACTION = Space((1,), "float32", -1.0, 1.0)


def tiny(sets=(), size="debug"):
    return config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="tdmpc2", size=size,
                          sets=list(sets))


def window(batch=8, length=4, seed=0, first_at=None):
    rng = np.random.default_rng(seed)
    data = {"position": rng.normal(size=(batch, length, 3)).astype("float32"),
            "velocity": rng.normal(size=(batch, length, 2)).astype("float32"),
            "prev_action": rng.uniform(-1, 1, (batch, length, 1)).astype("float32"),
            "reward": rng.uniform(0, 1, (batch, length)).astype("float32"),
            "is_first": np.zeros((batch, length), bool),
            "is_terminal": np.zeros((batch, length), bool)}
    if first_at is not None:
        data["is_first"][:, first_at] = True
    return data


def test_simnorm_groups_sum_to_one():
    x = torch.randn(5, 64) * 10
    out = SimNorm(8)(x)
    groups = out.view(5, 8, 8)
    assert torch.allclose(groups.sum(-1), torch.ones(5, 8), atol=1e-6)
    assert (out >= 0).all() and not torch.allclose(out, torch.full_like(out, 1 / 8))


def test_ensemble_members_are_independent_and_a_subset_computes_only_them():
    torch.manual_seed(0)
    ensemble = Ensemble(5, 6, [16, 16], 3).eval()
    with torch.no_grad():
        for p in ensemble.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the zero-initialised head too
    x = torch.randn(4, 7, 6)
    full = ensemble(x)
    assert full.shape == (5, 4, 7, 3) and not torch.allclose(full[0], full[1])
    pair = torch.tensor([3, 1])
    assert torch.allclose(ensemble(x, pair), full[pair], atol=1e-6)


def test_twohot_is_the_one_dreamerv3_uses():
    torch.manual_seed(0)
    agent = Agent("tdmpc2", CARTPOLE, ACTION, tiny())
    head = agent.wm.twohot
    dreamer = DreamerModel(CARTPOLE, ACTION, config.compose(algo="dreamerv3", size="debug"))
    assert type(head) is type(dreamer.reward_head) is TwoHot  # one implementation
    assert len(head.bins) == 101 and head.bins[0] == -10 and head.bins[-1] == 10
    y = torch.tensor([-300.0, -2.5, 0.0, 0.7, 41.0])
    logits = torch.log(head.encode(y) + 1e-12)  # a distribution that is exactly y's twohot
    assert torch.allclose(head.mean(logits), y, rtol=1e-4)


def test_frame_stack_repeats_an_episodes_first_frame():
    frames = torch.arange(5.0).view(1, 5, 1, 1, 1)  # frame t has value t
    is_first = torch.tensor([[False, False, True, False, False]])
    stacked = stack_frames(frames, is_first, 3)[0, :, 0, 0]  # rows 2..4, oldest first
    assert stacked.tolist() == [[2, 2, 2], [2, 2, 3], [2, 3, 4]]
    no_start = stack_frames(frames, torch.zeros(1, 5, dtype=torch.bool), 3)[0, :, 0, 0]
    assert no_start.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]


def test_shift_augmentation_moves_content_within_the_pad():
    torch.manual_seed(0)
    image = torch.zeros(16, 1, 8, 8)
    image[:, :, 4, 4] = 1.0
    shifted = shift_augment(image, 2)
    assert shifted.shape == image.shape and torch.all(shifted.sum((1, 2, 3)) >= 1.0)
    rows, cols = [(s[0] == 1).nonzero()[0].tolist() for s in shifted][0]
    assert abs(rows - 4) <= 2 and abs(cols - 4) <= 2
    assert not torch.equal(shifted, image.expand_as(shifted))  # some image moved
    assert torch.equal(shift_augment(image, 0), image)


def test_losses_never_cross_an_episode_start():
    torch.manual_seed(0)
    agent = Agent("tdmpc2", CARTPOLE, ACTION, tiny())
    agent.eval()  # no dropout: the two passes must see the same network
    batch = {k: torch.as_tensor(v) for k, v in window(first_at=2).items()}
    altered = {k: v.clone() for k, v in batch.items()}
    for key in ("position", "velocity", "reward"):  # rows of the next episode
        altered[key][:, 2:] = altered[key][:, 2:] + 5.0

    def losses(data):
        torch.manual_seed(1)
        with torch.no_grad():
            return agent.wm.loss(data)[3]

    a, b = losses(batch), losses(altered)
    for key in ("loss_consistency", "loss_reward", "loss_value"):
        assert torch.allclose(a[key], b[key]), key
    clean = {k: torch.as_tensor(v) for k, v in window().items()}
    assert not torch.allclose(losses(clean)["loss_consistency"], a["loss_consistency"])


def test_discount_heuristic_follows_the_longest_episode():
    wm = Agent("tdmpc2", CARTPOLE, ACTION, tiny()).wm
    wm.note_episode(500)  # DMC: 1000 env steps at action repeat 2
    assert float(wm.discount) == pytest.approx(0.99)
    wm.note_episode(100)  # shorter episodes change nothing
    assert float(wm.discount) == pytest.approx(0.99)
    wm.note_episode(5000)
    assert float(wm.discount) == pytest.approx(0.995)  # clipped at discount_max
    fixed = Agent("tdmpc2", CARTPOLE, ACTION, tiny(["tdmpc2.discount=0.9"])).wm
    fixed.note_episode(500)
    assert float(fixed.discount) == pytest.approx(0.9)


def test_target_qs_follow_by_polyak_averaging():
    torch.manual_seed(0)
    agent = Agent("tdmpc2", CARTPOLE, ACTION, tiny())
    before = [p.clone() for p in agent.wm.target_q.parameters()]
    agent.train_step(window())
    online = list(agent.wm.q.parameters())
    for old, new, q in zip(before, agent.wm.target_q.parameters(), online):
        assert torch.allclose(new, old + 0.01 * (q - old), atol=1e-6)
    assert not all(p.requires_grad for p in agent.wm.target_q.parameters())


class Toy(torch.nn.Module, PlansWithValues):
    """A latent model whose return is -(a - 0.6)^2 per step: the best plan is a = 0.6."""

    discount = torch.tensor(1.0)

    def __init__(self, prior):
        super().__init__()
        self._prior = [prior]  # not a submodule, as in TDMPC2Model

    @property
    def prior(self):
        return self._prior[0]

    def bind_prior(self, prior):
        pass

    def next(self, z, action):
        return z

    def estimate_value(self, z, actions):
        return -((actions - 0.6) ** 2).sum((1, 2))

    def rollout_return(self, z, actions):
        value = self.estimate_value(z, actions)
        return value, torch.ones_like(value), z

    def terminal_value(self, z):
        return torch.zeros(z.shape[0])


def test_mppi_improves_on_its_prior_in_a_toy_model():
    torch.manual_seed(0)
    cfg = tiny(["mppi.samples=256", "mppi.elites=32", "mppi.prior_trajs=16",
                "mppi.iterations=6"])
    planner = MPPIPlanner(Toy(None), ACTION, cfg)
    with torch.no_grad():  # a prior that confidently acts -0.5
        head = planner.prior.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-0.55, -5.0]))
    toy = Toy(planner.prior)
    planner.bind(toy)
    z = torch.zeros(4, cfg.tdmpc2.latent)
    prior_actions = planner.prior.mode(z)
    planned, mean, std = planner.plan(z)
    horizon = cfg.tdmpc2.horizon
    prior_value = toy.estimate_value(z, prior_actions[:, None].expand(-1, horizon, -1))
    plan_value = toy.estimate_value(z, mean)
    assert torch.all(plan_value > prior_value + 0.5)
    assert torch.allclose(planned, torch.full_like(planned, 0.6), atol=0.1)
    # warm start: the next plan starts from this one shifted by a step
    _, again, _ = planner.plan(z, mean)
    assert torch.allclose(again[:, 0], torch.full_like(again[:, 0], 0.6), atol=0.1)


def test_mish_is_torchs_mish_in_value_and_gradient():
    """The CPU Mish (one sigmoid and products) against torch's kernel from -100 to 100,
    with and without autograd, and its hand-written gradient against finite differences."""
    x = torch.linspace(-100, 100, 40_001)
    with torch.no_grad():
        assert torch.allclose(Mish()(x), torch.nn.functional.mish(x), atol=2e-6, rtol=1e-6)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    (Mish()(ours) * torch.cos(x)).sum().backward()
    (torch.nn.functional.mish(theirs) * torch.cos(x)).sum().backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=5e-6, rtol=1e-5)
    wide = (torch.randn(64, dtype=torch.float64) * 6).requires_grad_()
    assert torch.autograd.gradcheck(Mish(), (wide,))


def every_candidate_rolled_out_each_iteration(planner, z):
    """MPPI as the paper's code runs it (and this planner before it rolled the prior's
    sequences out once): all n candidates through `estimate_value` every iteration."""
    m, wm, h, a = planner.cfg.mppi, planner._wm[0], planner.cfg.tdmpc2.horizon, 1
    batch, n, p = z.shape[0], m.samples, m.prior_trajs
    zp, steps = z.repeat_interleave(p, 0), []
    for t in range(h):
        steps.append(planner.prior.sample(zp))
        if t < h - 1:
            zp = wm.next(zp, steps[-1])
    prior_actions = torch.stack(steps, 1).view(batch, p, h, a)
    mean, std = torch.zeros(batch, h, a), torch.full((batch, h, a), m.max_std)
    for _ in range(m.iterations):
        noise = torch.randn(batch, n - p, h, a)
        actions = torch.cat([prior_actions, (mean[:, None] + std[:, None] * noise).clamp(-1, 1)],
                            1)
        value = wm.estimate_value(z.repeat_interleave(n, 0), actions.flatten(0, 1))
        elite_value, index = value.view(batch, n).topk(m.elites, dim=1)
        elite = actions.gather(1, index[..., None, None].expand(-1, -1, h, a))
        score = torch.softmax(m.temperature * elite_value, dim=1)[..., None, None]
        mean = (score * elite).sum(1)
        std = (score * (elite - mean[:, None]) ** 2).sum(1).sqrt().clamp(m.min_std, m.max_std)
    return mean, std[:, 0]


def test_mppi_rolls_the_priors_sequences_out_once_and_plans_the_same():
    """Three states planned at once, half the candidates from the prior, random weights (so
    rewards and values differ between candidates): the same plan, draw for draw, as rolling
    every candidate out every iteration."""
    torch.manual_seed(0)
    cfg = tiny(["mppi.samples=32", "mppi.elites=8", "mppi.prior_trajs=16",
                "mppi.iterations=3"])
    agent = Agent("tdmpc2", CARTPOLE, ACTION, cfg)
    with torch.no_grad():
        for param in agent.parameters():
            param.normal_(0.0, 0.3)
    planner, z = agent.behavior, torch.randn(3, cfg.tdmpc2.latent)
    torch.manual_seed(1)
    _, mean, std = planner.plan(z)
    torch.manual_seed(1)
    with torch.no_grad(), evaluating(agent.wm):
        want_mean, want_std = every_candidate_rolled_out_each_iteration(planner, z)
    assert mean.std() > 0.05  # the plans are not all the same point
    assert torch.allclose(mean, want_mean, atol=1e-5)
    assert torch.allclose(std, want_std, atol=1e-5)


def test_greedy_mean_acts_with_the_elites_mean_and_jitters_less_than_an_elite_draw():
    def greedy_actions(how):
        torch.manual_seed(0)
        cfg = tiny(["mppi.samples=64", "mppi.elites=16", "mppi.prior_trajs=0",
                    "mppi.iterations=2", f"mppi.greedy={how}"])
        planner = MPPIPlanner(Toy(None), ACTION, cfg)
        planner.bind(Toy(planner.prior))
        z = torch.zeros(64, cfg.tdmpc2.latent)  # 64 independent plans from the same state
        first = torch.ones(64, dtype=torch.bool)
        action, plan = planner.act_step(z, None, first, "greedy")
        return action, plan
    mean_action, plan = greedy_actions("mean")
    assert torch.equal(mean_action, plan[:, 0].clamp(-1, 1))
    elite_action, _ = greedy_actions("elite")
    assert mean_action.std() < 0.5 * elite_action.std()
    # both aim at the toy's optimum, 0.6
    assert abs(mean_action.mean() - 0.6) < 0.15 and abs(elite_action.mean() - 0.6) < 0.15
    with pytest.raises(WmtoolError, match="greedy"):
        MPPIPlanner(Toy(None), ACTION, tiny(["mppi.greedy=median"]))


def test_size_presets_match_the_papers_parameter_counts():
    def total(size):
        agent = Agent("tdmpc2", CARTPOLE, ACTION, tiny(size=size))
        return agent.parameter_counts()["total"], agent.wm.q.members

    small, heads = total("1m")
    assert 1.0e6 <= small <= 1.3e6 and heads == 2  # the target Qs are not counted
    default, heads = total("5m")
    assert 4.5e6 <= default <= 5.5e6 and heads == 5
    with pytest.raises(WmtoolError, match="valid: debug, 1m, 5m, 19m, 48m, 317m"):
        tiny(size="xs")  # a DreamerV3 preset changes nothing TD-MPC2 uses


def test_tdmpc2_refuses_discrete_actions():
    with pytest.raises(WmtoolError, match="continuous actions only"):
        Agent("tdmpc2", CARTPOLE, Space((), "int64", n=2), tiny())


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_pixel_prior_carries_its_frame_stack(fmt, tmp_path):
    from wmtool.engine.export import export
    from wmtool.engine.loading import LoadedRun

    torch.manual_seed(0)
    obs_space = {"image": Space((64, 64, 3), "uint8")}
    agent = Agent("tdmpc2", obs_space, ACTION, tiny()).eval()
    with torch.no_grad():  # a prior whose actions depend on its input
        for p in agent.behavior.prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    loaded = LoadedRun(tmp_path, {"env": "dmc:cartpole-balance"}, agent.cfg, {}, agent, 1)
    path = tmp_path / f"prior.{fmt}"
    meta = export(loaded, fmt, path)
    assert meta["carry_shapes"] == {"stack": [64, 64, 6]}  # frames - 1 earlier frames
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 1, 64, 64, 3), dtype=np.uint8)
    starts = [True, False, False, True, False]
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        step = lambda *xs: session.run(None, dict(zip(meta["inputs"], xs)))
    else:
        module = torch.jit.load(str(path))
        step = lambda *xs: [o.numpy() for o in module(*map(torch.from_numpy, xs))]
    carry, ours, theirs = None, [], []
    stack = np.zeros((1, 64, 64, 6), np.float32)
    for frame, first in zip(frames, starts):
        obs = {"image": frame, "is_first": np.array([first])}
        action, carry = agent.policy_step(obs, carry, "prior")
        ours.append(action)
        action, stack = step(frame, stack, np.array([first]))
        theirs.append(action)
    np.testing.assert_allclose(np.concatenate(theirs), np.concatenate(ours), atol=1e-5)
    assert len({round(float(a[0, 0]), 5) for a in ours}) > 1


@pytest.mark.parametrize("algo,size", [("tdmpc2", "1m"), ("dreamerv3", None)])
def test_frozen_cpu_recipes_have_no_per_task_values(algo, size):
    """The held-out suite's recipes (issue 30): every DMC task gets the same config but its
    id, with the paper's action repeat 2."""
    def resolved(task):
        cfg = config.compose({"env": {"id": f"dmc:{task}"}}, algo=algo, size=size,
                             recipe=f"{algo}__dmc_proprio_cpu").to_dict()
        cfg["env"].pop("id")
        return cfg
    tasks = ["cartpole-balance", "cartpole-swingup", "walker-walk", "cheetah-run",
             "finger-spin", "ball_in_cup-catch", "pendulum-swingup"]
    first = resolved(tasks[0])
    assert first["env"]["action_repeat"] == 2
    assert all(resolved(task) == first for task in tasks[1:])


# -- as in the official code, and the paper's values pinned ------------------------------
def test_q_scale_starts_at_one_floors_each_batch_at_one_and_moves_by_tau():
    from wmtool.behavior.mppi import RunningScale

    scale = RunningScale(rate=0.01)
    assert float(scale.value) == 1.0
    for _ in range(50):  # no reward yet: Q's range is tiny, the scale stays 1
        scale.update(torch.linspace(0.0, 0.03, 100))
    assert float(scale.value) == pytest.approx(1.0)
    q = torch.linspace(0.0, 10.0, 1001)  # 5-95% range: 9
    scale.update(q)
    assert float(scale.value) == pytest.approx(1.0 + 0.01 * (9.0 - 1.0), rel=1e-5)
    old = {"hi": torch.tensor(3.0), "lo": torch.tensor(0.5), "count": torch.tensor(7)}
    loaded = RunningScale(rate=0.01)
    loaded.load_state_dict(old)  # a checkpoint from before: the EMA's ends become the range
    assert float(loaded.value) == pytest.approx(2.5)


def test_prior_loss_divides_q_by_the_running_scale():
    torch.manual_seed(0)
    agent = Agent("tdmpc2", CARTPOLE, ACTION, tiny())
    planner = agent.behavior
    z = torch.softmax(torch.randn(16, 4, agent.wm.c.latent), -1)
    start = {"z": z, "weight": torch.ones(16, 4)}
    planner.scale.value.fill_(8.0)
    torch.manual_seed(1)
    _, metrics = planner.loss(agent.wm, start)
    assert float(metrics["prior/q_scale"]) == pytest.approx(0.99 * 8.0 + 0.01 * 1.0)


def test_policy_prior_learns_the_action_its_q_prefers():
    """The prior's loss pulls its actions towards higher Q: with a known Q whose best action
    is 0.5, a few hundred prior updates bring the prior's mode there (a flipped sign drives
    it to the bounds)."""
    torch.manual_seed(0)
    agent = Agent("tdmpc2", CARTPOLE, ACTION, tiny())
    planner = agent.behavior
    agent.wm.q_value = lambda z, action, kind="avg", target=False: \
        -10.0 * ((action - 0.5) ** 2).sum(-1)
    z = torch.softmax(torch.randn(16, 4, agent.wm.c.latent), -1)
    start = {"z": z, "weight": torch.ones(16, 4)}
    optimiser = torch.optim.Adam(planner.prior.parameters(), lr=3e-3)
    before = planner.prior.mode(z)
    for _ in range(300):
        loss, _ = planner.loss(agent.wm, start)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = planner.prior.mode(z).detach()
    assert (before - 0.5).abs().mean() > 0.2
    assert (after - 0.5).abs().max() < 0.1, after.flatten()[:8]


def test_planning_and_td_targets_see_the_qs_without_dropout():
    """Dropout (0.01, the paper's) is on while the model learns; planning and the TD targets
    use the Qs in eval mode, as the official code does, whatever mode the agent is in."""
    torch.manual_seed(0)
    agent = Agent("tdmpc2", CARTPOLE, ACTION, tiny(["tdmpc2.dropout=0.5"]))
    with torch.no_grad():
        for p in agent.wm.q.parameters():
            p.add_(0.3 * torch.randn_like(p))  # make the Qs (and their dropout) matter
        agent.wm.target_q.load_state_dict(agent.wm.q.state_dict())
    z = torch.softmax(torch.randn(2, agent.wm.c.latent), -1)
    batch = {k: torch.as_tensor(v) for k, v in window().items()}

    def in_mode(train: bool):
        agent.train(train)
        torch.manual_seed(3)
        plan = agent.behavior.plan(z)[1]
        torch.manual_seed(4)
        with torch.no_grad():
            td = agent.wm.loss(batch)[3]["td_target"]
        return plan, td

    (plan_train, td_train), (plan_eval, td_eval) = in_mode(True), in_mode(False)
    assert torch.equal(plan_train, plan_eval) and torch.equal(td_train, td_eval)
    assert agent.wm.q.training is False  # the mode asked for is kept
    agent.train(True)
    torch.manual_seed(5)
    first = agent.wm.q(torch.randn(4, agent.wm.c.latent + 1))
    torch.manual_seed(6)
    assert not torch.equal(first, agent.wm.q(torch.randn(4, agent.wm.c.latent + 1)))


def test_td_target_bootstraps_from_the_minimum_of_two_target_qs():
    torch.manual_seed(0)
    wm = Agent("tdmpc2", CARTPOLE, ACTION, tiny(size=None)).wm  # the paper's 5 Qs
    # one constant per target member; no mean of two is also a minimum of two
    values = torch.tensor([-3.0, -1.0, 0.4, 1.7, 4.1])
    with torch.no_grad():
        for p in wm.target_q.parameters():
            p.zero_()
        head = list(wm.target_q.parameters())[-1]  # output bias: (members, 1, bins)
        for member, v in enumerate(values):
            head[member, 0] = -1e4
            bins = wm.twohot.encode(v[None])[0]  # two adjacent bins carry v exactly
            head[member, 0][bins > 0] = torch.log(bins[bins > 0])
    z = torch.softmax(torch.randn(1, wm.c.latent), -1)
    a = torch.zeros(1, 1)
    assert wm.target_q.members == 5
    seen = wm.q_value(z, a, "min", target=True)
    mins = torch.stack([wm.q_value(z, a, "min", target=True) for _ in range(300)])
    pairs = {round(float(min(x, y)), 3) for i, x in enumerate(values) for y in values[i + 1:]}
    assert {round(float(m), 3) for m in mins.flatten()} <= pairs and seen.shape == (1,)
    assert round(float(mins.max()), 3) == 1.7  # never the largest member alone
    # the loss bootstraps from exactly that: td = r + discount * min of a pair of target Qs
    batch = {k: torch.as_tensor(v) for k, v in window().items()}
    rewards = batch["reward"][:, 1:4].mean()
    boots = set()
    for _ in range(40):
        with torch.no_grad():
            td = wm.loss(batch)[3]["td_target"]
        boots.add(round(float((td - rewards) / wm.discount), 3))
    assert boots <= pairs and len(boots) > 1


def test_the_papers_values_are_the_defaults():
    """TD-MPC2 (Hansen et al. 2024), Table/appendix values: changing any of them is a
    recipe departure to list, not a silent default."""
    cfg = tiny(size=None)
    c, m = cfg.tdmpc2, cfg.mppi
    assert (c.consistency, c.reward, c.value) == (20.0, 0.1, 0.1)
    assert (c.horizon, c.rho, c.tau, c.entropy) == (3, 0.5, 0.01, 1e-4)
    assert (c.lr, c.enc_lr_scale, c.clip) == (3e-4, 0.3, 20.0)
    assert (c.num_q, c.dropout, c.simnorm, c.bins, c.vmin, c.vmax) == (5, 0.01, 8, 101, -10, 10)
    assert (c.discount_denom, c.discount_min, c.discount_max) == (5, 0.95, 0.995)
    assert (m.samples, m.prior_trajs, m.iterations, m.elites, m.temperature) == \
        (512, 24, 6, 64, 0.5)
    assert (m.min_std, m.max_std) == (0.05, 2.0)
    assert (cfg.train.batch, cfg.env.action_repeat) == (256, 2)
