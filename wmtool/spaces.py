"""Observation/action space descriptions shared by envs, the HDF5 store and models.

A `Space` is plain data (shape, dtype, bounds, number of discrete choices) so it can be
written to HDF5 attributes and checkpoints as JSON and compared for equality when appending.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Space:
    shape: tuple[int, ...]
    dtype: str
    low: float | None = None
    high: float | None = None
    n: int | None = None  # number of choices for a discrete action; None when continuous

    @property
    def discrete(self) -> bool:
        return self.n is not None

    @property
    def is_image(self) -> bool:
        return self.dtype == "uint8" and len(self.shape) == 3

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return self.sample_batch(rng, 1)[0]

    def sample_batch(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n uniform samples, stacked: (n, *shape)."""
        if self.discrete:
            return rng.integers(self.n, size=n, dtype=self.dtype)
        low = -1.0 if self.low is None else self.low
        high = 1.0 if self.high is None else self.high
        return rng.uniform(low, high, (n, *self.shape)).astype(self.dtype)

    def to_dict(self) -> dict:
        given = {k: v for k, v in asdict(self).items() if v is not None}
        return given | {"shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> "Space":
        return cls(shape=tuple(d["shape"]), dtype=d["dtype"], low=d.get("low"),
                   high=d.get("high"), n=d.get("n"))


def image(height: int, width: int, channels: int = 3) -> Space:
    return Space((height, width, channels), "uint8", 0, 255)


def vector(dim: int) -> Space:
    return Space((dim,), "float32")


def discrete(n: int) -> Space:
    return Space((), "int64", 0, n - 1, n)


def continuous(dim: int) -> Space:
    """Continuous actions are always normalised to [-1, 1]; envs rescale to their bounds."""
    return Space((dim,), "float32", -1.0, 1.0)


def dumps(spaces: dict[str, Space] | Space) -> str:
    if isinstance(spaces, Space):
        return json.dumps(spaces.to_dict(), sort_keys=True)
    return json.dumps({k: s.to_dict() for k, s in spaces.items()}, sort_keys=True)


def loads_obs(text: str) -> dict[str, Space]:
    return {k: Space.from_dict(v) for k, v in json.loads(text).items()}


def loads_act(text: str) -> Space:
    return Space.from_dict(json.loads(text))
