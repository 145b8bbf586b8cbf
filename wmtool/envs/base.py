"""The one environment contract every suite adapter implements (docs/environments.md).

`reset()` and `step()` both return a flat dict: observation keys (`image` uint8 HWC,
`vector` float32, or several) plus `reward`, `is_first`, `is_last`, `is_terminal`.
`is_last and not is_terminal` is a truncation (time limit): never learned as a terminal.
Keys starting with `log/` are recorded but never fed to models.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from wmtool.errors import unfilled
from wmtool.spaces import Space

STEP_KEYS = ("reward", "is_first", "is_last", "is_terminal")


def transition(obs: dict[str, np.ndarray], reward: float = 0.0, first: bool = False,
               last: bool = False, terminal: bool = False) -> dict[str, Any]:
    return {**obs, "reward": np.float32(reward), "is_first": first, "is_last": last,
            "is_terminal": terminal}


class Env:
    """Base class for suite adapters; subclasses set the two spaces and the two methods."""

    obs_space: dict[str, Space]
    act_space: Space
    env_id: str = ""
    # What each discrete action does, where the env says (ALE: "NOOP", "FIRE", "UP", ...);
    # `wmtool play` labels its keys with them.
    action_meanings: list[str] | None = None

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        raise unfilled(__name__, "reset(seed) -> the first observation dict (the step keys of "
                                 "docs/environments.md, is_first true)")

    def step(self, action: np.ndarray) -> dict[str, Any]:
        raise unfilled(__name__, "step(action) -> the next observation dict with reward, is_last, "
                                 "is_terminal")

    def close(self) -> None:
        pass


class Wrapper(Env):
    def __init__(self, env: Env):
        self.env = env
        self.obs_space = env.obs_space
        self.act_space = env.act_space
        self.env_id = env.env_id
        self.action_meanings = env.action_meanings

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        return self.env.reset(seed)

    def step(self, action: np.ndarray) -> dict[str, Any]:
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()


def rescale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map an action from [-1, 1] to the env's [low, high] box (clipping first)."""
    action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return low + (action + 1.0) * 0.5 * (high - low)
