"""Every suite steps for real, state and pixels, under one obs-dict contract."""
import numpy as np
import pytest

from wmtool import config
from wmtool.envs.factory import make_env
from wmtool.errors import WmtoolError


def make(env_id, *sets, seed=0):
    return make_env(config.compose({"env": {"id": env_id}}, sets=list(sets)).env, seed)


def check_contract(env, step):
    assert set(step) == set(env.obs_space) | {"reward", "is_first", "is_last", "is_terminal"}
    for key, space in env.obs_space.items():
        value = step[key]
        assert value.shape == space.shape and value.dtype == np.dtype(space.dtype), key
    assert isinstance(step["reward"], np.float32)


def rollout(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    first = env.reset(seed)
    assert first["is_first"] and not first["is_last"] and first["reward"] == 0
    check_contract(env, first)
    out = [first]
    for _ in range(steps):
        step = env.step(env.act_space.sample(rng))
        check_contract(env, step)
        assert not step["is_first"]
        out.append(step)
        if step["is_last"]:
            break
    return out


@pytest.mark.parametrize("env_id,obs,keys", [
    ("gym:CartPole-v1", "state", {"vector"}),
    ("gym:CartPole-v1", "pixels", {"image"}),
    ("gym:Pendulum-v1", "both", {"vector", "image"}),
    ("dmc:cartpole-balance", "state", {"vector"}),
    ("dmc:cartpole-balance", "pixels", {"image"}),
    ("dmc:walker-walk", "both", {"vector", "image"}),
    ("atari:pong", "pixels", {"image"}),
])
def test_suites_step_for_real(env_id, obs, keys):
    env = make(env_id, f"env.obs={obs}")
    try:
        assert set(env.obs_space) == keys
        steps = rollout(env, 40)
        if "image" in keys:
            assert env.obs_space["image"].shape == (64, 64, 3)
            frames = np.stack([s["image"] for s in steps])
            assert frames.std() > 1.0  # a real rendered scene, not a blank buffer
            assert np.abs(np.diff(frames.astype(int), axis=0)).sum() > 0  # and it moves
    finally:
        env.close()


def test_atari_protocol_defaults_and_overrides():
    env = make("atari:pong")
    assert env.act_space.n == 6  # minimal action set, not the full 18
    unwrapped = env._env.unwrapped
    assert unwrapped._frameskip == 1  # skipping happens in the max-pooling wrapper
    assert env._env.frame_skip == 4 and env._env.noop_max == 30
    assert unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert unwrapped.ale.getInt("max_num_frames_per_episode") == 108_000
    env.close()
    gray = make("atari:breakout", "env.atari.gray=true", "env.atari.full_action_space=true")
    assert gray.obs_space["image"].shape == (64, 64, 1) and gray.act_space.n == 18
    assert rollout(gray, 5)[-1]["image"].shape == (64, 64, 1)
    gray.close()


def test_continuous_actions_are_normalised_to_unit_box():
    env = make("gym:Pendulum-v1")  # torque bounds are [-2, 2]
    assert env.act_space.low == -1.0 and env.act_space.high == 1.0
    env.reset(0)
    env.step(np.array([1.0], np.float32))
    assert env._env.unwrapped.last_u == pytest.approx(2.0)
    env.step(np.array([-0.5], np.float32))
    assert env._env.unwrapped.last_u == pytest.approx(-1.0)


def test_terminal_and_truncation_are_kept_apart():
    env = make("gym:CartPole-v1")
    env.reset(0)
    last = None
    for _ in range(500):  # pushing one way topples the pole: a true terminal
        last = env.step(np.int64(1))
        if last["is_last"]:
            break
    assert last["is_last"] and last["is_terminal"]
    limited = make("gym:CartPole-v1", "env.time_limit=5")
    steps = rollout(limited, 100, seed=1)
    assert len(steps) == 6 and steps[-1]["is_last"] and not steps[-1]["is_terminal"]
    dmc = make("dmc:cartpole-balance", "env.action_repeat=8")  # 1000 physics steps / 8
    steps = rollout(dmc, 1000)
    assert len(steps) - 1 == 125 and not steps[-1]["is_terminal"]  # time limit: truncation


def test_action_repeat_sums_rewards():
    single = make("gym:CartPole-v1")
    repeated = make("gym:CartPole-v1", "env.action_repeat=3")
    single.reset(0), repeated.reset(0)
    assert single.step(np.int64(0))["reward"] == 1.0
    assert repeated.step(np.int64(0))["reward"] == 3.0


def test_same_seed_same_episode():
    a = rollout(make("dmc:cartpole-swingup"), 30, seed=5)
    b = rollout(make("dmc:cartpole-swingup"), 30, seed=5)
    assert all(np.array_equal(x["vector"], y["vector"]) for x, y in zip(a, b))


@pytest.mark.parametrize("env_id,needle", [
    ("gym:CartPol-v1", "gym:CartPole-v1"),
    ("dmc:cartpole-swingp", "dmc:cartpole-swingup"),
    ("atari:pongg", "atari:pong"),
    ("mujoco:walker", "valid: atari, dmc, gym"),
    ("CartPole-v1", "SUITE:TASK"),
])
def test_unknown_env_suggests(env_id, needle):
    with pytest.raises(WmtoolError) as err:
        make(env_id)
    assert needle in str(err.value)


def test_env_import_registers_third_party_env(tmp_path, monkeypatch):
    (tmp_path / "my_envs.py").write_text(
        "import gymnasium\n"
        "gymnasium.register('MyCartPole-v0', entry_point="
        "'gymnasium.envs.classic_control:CartPoleEnv', max_episode_steps=7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make("gym:MyCartPole-v0", "env.imports=[my_envs]")
    steps = rollout(env, 100)
    assert len(steps) <= 8
    with pytest.raises(WmtoolError, match="cannot import"):
        make("gym:CartPole-v1", "env.imports=[no_such_module_xyz]")
