"""K environments stepped in lock-step on gymnasium's vector engine.

Each wmtool Env is viewed as a gymnasium.Env so gymnasium's SyncVectorEnv (K=1) or
AsyncVectorEnv (K>1, one subprocess per env, "spawn" so MuJoCo/EGL contexts are never
inherited through fork) does the process management. `step` returns one batched step dict
(arrays with a leading K axis) in the contract of envs/base.py: an env that finished on the
previous step is reset by gymnasium's next-step autoreset, and that row has is_first=True.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from wmtool.envs.base import Env
from wmtool.spaces import Space


def _gym_space(space: Space):
    import gymnasium.spaces as gs

    if space.discrete:
        return gs.Discrete(space.n)
    low = -np.inf if space.low is None else space.low
    high = np.inf if space.high is None else space.high
    return gs.Box(low, high, space.shape, np.dtype(space.dtype))


def _gymnasium_view(make: Callable[[], Env]):
    import gymnasium

    class GymnasiumView(gymnasium.Env):
        def __init__(self):
            self.env = make()
            self.observation_space = gymnasium.spaces.Dict(
                {k: _gym_space(s) for k, s in self.env.obs_space.items()})
            self.action_space = _gym_space(self.env.act_space)

        def wmtool_spaces(self):
            return self.env.obs_space, self.env.act_space, self.env.env_id

        def _split(self, step: dict):
            return {k: step[k] for k in self.env.obs_space}

        def reset(self, *, seed=None, options=None):
            return self._split(self.env.reset(seed)), {}

        def step(self, action):
            out = self.env.step(action)
            last, terminal = bool(out["is_last"]), bool(out["is_terminal"])
            return self._split(out), float(out["reward"]), terminal, last and not terminal, {}

        def close(self):
            self.env.close()

    return GymnasiumView()


class _Make:
    """Picklable zero-argument constructor for the subprocesses."""

    def __init__(self, make: Callable[[], Env]):
        self.make = make

    def __call__(self):
        return _gymnasium_view(self.make)


class VecEnv:
    def __init__(self, makers: list[Callable[[], Env]]):
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

        self.num_envs = len(makers)
        fns = [_Make(m) for m in makers]
        if self.num_envs == 1:
            self._vec = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)
        else:
            makers[0]().close()  # fail here, with a clear error, not inside a subprocess
            self._vec = AsyncVectorEnv(fns, context="spawn", shared_memory=False,
                                       autoreset_mode=AutoresetMode.NEXT_STEP)
        self._done = np.zeros(self.num_envs, bool)
        self.obs_space, self.act_space, self.env_id = self._vec.call("wmtool_spaces")[0]

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        seeds = None if seed is None else [seed + i for i in range(self.num_envs)]
        obs, _ = self._vec.reset(seed=seeds)
        self._done[:] = False
        n = self.num_envs
        return {**obs, "reward": np.zeros(n, np.float32), "is_first": np.ones(n, bool),
                "is_last": np.zeros(n, bool), "is_terminal": np.zeros(n, bool)}

    def step(self, actions: np.ndarray) -> dict[str, Any]:
        obs, reward, terminated, truncated, _ = self._vec.step(actions)
        first = self._done.copy()
        last = np.asarray(terminated | truncated, bool)
        self._done = last
        return {**obs, "reward": np.asarray(reward, np.float32), "is_first": first,
                "is_last": last, "is_terminal": np.asarray(terminated, bool)}

    def close(self) -> None:
        self._vec.close()
