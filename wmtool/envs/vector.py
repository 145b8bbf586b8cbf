"""K environments stepped in lock-step, with one batched step dict per call.

K > 1 runs on gymnasium's AsyncVectorEnv (one subprocess per env, "spawn" so MuJoCo/EGL
contexts are never inherited through fork): each wmtool Env is viewed as a gymnasium.Env.
K = 1 steps the env in-process: gymnasium's SyncVectorEnv deep-copies and re-batches every
observation, which cost ~20% of Atari collection throughput here.
Both follow next-step autoreset: an env that finished on the previous step is reset instead
of stepped (its action ignored), and that row has is_first=True, as in envs/base.py.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
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
        # Ctrl-C in a terminal reaches the whole process group: the parent stops and closes
        # its workers, which would otherwise each print a KeyboardInterrupt traceback.
        # (gymnasium also calls this once in the parent, for the spaces: not there.)
        if multiprocessing.parent_process() is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # SDL (pygame's renderers) turns SIGTERM into a quit event, so a worker the parent
            # terminates lives on past its closed pipe and prints a BrokenPipe traceback
            os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
            _die_with_parent()
        return _gymnasium_view(self.make)


def _die_with_parent() -> None:
    """Linux: this worker is killed when the process that started it dies (SIGKILL to the
    launcher), instead of living on to print a BrokenPipe traceback on its closed pipe."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class VecEnv:
    steps_taken = 0  # real env steps this process took, all VecEnvs together

    def __init__(self, makers: list[Callable[[], Env]]):
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode

        self.num_envs = len(makers)
        if self.num_envs == 1:
            self._vec = _InProcess(makers[0]())
        else:
            makers[0]().close()  # fail here, with a clear error, not inside a subprocess
            self._vec = AsyncVectorEnv([_Make(m) for m in makers], context="spawn",
                                       shared_memory=False,
                                       autoreset_mode=AutoresetMode.NEXT_STEP)
        self._done = np.zeros(self.num_envs, bool)
        self._stepping = False  # a step under way (an interrupt can land inside one)
        self.steps_taken_here = 0
        self.obs_space, self.act_space, self.env_id = self._vec.call("wmtool_spaces")[0]

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        seeds = None if seed is None else [seed + i for i in range(self.num_envs)]
        obs, _ = self._vec.reset(seed=seeds)
        self._done[:] = False
        n = self.num_envs
        return {**obs, "reward": np.zeros(n, np.float32), "is_first": np.ones(n, bool),
                "is_last": np.zeros(n, bool), "is_terminal": np.zeros(n, bool)}

    def step(self, actions: np.ndarray) -> dict[str, Any]:
        self._stepping = True
        obs, reward, terminated, truncated, _ = self._vec.step(actions)
        self._stepping = False
        VecEnv.steps_taken += self.num_envs
        self.steps_taken_here += self.num_envs
        first = self._done.copy()
        last = np.asarray(terminated | truncated, bool)
        self._done = last
        return {**obs, "reward": np.asarray(reward, np.float32), "is_first": first,
                "is_last": last, "is_terminal": np.asarray(terminated, bool)}

    def close(self) -> None:
        """Interrupted mid-step (Ctrl-C, SIGTERM), the workers are stopped, not asked: a
        polite close would wait on the step, then warn, and dead workers' pipes break."""
        if not self._stepping:
            self._vec.close()
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self._vec.close(terminate=True)
            except (OSError, EOFError):  # a worker already died (SIGTERM to the group)
                for process in self._vec.processes:
                    process.kill()
                    process.join()
                self._vec.closed = True  # else its __del__ tries again at exit, noisily


class _InProcess:
    """The slice of gymnasium's vector API that VecEnv uses, for one in-process env."""

    def __init__(self, env: Env):
        self.env = env
        self._needs_reset = False

    def call(self, name: str):
        assert name == "wmtool_spaces"
        return [(self.env.obs_space, self.env.act_space, self.env.env_id)]

    def _batch(self, step: dict):
        return {k: step[k][None] for k in self.env.obs_space}

    def reset(self, seed=None):
        self._needs_reset = False
        return self._batch(self.env.reset(None if seed is None else seed[0])), {}

    def step(self, actions):
        if self._needs_reset:
            self._needs_reset = False
            return self._batch(self.env.reset()), *_NO_REWARD, {}
        out = self.env.step(actions[0])
        self._needs_reset = bool(out["is_last"])
        terminal = bool(out["is_terminal"])
        return (self._batch(out), np.array([out["reward"]], np.float32), np.array([terminal]),
                np.array([self._needs_reset and not terminal]), {})

    def close(self, terminate: bool = False):
        self.env.close()


_NO_REWARD = (np.zeros(1, np.float32), np.zeros(1, bool), np.zeros(1, bool))
