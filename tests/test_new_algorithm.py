"""Adding an algorithm is adding files (issue 27): a minimal one, written here against the
contract in models/base.py and behavior/base.py, is registered and goes through train ->
eval -> dream -> export on the real CLI with no change to the engine or the CLI.

The model: a deterministic latent z = enc(obs), z' = dyn(z, a), with reward, continue and
decoder heads. The behaviour: a tanh-linear policy that learns to maximise the predicted
reward one step ahead, through the frozen dynamics."""
import json

import pytest
import torch
from torch import nn

from wmtool import config, parallel
from wmtool.behavior.actor_critic import frozen
from wmtool.behavior.base import Behavior
from wmtool.behavior.random import RandomPolicy
from wmtool.data.replay import Replay
from wmtool.engine.agent import Agent
from wmtool.engine.loops import run_episodes
from wmtool.envs.factory import make_vec
from wmtool.models.base import Decodes, Loss, OptimGroup, Phase, WorldModel
from wmtool.noise_audit import NoiseAudit
from wmtool.registry import ALGOS, Entry

KEY = "vector"  # gym:Pendulum-v1's observation key


class TinyModel(WorldModel, Decodes):
    def __init__(self, obs_space, act_space, cfg, latent: int = 16):
        super().__init__()
        self.cfg, self.act_dim, self.input_keys = cfg, int(act_space.shape[0]), [KEY]
        size = obs_space[KEY].shape[0]
        self.encoder = nn.Sequential(nn.Linear(size, 32), nn.Tanh(), nn.Linear(32, latent))
        self.dynamics = nn.Sequential(nn.Linear(latent + self.act_dim, 32), nn.Tanh(),
                                      nn.Linear(32, latent))
        self.reward, self.cont = nn.Linear(latent, 1), nn.Linear(latent, 1)
        self.decoder = nn.Linear(latent, size)
        self.latent = latent

    def schedule(self):
        t = self.cfg.train
        return [Phase("joint", t.steps, t.batch, t.length)]

    def loss(self, batch, state=None, phase="joint"):
        z = self.encoder(batch[KEY])
        predicted = self.dynamics(torch.cat([z[:, :-1], batch["prev_action"][:, 1:]], -1))
        fresh = ~batch["is_first"][:, 1:, None]  # no transition into an episode start
        losses = {"dynamics": (fresh * (predicted - z[:, 1:].detach()) ** 2).mean(),
                  "reward": ((self.predict_reward(z) - batch["reward"]) ** 2).mean(),
                  "decoder": ((self.decoder(z) - batch[KEY]) ** 2).mean(),
                  "cont": nn.functional.binary_cross_entropy_with_logits(
                      self.cont(z)[..., 0], 1.0 - batch["is_terminal"].float())}
        return Loss(sum(losses.values()), ["wm"], {"z": z},
                    {k: v.detach() for k, v in losses.items()})

    def initial(self, batch):
        return {"z": torch.zeros(batch, self.latent)}

    def filter_step(self, state, prev_action, obs, is_first, sample=True):
        return {"z": self.encoder(obs[KEY])}

    def observe(self, batch, state=None):
        post = {"z": self.encoder(batch[KEY])}
        return post, post

    def features(self, state):
        return state["z"]

    def state_from_features(self, feat):
        return {"z": feat}

    def imagine(self, start, act, horizon, sample=True):
        states, actions = [start["z"]], []
        for t in range(horizon):
            actions.append(act(states[-1], t))
            states.append(self.dynamics(torch.cat([states[-1], actions[-1]], -1)))
        return {"z": torch.stack(states)}, torch.stack(actions)

    def predict_reward(self, feat):
        return self.reward(feat)[..., 0]

    def predict_cont(self, feat):
        return torch.sigmoid(self.cont(feat)[..., 0])

    @property
    def decoded_keys(self):
        return [], [KEY]

    def decode(self, feat):
        return {KEY: self.decoder(feat)}


class OneStepPolicy(Behavior):
    def __init__(self, latent: int, act_dim: int):
        super().__init__()
        self.linear = nn.Linear(latent, act_dim)

    def act(self, feat, mode="sample"):
        action = torch.tanh(self.linear(feat))
        if mode == "greedy":
            return action
        return (action + 0.3 * torch.randn_like(action)).clamp(-1.0, 1.0)

    def learn(self, wm, start, start_cont, step, autocast):
        with frozen(wm):
            states, _ = wm.imagine(start, lambda feat, t: self.act(feat, "greedy"), 1)
            loss = -wm.predict_reward(states["z"][1]).mean()
        return {**step(["policy"], loss), "train/policy/loss": float(loss.detach())}


class ExportedPolicy(nn.Module):
    """forward(observation, is_first) -> (action,): no carry."""
    outputs, usage = ["action"], "feed each observation; is_first is accepted and unused"

    def __init__(self, agent):
        super().__init__()
        self.wm, self.behavior, self.obs_keys = agent.wm, agent.behavior, [KEY]

    def carry_shapes(self):
        return {}

    def forward(self, observation, is_first):
        return self.behavior.act(self.wm.encoder(observation), "greedy")


