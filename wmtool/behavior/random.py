"""Uniform random actions: the prefill / data-collection baseline."""
from __future__ import annotations

import numpy as np

from wmtool.spaces import Space

_BLOCK = 1024  # actions drawn per RNG call: one call per step cost ~8 us, a third of the loop


class RandomPolicy:
    name = "random"

    def __init__(self, act_space: Space, seed: int = 0):
        self.act_space = act_space
        self.rng = np.random.default_rng(seed)
        self._buffer = act_space.sample_batch(self.rng, 0)

    def act(self, obs: dict) -> np.ndarray:
        n = len(obs["is_first"])
        if len(self._buffer) < n:
            self._buffer = self.act_space.sample_batch(self.rng, max(_BLOCK, n))
        actions, self._buffer = self._buffer[:n], self._buffer[n:]
        return actions
