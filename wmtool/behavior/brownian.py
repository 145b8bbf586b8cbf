"""Brownian-motion actions: a smooth random policy for collecting World Models' data.

Each env's action drifts as a_{t+1} = clip(a_t + sqrt(dt) * N(0, 1), -1, 1) from a uniform
start at every episode start, so it holds a direction for a while (a car keeps steering one
way and accelerating) instead of jittering like uniform noise. Continuous actions only.
"""
from __future__ import annotations

import math

import numpy as np

from wmtool.errors import WmtoolError
from wmtool.spaces import Space


class BrownianPolicy:
    name = "brownian"

    def __init__(self, act_space: Space, seed: int = 0, dt: float = 0.02):
        if act_space.discrete:
            raise WmtoolError("--policy brownian needs continuous actions",
                              "use --policy random for discrete action spaces")
        self.act_space, self.scale = act_space, math.sqrt(dt)
        self.rng = np.random.default_rng(seed)
        self.current: np.ndarray | None = None

    def act(self, obs: dict) -> np.ndarray:
        first = np.asarray(obs["is_first"], bool)
        if self.current is None or len(self.current) != len(first):
            self.current = self.act_space.sample_batch(self.rng, len(first)).astype(np.float64)
            first = np.zeros_like(first)
        if first.any():
            self.current[first] = self.act_space.sample_batch(self.rng, int(first.sum()))
        step = self.rng.standard_normal(self.current.shape) * self.scale
        self.current = np.clip(self.current + step, -1.0, 1.0)
        return self.current.astype(self.act_space.dtype)
