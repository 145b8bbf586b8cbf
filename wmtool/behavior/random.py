"""Uniform random actions: the prefill / data-collection baseline."""
from __future__ import annotations

import numpy as np

from wmtool.spaces import Space


class RandomPolicy:
    name = "random"

    def __init__(self, act_space: Space, seed: int = 0):
        self.act_space = act_space
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict) -> np.ndarray:
        n = len(obs["is_first"])
        return np.stack([self.act_space.sample(self.rng) for _ in range(n)])
