"""Suite-independent wrappers: action repeat and time limits."""
from __future__ import annotations

from typing import Any

import numpy as np

from wmtool.envs.base import Wrapper


class ActionRepeat(Wrapper):
    """Repeat each action `repeat` times, summing rewards; stops early at episode end."""

    def __init__(self, env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action: np.ndarray) -> dict[str, Any]:
        total = 0.0
        for _ in range(self.repeat):
            out = self.env.step(action)
            total += float(out["reward"])
            if out["is_last"]:
                break
        out["reward"] = np.float32(total)
        return out


class TimeLimit(Wrapper):
    """End episodes after `limit` agent steps as a truncation, never as a terminal."""

    def __init__(self, env, limit: int):
        super().__init__(env)
        self.limit = limit
        self._steps = 0

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        self._steps = 0
        return self.env.reset(seed)

    def step(self, action: np.ndarray) -> dict[str, Any]:
        out = self.env.step(action)
        self._steps += 1
        if self._steps >= self.limit and not out["is_last"]:
            out["is_last"] = True
        return out
