"""gymnasium adapter: any registered id, or `package.module:ClassName` (an Env class, made
without registering it), `--obs state|pixels|both`.

State observations become `vector` (float32, flattened; discrete observations one-hot) or
`image` when the env already emits uint8 HxWx3 frames (CarRacing, Atari). `pixels` renders
with render_mode="rgb_array" and resizes to the configured size.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any

import numpy as np

from wmtool import spaces
from wmtool.envs.base import Env, rescale_action, transition
from wmtool.errors import UsageError, WmtoolError


def import_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import third-party modules so their gymnasium.register calls run."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise WmtoolError(f"--env-import {name}: cannot import it ({exc})",
                              f"pip install the package that provides '{name}'") from exc


def make_gym(task: str, **kwargs):
    import os

    import gymnasium

    # pygame-based renderers: no window, no audio, no "XDG_RUNTIME_DIR" complaint on stderr
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

    env_class = _env_class(task)
    if env_class is not None:
        try:
            return env_class(**kwargs)
        except TypeError as exc:
            raise WmtoolError(f"gym:{task} could not be made with {kwargs or 'no arguments'} "
                              f"({exc})", "give the class defaults for its arguments (and "
                              "a render_mode argument for --obs pixels)") from None
    try:
        return gymnasium.make(task, **kwargs)
    except gymnasium.error.Error as exc:
        if task not in gymnasium.registry:
            close = difflib.get_close_matches(task, list(gymnasium.registry), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join('gym:' + c for c in close)}?" if close else \
                "run `wmtool envs` for examples, or --env-import MODULE to register " \
                "third-party envs"
            raise UsageError(f"unknown gymnasium env id '{task}'", hint) from exc
        raise WmtoolError(f"gymnasium could not make '{task}': {exc}") from exc


def _env_class(task: str):
    """The gymnasium.Env subclass `task` names as `package.module:ClassName`, or None when it
    is an id (`module:Env-v0` ids register themselves when gymnasium imports the module)."""
    import gymnasium

    module, _, name = task.rpartition(":")
    if not module or not name.isidentifier():
        return None
    try:
        target = getattr(importlib.import_module(module), name, None)
    except ImportError as exc:
        raise WmtoolError(f"gym:{task}: cannot import {module} ({exc})",
                          f"install the package that provides '{module}', or check the "
                          "spelling (package.module:ClassName)") from None
    if isinstance(target, type) and issubclass(target, gymnasium.Env):
        return target
    return None


def all_ids() -> list[str]:
    """Registered gymnasium ids, without ALE's (those are the atari suite)."""
    import gymnasium

    return sorted(k for k in gymnasium.registry if not k.startswith("ALE/"))


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] == tuple(size):
        return frame
    import cv2

    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


class _ObsConverter:
    """Turns one gymnasium observation (Box/Discrete/Dict/Tuple) into wmtool obs keys."""

    def __init__(self, space, size: tuple[int, int]):
        import gymnasium.spaces as gs

        self.size = size
        self.parts: list[tuple[str, Any, str]] = []  # (key, subspace path, kind)
        self.obs_space: dict[str, spaces.Space] = {}

        def visit(sub, path: tuple, name: str):
            if isinstance(sub, gs.Dict):
                for key, inner in sub.spaces.items():
                    visit(inner, path + (key,), f"{name}/{key}" if name else key)
            elif isinstance(sub, gs.Tuple):
                for i, inner in enumerate(sub.spaces):
                    visit(inner, path + (i,), f"{name}/{i}" if name else str(i))
            elif isinstance(sub, gs.Box) and sub.dtype == np.uint8 and len(sub.shape) == 3:
                key = name or "image"
                self.obs_space[key] = spaces.image(*size, sub.shape[2])
                self.parts.append((key, path, "image"))
            elif isinstance(sub, gs.Box):
                key = name or "vector"
                self.obs_space[key] = spaces.vector(int(np.prod(sub.shape)))
                self.parts.append((key, path, "vector"))
            elif isinstance(sub, gs.Discrete):
                key = name or "vector"
                self.obs_space[key] = spaces.vector(int(sub.n))
                self.parts.append((key, path, ("onehot", int(sub.n), int(sub.start))))
            else:
                raise WmtoolError(f"observation space {sub} is not supported",
                                  "use an env with Box/Discrete/Dict/Tuple observations")

        visit(space, (), "")

    def __call__(self, obs) -> dict[str, np.ndarray]:
        out = {}
        for key, path, kind in self.parts:
            value = obs
            for step in path:
                value = value[step]
            # np.array copies: an env may hand out a buffer it overwrites on the next step
            if kind == "image":
                out[key] = resize(np.array(value, dtype=np.uint8), self.size)
            elif kind == "vector":
                out[key] = np.array(value, dtype=np.float32).reshape(-1)
            else:
                _, n, start = kind
                onehot = np.zeros(n, np.float32)
                onehot[int(value) - start] = 1.0
                out[key] = onehot
        return out


