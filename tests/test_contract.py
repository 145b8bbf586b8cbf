"""Contract tests every registered algorithm passes (docs/architecture.md, "The contract"),
on real CarRacing frames: each training phase lowers its own loss on a fixed batch, acting
gives valid actions, and a checkpoint round trip reproduces the greedy policy exactly."""
import sys

import numpy as np
import pytest
import torch

from wmtool import ckpt, config, parallel
from wmtool.behavior.base import Behavior, ScoredInRealEnv
from wmtool.behavior.brownian import BrownianPolicy
from wmtool.data.replay import Replay
from wmtool.engine.agent import Agent, to_tensors
from wmtool.engine.loops import run_episodes
from wmtool.envs.factory import make_env
from wmtool.envs.vector import VecEnv
from wmtool.models.base import WorldModel
from wmtool.noise_audit import NoiseAudit
from wmtool.registry import ALGOS

ENV = "gym:CarRacing-v3"  # 64x64 frames and continuous actions: every algorithm takes these


def algo_config(algo: str):
    return config.compose({"env": {"id": ENV, "time_limit": 60}}, algo=algo, size="debug",
                          sets=["train.batch=4", "train.length=16"])


@pytest.fixture(scope="module")
def car():
    cfg = algo_config("dreamerv3")
    vec = VecEnv([lambda: make_env(cfg.env, None)])
    replay = Replay(vec.obs_space, vec.act_space, 10_000)
    try:
        run_episodes(vec, BrownianPolicy(vec.act_space, 0), episodes=2, seed=0,
                     on_episode=replay.add)
        obs = vec.reset(5)
    finally:
        vec.close()
    return vec.obs_space, vec.act_space, replay, obs


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_algorithm_builds_on_the_written_contract(algo, car):
    """The engine talks to models and behaviours through models/base.py and
    behavior/base.py only: every registered algorithm builds on those classes, and what it
    can do beyond the tiers is a capability class, never an attribute to probe for."""
    obs_space, act_space, _, _ = car
    agent = Agent(algo, obs_space, act_space, algo_config(algo))
    assert isinstance(agent.wm, WorldModel) and isinstance(agent.behavior, Behavior)
    assert set(agent.wm.behavior_phases) <= set(agent.wm.phases)
    assert agent.behavior.modes == () or {"greedy", "sample"} <= set(agent.behavior.modes)
    assert not hasattr(agent.wm, "can_decode")  # the old flag: now the Decodes class
    assert hasattr(agent.behavior, "real_scorer") == isinstance(agent.behavior, ScoredInRealEnv)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_phase_lowers_its_loss_on_a_fixed_batch(algo, car):
    obs_space, act_space, replay, _ = car
    torch.manual_seed(0)
    agent = Agent(algo, obs_space, act_space, algo_config(algo))
    for phase, _, batch, length in agent.wm.schedule():
        fixed = replay.sample(min(batch, 16), min(length, 16))
        data = {k: torch.as_tensor(v) for k, v in fixed.items()}

        def loss() -> float:
            torch.manual_seed(1)  # the same latent samples for every measurement
            with torch.no_grad():
                return agent.wm.loss(data, phase=phase)[0].item()

        before = loss()
        for _ in range(8):
            metrics = agent.train_step(fixed, phase=phase)
        assert all(np.isfinite(float(v)) for v in metrics.values())
        assert loss() < before, f"{algo} phase {phase}: {before} -> {loss()}"


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_phase_stays_finite_under_bf16_autocast(algo, car, monkeypatch):
    """`train.amp=true` for every algorithm: its updates, and its behaviour's learning in
    imagination, give finite losses (bf16 is emulated where the CPU lacks it: slow, but the
    same numbers for these small models)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    obs_space, act_space, replay, _ = car
    cfg = config.compose({"env": {"id": ENV, "time_limit": 60}}, algo=algo, size="debug",
                         sets=["train.batch=4", "train.length=16", "train.amp=true"])
    torch.manual_seed(0)
    agent = Agent(algo, obs_space, act_space, cfg)
    assert agent.amp
    for phase, _, batch, length in agent.wm.schedule():
        metrics = agent.train_step(replay.sample(min(batch, 16), min(length, 16)), phase=phase)
        assert all(np.isfinite(float(v)) for v in metrics.values()), f"{algo} {phase}"


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_update_draws_its_noise_through_parallel(algo, car):
    """The randomness rule (docs/architecture.md): inside an update every random draw comes
    from wmtool.parallel's helpers, or `--nproc` silently stops being exact. Every phase,
    the behaviour's learning inside a frozen model too (`wmtool imagine`); the restart of
    Genie's unused codes included."""
    obs_space, act_space, replay, _ = car
    cfg = algo_config(algo)
    if algo == "genie":
        cfg = config.compose({"env": {"id": ENV, "time_limit": 60}}, algo=algo, size="debug",
                             sets=["train.batch=4", "train.length=16", "genie.restart_every=1"])
    agent = Agent(algo, obs_space, act_space, cfg)
    updates = [(p.name, p.batch, p.length, True) for p in agent.wm.schedule()]
    if ALGOS[algo].imagine:
        updates.append((agent.wm.phases[-1], 4, 16, False))
    for update, (phase, batch, length, world_model) in enumerate(updates):
        with NoiseAudit() as audit, parallel.training_step(0, update):
            agent.train_step(replay.sample(min(batch, 16), min(length, 16)), world_model, phase)
        assert not audit.bare, f"{algo} {phase} (world model: {world_model}): {audit.report()}"


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_acting_is_valid_and_survives_a_checkpoint_round_trip(algo, car, tmp_path):
    obs_space, act_space, replay, obs = car
    torch.manual_seed(0)
    cfg = algo_config(algo)
    agent = Agent(algo, obs_space, act_space, cfg)
    for phase, _, batch, length in agent.wm.schedule():
        agent.train_step(replay.sample(min(batch, 16), min(length, 16)), phase=phase)
    with torch.no_grad():  # a behaviour that is not all zeros, so actions tell weights apart
        for p in agent.behavior.parameters():
            p.add_(0.1 * torch.randn_like(p))

    def greedy_actions(a: Agent) -> np.ndarray:
        torch.manual_seed(3)  # a planner (PlaNet's CEM) samples: the same draws for both
        carry, out = None, []
        step = {k: np.asarray(v) for k, v in obs.items()}
        for t in range(3):
            action, carry = a.policy_step(step, carry, "greedy")
            out.append(action)
            step = {**step, "is_first": np.zeros_like(step["is_first"])}
        return np.stack(out)

    if not agent.modes:  # learns from frames alone (Genie): no policy, only weights
        ckpt.save(tmp_path / "c.pt", agent, {"agent_steps": 0, "updates": 1, "episodes": 0})
        fresh = Agent(algo, obs_space, act_space, cfg)
        ckpt.restore_agent(fresh, ckpt.load(tmp_path / "c.pt"))
        mine, theirs = agent.state_dict(), fresh.state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
        return
    actions = greedy_actions(agent)
    assert actions.shape == (3, 1, *act_space.shape)
    assert np.all(np.abs(actions) <= 1.0)  # continuous actions live in [-1, 1]
    ckpt.save(tmp_path / "c.pt", agent, {"agent_steps": 0, "updates": 1, "episodes": 0})
    fresh = Agent(algo, obs_space, act_space, cfg)
    ckpt.restore_agent(fresh, ckpt.load(tmp_path / "c.pt"))
    assert np.array_equal(greedy_actions(fresh), actions)


