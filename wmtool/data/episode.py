"""Episodes as arrays: obs (T+1), action/reward/terminated/truncated (T).

`EpisodeBuilder` turns the env's step dicts (docs/environments.md) into that layout: the reset
observation, then per step the action taken and what the env returned.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class Episode:
    obs: dict[str, np.ndarray]          # key -> (T+1, ...)
    action: np.ndarray | None           # (T, ...) or None for observation-only data
    reward: np.ndarray                  # (T,) float32
    terminated: np.ndarray              # (T,) bool: a true terminal, bootstrapping stops
    truncated: np.ndarray               # (T,) bool: cut by a time limit, never a terminal
    seed: int = -1
    slot: int = -1  # which env of a vector env played it (not stored)

    @property
    def length(self) -> int:
        return int(len(self.reward))

    @property
    def ret(self) -> float:
        return float(np.sum(self.reward, dtype=np.float64))

    def digest(self) -> str:
        """SHA-256 of every stored array: equal digests, byte-identical episodes (tests and
        the fault matrix compare stores with it)."""
        h = hashlib.sha256()
        for key in sorted(self.obs):
            h.update(np.ascontiguousarray(self.obs[key]).tobytes())
        for arr in (self.action, self.reward, self.terminated, self.truncated):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


class EpisodeBuilder:
    def __init__(self, obs_keys, seed: int = -1):
        self.obs_keys = list(obs_keys)
        self.seed = seed
        self._obs: dict[str, list] = {k: [] for k in self.obs_keys}
        self._action: list = []
        self._reward: list = []
        self._terminated: list = []
        self._truncated: list = []

    def __len__(self) -> int:
        return len(self._reward)

    def start(self, obs: dict) -> None:
        """The reset observation (obs keys; other keys are ignored)."""
        for key in self.obs_keys:
            self._obs[key].append(obs[key])

    def add(self, action, obs: dict, reward: float, last: bool, terminal: bool) -> None:
        """One env step: the action taken and what the env returned for it."""
        self._action.append(action)
        self._reward.append(reward)
        self._terminated.append(bool(terminal))
        self._truncated.append(bool(last and not terminal))
        for key in self.obs_keys:
            self._obs[key].append(obs[key])

    def finish(self, cut: bool = False) -> Episode:
        """Stack into an Episode; `cut` marks an episode stopped early as truncated."""
        truncated = np.asarray(self._truncated, bool)
        if cut and len(truncated) and not self._terminated[-1]:
            truncated[-1] = True
        return Episode(
            obs={k: np.stack(v) for k, v in self._obs.items()},
            action=np.stack(self._action) if self._action else None,
            reward=np.asarray(self._reward, np.float32),
            terminated=np.asarray(self._terminated, bool),
            truncated=truncated,
            seed=self.seed,
        )