def convert_action_space(space):
    """Returns (wmtool Space, function mapping a wmtool action to the gymnasium action)."""
    import gymnasium.spaces as gs

    if isinstance(space, gs.Discrete):
        start = int(space.start)
        return spaces.discrete(int(space.n)), lambda a: int(a) + start
    if isinstance(space, gs.Box):
        low = space.low.astype(np.float64)
        high = space.high.astype(np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise WmtoolError("continuous action spaces must be bounded",
                              "wrap the env so its Box action space has finite low/high")
        shape = space.shape
        return spaces.continuous(int(np.prod(shape))), lambda a: rescale_action(
            np.reshape(a, shape), low, high).astype(space.dtype)
    raise WmtoolError(f"action space {space} is not supported",
                      "use an env with Discrete or Box actions")


class GymEnv(Env):
    def __init__(self, task: str, obs: str = "state", size=(64, 64), seed: int | None = None,
                 env=None, env_id: str | None = None):
        if obs not in ("state", "pixels", "both"):
            raise WmtoolError(f"--obs {obs}: unknown observation mode", "use state, pixels or both")
        render = obs in ("pixels", "both")
        self._env = env if env is not None else make_gym(
            task, **({"render_mode": "rgb_array"} if render else {}))
        self.env_id = env_id or f"gym:{task}"
        self._mode = obs
        self._size = tuple(size)
        self._seed = seed
        self._convert = _ObsConverter(self._env.observation_space, self._size)
        self.obs_space = {}
        if obs in ("state", "both"):
            self.obs_space.update(self._convert.obs_space)
        if render:
            if "image" in self.obs_space:
                self.obs_space.pop("image")
            self.obs_space["image"] = spaces.image(*self._size)
        self.act_space, self._to_env_action = convert_action_space(self._env.action_space)

    @property
    def action_meanings(self) -> list[str] | None:
        meanings = getattr(self._env.unwrapped, "get_action_meanings", None)
        return list(meanings()) if callable(meanings) else None

    def _observe(self, raw) -> dict[str, np.ndarray]:
        out = self._convert(raw) if self._mode != "pixels" else {}
        if self._mode in ("pixels", "both"):
            frame = self._env.render()
            out["image"] = resize(np.ascontiguousarray(frame[..., :3], dtype=np.uint8), self._size)
        return {k: out[k] for k in self.obs_space}

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None  # seed once; later resets continue its RNG
        raw, _ = self._env.reset(seed=seed)
        if seed is not None:
            self._env.action_space.seed(seed)
        return transition(self._observe(raw), first=True)

    def step(self, action) -> dict[str, Any]:
        raw, reward, terminated, truncated, _ = self._env.step(self._to_env_action(action))
        reward = np.asarray(reward, dtype=np.float64)
        if reward.size != 1:
            raise WmtoolError(f"{self.env_id}: step() returned a reward of shape {reward.shape}",
                              "return one float per step")
        return transition(self._observe(raw), float(reward.reshape(())), False,
                          bool(terminated or truncated), bool(terminated))

    def close(self) -> None:
        self._env.close()
