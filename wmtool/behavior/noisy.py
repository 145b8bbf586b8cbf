"""Exploration noise around another policy's actions (`wmtool collect --noise`).

Collecting with a trained agent shows a world model the states that agent reaches (a car
driving along the road); noise widens that to the states just off its path, so the model also
learns what happens when a controller does a little worse. Continuous actions get
a + N(0, noise^2), clipped to the space's bounds; discrete actions are replaced by a uniform
choice with probability `noise` (epsilon-greedy).
"""
from __future__ import annotations

import numpy as np

from wmtool.errors import WmtoolError
from wmtool.spaces import Space


class NoisyPolicy:
    def __init__(self, inner, act_space: Space, noise: float, seed: int = 0):
        if noise < 0 or (act_space.discrete and noise > 1):
            raise WmtoolError(f"--noise {noise} is out of range",
                              "use a std >= 0 for continuous actions, a probability in [0, 1] "
                              "for discrete ones")
        self.inner, self.act_space, self.noise = inner, act_space, noise
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict) -> np.ndarray:
        actions = np.asarray(self.inner.act(obs))
        if self.noise == 0:
            return actions
        space = self.act_space
        if space.discrete:
            swap = self.rng.random(len(actions)) < self.noise
            return np.where(swap, space.sample_batch(self.rng, len(actions)), actions)
        noisy = actions + self.rng.normal(0.0, self.noise, actions.shape)
        return np.clip(noisy, space.low, space.high).astype(space.dtype)
