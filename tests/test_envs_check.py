"""Your own env: `--env gym:package.module:ClassName` without registering it, and
`wmtool envs check` on an env that gets everything wrong and on one that gets it right."""
import json
import time

import gymnasium
import numpy as np
from gymnasium import spaces


class FaultyEnv(gymnasium.Env):
    """A float 'image', a reward of shape (1,) that turns NaN, `terminated` as an int,
    episodes that never end, and randomness from numpy's global generator (unseeded)."""

    observation_space = spaces.Dict({"camera": spaces.Box(0.0, 1.0, (8, 8, 3), np.float32),
                                     "state": spaces.Box(-1.0, 1.0, (2,), np.float32)})
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self):
        return {"camera": np.full((8, 8, 3), 0.5, np.float32),
                "state": np.array([np.random.rand(), 0.0], np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = np.array([np.nan if self.t == 3 else 1.0])
        return self._obs(), reward, 0, False, {}


class GoodEnv(gymnasium.Env):
    """uint8 RGB frames and a vector, seeded, ends after 6 steps (terminated)."""

    observation_space = spaces.Dict({"camera": spaces.Box(0, 255, (16, 16, 3), np.uint8),
                                     "state": spaces.Box(-1.0, 1.0, (3,), np.float32)})
    action_space = spaces.Discrete(3)

    def _obs(self):
        frame = np.full((16, 16, 3), 40 * self.t, np.uint8)
        return {"camera": frame, "state": self.np_random.uniform(-1, 1, 3).astype(np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action) - 1.0, self.t >= 6, False, {}


def test_check_names_every_fault_with_its_fix(cli):
    res = cli("envs", "check", f"gym:{__name__}:FaultyEnv", "--cap", "20", "--json")
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    problems = " | ".join(p["problem"] for p in report["problems"])
    assert "camera looks like an image (8, 8, 3) but is float32" in problems
    assert "reward of shape (1,)" in problems
    assert "terminated as int" in problems
    assert "reward had non-finite values" in problems
    assert "no episode ended within 20 steps" in problems
    assert "two resets with seed 0 and the same actions differ" in problems
    assert all(p["fix"] for p in report["problems"])
    assert report["encoders"] == {"image": [], "vector": ["camera", "state"]}
    assert report["episodes"] == {"terminated": 0, "truncated": 0, "cut_at_cap": 3}
    assert report["deterministic_under_seed"] is False


def test_a_sound_env_passes_and_trains_without_registering(cli, tmp_path):
    env = f"gym:{__name__}:GoodEnv"
    res = cli("envs", "check", env, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["problems"] == [] and report["deterministic_under_seed"] is True
    assert report["encoders"] == {"image": ["camera"], "vector": ["state"]}
    assert report["episodes"] == {"terminated": 3, "truncated": 0, "cut_at_cap": 0}
    assert report["reward"]["min"] == -1.0 and report["reward"]["max"] == 1.0
    text = cli("envs", "check", env)
    assert "image encoder: camera; vector encoder: state" in text.stdout
    out = cli("train", "--algo", "dreamerv3", "--env", env, "--size", "debug", "--steps", "60",
              "--set", "train.prefill=30", "--set", "train.train_ratio=64",
              "--set", "train.batch=2", "--set", "train.length=8",
              "--set", "train.eval_episodes=1", "--run-dir", tmp_path / "run", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["eval"]["length_mean"] == 6


def test_an_unknown_module_or_class_is_one_line(cli):
    res = cli("envs", "check", "gym:no_such_module_here:Env")
    assert res.exit_code == 1 and "cannot import no_such_module_here" in res.stderr


BLOCKING = '''
import time
import gymnasium
import numpy as np

class BlockingEnv(gymnasium.Env):
    observation_space = gymnasium.spaces.Box(-1, 1, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        time.sleep(3600)  # a simulator that never answers
'''


def test_an_env_that_blocks_ends_the_check_with_one_line(tmp_path):
    """A step() that never returns: the check ends within its --timeout (plus the watch's
    half-second), exit 1, one line naming the env and the call."""
    from conftest import run_wmtool

    (tmp_path / "blocking_env.py").write_text(BLOCKING)
    start = time.monotonic()
    res = run_wmtool("envs", "check", "gym:blocking_env:BlockingEnv", "--timeout", "2",
                     env={"PYTHONPATH": str(tmp_path)}, timeout=60)
    assert time.monotonic() - start < 30
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: gym:blocking_env:BlockingEnv did not return from")
    assert "step()" in lines[0] and "within 2 s" in lines[0] and "--timeout" in lines[0]