def build(obs_space, act_space, cfg):
    wm = TinyModel(obs_space, act_space, cfg)
    policy = OneStepPolicy(wm.latent, wm.act_dim)
    return wm, policy, {"wm": OptimGroup(wm.parameters(), 1e-3, 1e-8, 100.0),
                        "policy": OptimGroup(policy.parameters(), 1e-3, 1e-8, 100.0)}


def acting(agent):
    return ExportedPolicy(agent)


@pytest.fixture
def tiny_algo(monkeypatch):
    monkeypatch.setitem(ALGOS, "tiny", Entry(f"{__name__}:build", "a test's minimal algorithm",
                                             acting=f"{__name__}:acting"))


def test_a_new_algorithm_runs_through_every_command(cli, tiny_algo, tmp_path):
    run = tmp_path / "run"
    res = cli("train", "--algo", "tiny", "--env", "gym:Pendulum-v1", "--steps", 300, "--set",
              "train.prefill=200", "--set", "train.batch=4", "--set", "train.length=8",
              "--set", "train.train_ratio=16", "--set", "train.eval_episodes=1",
              "--run-dir", run, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    trained = json.loads(res.stdout)
    assert trained["updates"] > 0 and trained["algo"] == "tiny"
    res = cli("eval", "--run", run, "--episodes", 1, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["episodes"] == 1
    res = cli("dream", "--run", run, "--context", 3, "--horizon", 4, "--sequences", 2,
              "--plot", tmp_path / "dream.png", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["error"][KEY]) == 4
    res = cli("export", "--run", run, "--format", "onnx", "--out", tmp_path / "p.onnx",
              "--json", "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metadata"]["outputs"] == ["action"]


class AugmentedModel(TinyModel):
    """TinyModel that jitters its inputs while training, with the noise drawn by `draw`."""
    draw = staticmethod(parallel.randn_like)

    def loss(self, batch, state=None, phase="joint"):
        jittered = {**batch, KEY: batch[KEY] + 0.01 * self.draw(batch[KEY])}
        return super().loss(jittered, state, phase)


class BareAugmentedModel(AugmentedModel):
    draw = staticmethod(torch.randn_like)  # the same noise on every rank: breaks --nproc


def build_augmented(obs_space, act_space, cfg, model=AugmentedModel):
    wm = model(obs_space, act_space, cfg)
    policy = OneStepPolicy(wm.latent, wm.act_dim)
    return wm, policy, {"wm": OptimGroup(wm.parameters(), 1e-3, 1e-8, 100.0),
                        "policy": OptimGroup(policy.parameters(), 1e-3, 1e-8, 100.0)}


def build_bare(obs_space, act_space, cfg):
    return build_augmented(obs_space, act_space, cfg, BareAugmentedModel)


@pytest.mark.parametrize("builder, bare", [("build_augmented", False), ("build_bare", True)])
def test_the_randomness_rule_catches_a_family_that_draws_its_own_noise(monkeypatch, builder,
                                                                       bare):
    """The check the contract tests run on every registered algorithm
    (tests/test_contract.py) fails a new family whose update draws noise with bare torch."""
    monkeypatch.setitem(ALGOS, "tiny", Entry(f"{__name__}:{builder}", "a test's family"))
    cfg = config.compose({"env": {"id": "gym:Pendulum-v1", "time_limit": 40}}, algo="tiny",
                         sets=["train.batch=4", "train.length=8"])
    vec = make_vec(cfg.env, 1)
    replay = Replay(vec.obs_space, vec.act_space, 1_000)
    try:
        run_episodes(vec, RandomPolicy(vec.act_space, 0), steps=80, seed=0,
                     on_episode=replay.add)
    finally:
        vec.close()
    agent = Agent("tiny", vec.obs_space, vec.act_space, cfg)
    with NoiseAudit() as audit, parallel.training_step(0, 0):
        agent.train_step(replay.sample(4, 8))
    assert bool(audit.bare) == bare, audit.report()
    if bare:
        assert "randn_like at" in audit.report() and "test_new_algorithm.py" in audit.report()


def build_positional(obs_space, act_space, cfg):
    wm, policy, groups = build(obs_space, act_space, cfg)
    return wm, policy, {name: tuple(group) for name, group in groups.items()}


def test_results_of_the_contract_are_typed_not_positional(monkeypatch):
    """Optimiser groups are OptimGroups and a loss is a Loss: a builder that hands plain
    tuples gets one line naming the type to return."""
    from wmtool.errors import WmtoolError

    monkeypatch.setitem(ALGOS, "tiny", Entry(f"{__name__}:build_positional", "old style"))
    cfg = config.compose({"env": {"id": "gym:Pendulum-v1"}}, algo="tiny")
    vec = make_vec(cfg.env, 1)
    vec.close()
    with pytest.raises(WmtoolError, match="optimiser group 'wm' is a tuple, not an OptimGroup"):
        Agent("tiny", vec.obs_space, vec.act_space, cfg)