class FactoryWatch(torch.overrides.TorchFunctionMode):
    """Records tensor factories that wmtool code calls without saying where the tensor
    lives: on a GPU run those would land on the CPU (and fail, or copy every step)."""

    FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.rand, torch.randn,
                 torch.randint, torch.randperm, torch.arange, torch.linspace, torch.eye,
                 torch.tensor, torch.as_tensor}

    def __init__(self):
        super().__init__()
        self.undirected: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES and kwargs.get("device") is None:
            frame = sys._getframe(1)
            while frame and "/torch/" in frame.f_code.co_filename:
                frame = frame.f_back
            if frame and "/wmtool/" in frame.f_code.co_filename:
                self.undirected.append(f"{func.__name__} at {frame.f_code.co_filename}:"
                                      f"{frame.f_lineno}")
        return func(*args, **kwargs)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_tensor_lives_on_the_configured_device(algo, car):
    """GPU readiness without a GPU: while an agent learns and acts, wmtool creates no tensor
    without naming its device, and every parameter, buffer, optimiser state and replay batch
    sits on the configured device."""
    obs_space, act_space, replay, obs = car
    torch.manual_seed(0)
    agent = Agent(algo, obs_space, act_space, algo_config(algo), device="cpu")
    watch = FactoryWatch()
    with watch:
        for phase, _, batch, length in agent.wm.schedule():
            rows = replay.sample(min(batch, 16), min(length, 16))
            agent.train_step(rows, phase=phase)
        if agent.modes:
            step = {k: np.asarray(v) for k, v in obs.items()}
            carry = None
            for _ in range(2):
                _, carry = agent.policy_step(step, carry, agent.modes[0])
    assert watch.undirected == []
    device = torch.device(agent.device)
    tensors = [*agent.parameters(), *agent.buffers(),
               *(v for opt in agent.optims.values() for state in opt.state.values()
                 for k, v in state.items() if k != "step"),  # Adam keeps its count on the host
               *to_tensors(rows, agent.device).values()]
    assert {t.device for t in tensors} == {device}
