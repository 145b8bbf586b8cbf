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


def add_noise(actions: np.ndarray, space: Space, amount: float,
              rng: np.random.Generator) -> np.ndarray:
    """(K, ...) actions with exploration noise of `amount` (also the agents' own
    behavior.explore while they collect)."""
    if amount == 0:
        return actions
    if space.discrete:
        swap = rng.random(len(actions)) < amount
        return np.where(swap, space.sample_batch(rng, len(actions)), actions)
    noisy = actions + rng.normal(0.0, amount, actions.shape)
    return np.clip(noisy, space.low, space.high).astype(space.dtype)


def check_amount(amount: float, space: Space, name: str) -> None:
    if amount < 0 or (space.discrete and amount > 1):
        raise WmtoolError(f"{name} {amount} is out of range",
                          "use a std >= 0 for continuous actions, a probability in [0, 1] "
                          "for discrete ones")


class NoisyPolicy:
    def __init__(self, inner, act_space: Space, noise: float, seed: int = 0):
        check_amount(noise, act_space, "--noise")
        self.inner, self.act_space, self.noise = inner, act_space, noise
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict) -> np.ndarray:
        return add_noise(np.asarray(self.inner.act(obs)), self.act_space, self.noise, self.rng)
