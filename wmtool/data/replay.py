"""In-memory replay: every finished episode as rows of one timeline, sequences sampled from it.

Row t of an episode holds obs_t, the action that led to it (`prev_action`, zero at t=0), the
reward received on arriving (`reward`), `is_first` (t=0) and `is_terminal`. Sampled sequences
may span an episode boundary; `is_first` inside a sequence makes the model restart its
latent state there. The HDF5 store is the durable copy; this is rebuilt from it on resume.

With a `device` (train.replay_on_device), every column also lives on the training device,
written as episodes arrive, and `sample` gathers batches there: a GPU then never waits for
numpy to index and copy a batch. Indices come from the same generator either way, so the
batches are the same.
"""
from __future__ import annotations

import numpy as np
import torch

from wmtool.data.episode import Episode
from wmtool.data.integrity import nonfinite_fields
from wmtool.errors import WmtoolError
from wmtool.spaces import Space


def check_finite(ep: Episode, where: str) -> None:
    """Non-finite data is refused where it enters replay: it would poison every update
    (twohot clamps an infinite reward silently; NaN stops training at the first update)."""
    bad = nonfinite_fields(ep)
    if bad:
        raise WmtoolError(f"{where} has non-finite values (NaN or inf) in {', '.join(bad)}",
                          "fix or drop those episodes; `wmtool data info FILE` lists them")


def episode_rows(ep: Episode, act_space: Space) -> dict[str, np.ndarray]:
    n = ep.length
    prev_action = np.zeros((n + 1, *act_space.shape), act_space.dtype)
    if ep.action is not None:
        prev_action[1:] = ep.action
    reward = np.zeros(n + 1, np.float32)
    reward[1:] = ep.reward
    is_first = np.zeros(n + 1, bool)
    is_first[0] = True
    is_terminal = np.zeros(n + 1, bool)
    is_terminal[1:] = ep.terminated
    return {**ep.obs, "prev_action": prev_action, "reward": reward, "is_first": is_first,
            "is_terminal": is_terminal}


class Replay:
    def __init__(self, obs_space: dict[str, Space], act_space: Space, capacity: int,
                 seed: int = 0, device: str | None = None):
        self.obs_space, self.act_space, self.capacity = obs_space, act_space, capacity
        self.rng = np.random.default_rng(seed)
        self.columns: dict[str, np.ndarray] = {}
        self.size = 0
        self.episode_lengths: list[int] = []  # rows per episode still held, oldest first
        self.derived: set[str] = set()  # columns computed from the others (see `derive`)
        self.device = device
        self.on_device: dict[str, torch.Tensor] = {}  # the columns' copy on `device`

    @staticmethod
    def bytes_per_step(obs_space: dict[str, Space], act_space: Space) -> int:
        total = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in obs_space.values())
        total += max(1, int(np.prod(act_space.shape))) * np.dtype(act_space.dtype).itemsize
        return total + 4 + 2  # reward, is_first, is_terminal

    def __len__(self) -> int:
        return self.size

    def add(self, episode: Episode) -> None:
        self.drop_derived()  # they would not cover the new rows
        rows = episode_rows(episode, self.act_space)
        n = len(rows["reward"])
        if not self.columns:
            self.columns = {k: np.empty((max(1024, 2 * n), *v.shape[1:]), v.dtype)
                            for k, v in rows.items()}
        if self.size + n > len(self.columns["reward"]):
            grow = max(self.size + n, 2 * len(self.columns["reward"]))
            for k, v in self.columns.items():
                bigger = np.empty((grow, *v.shape[1:]), v.dtype)
                bigger[:self.size] = v[:self.size]
                self.columns[k] = bigger
        for k, v in rows.items():
            self.columns[k][self.size:self.size + n] = v
        self._mirror_rows(self.size, self.size + n)
        self.size += n
        self.episode_lengths.append(n)
        self._evict()

    def _mirror_rows(self, start: int, stop: int) -> None:
        """Copy rows start..stop to the device copy; when the columns were reallocated or
        changed, allocate the copy afresh at their size and copy every row up to `stop`."""
        if self.device is None:
            return
        if {k: len(v) for k, v in self.on_device.items()} != \
                {k: len(v) for k, v in self.columns.items()}:
            self.on_device = {k: torch.empty((len(v), *v.shape[1:]), device=self.device,
                                             dtype=torch.from_numpy(v[:0]).dtype)
                              for k, v in self.columns.items()}
            start = 0
        for k, v in self.columns.items():
            self.on_device[k][start:stop].copy_(torch.from_numpy(v[start:stop]))

    def _evict(self) -> None:
        drop = 0
        while self.size - drop > self.capacity and len(self.episode_lengths) > 1:
            drop += self.episode_lengths.pop(0)
        if drop:
            for k, v in self.columns.items():
                v[:self.size - drop] = v[drop:self.size].copy()
            self.size -= drop
            self._mirror_rows(0, self.size)

    def sample(self, batch: int, length: int) -> dict[str, np.ndarray | torch.Tensor]:
        """`batch` windows of `length` rows: numpy arrays, or tensors on `device`."""
        if self.size < length:
            raise ValueError(f"replay holds {self.size} steps, fewer than one sequence ({length})")
        starts = self.rng.integers(0, self.size - length + 1, batch)
        index = starts[:, None] + np.arange(length)[None]
        if self.on_device:
            index = torch.from_numpy(index).to(self.device)
            return {k: v[index] for k, v in self.on_device.items()}
        return {k: v[index] for k, v in self.columns.items()}

    def derive(self, functions: dict, chunk: int = 1000) -> None:
        """Add columns computed once from every row held, e.g. a frozen encoder's codes, so
        sampled batches carry them instead of recomputing them per update.
        `functions`: name -> f(rows: dict of numpy arrays) -> numpy array with one row each."""
        self.drop_derived()
        for name, function in functions.items():
            parts = [function({k: v[i:min(i + chunk, self.size)]
                               for k, v in self.columns.items() if k not in self.derived})
                     for i in range(0, self.size, chunk)]
            column = np.empty((len(self.columns["reward"]), *parts[0].shape[1:]), parts[0].dtype)
            column[:self.size] = np.concatenate(parts)
            self.columns[name] = column
            self.derived.add(name)
        self._mirror_rows(0, self.size)

    def drop_derived(self) -> None:
        for name in self.derived:
            del self.columns[name]
            self.on_device.pop(name, None)
        self.derived.clear()

    def sample_episode_starts(self, count: int) -> dict[str, np.ndarray]:
        """`count` one-row windows, each an episode's first row (drawn with replacement)."""
        firsts = np.cumsum([0] + self.episode_lengths[:-1])
        index = self.rng.choice(firsts, count)[:, None]
        return {k: v[index] for k, v in self.columns.items()}

    def sample_within_episodes(self, batch: int, length: int, rng: np.random.Generator,
                               tries: int = 100) -> dict[str, np.ndarray] | None:
        """Sequences that never restart an episode after their first row (None if none found).
        Takes its own generator so that looking at the model never changes training."""
        if self.size < length:
            return None
        is_first = self.columns["is_first"]
        found = np.empty(0, np.int64)
        for _ in range(tries):
            starts = rng.integers(0, self.size - length + 1, batch)
            inside = ~is_first[starts[:, None] + np.arange(1, length)[None]].any(1)
            found = np.concatenate([found, starts[inside]])[:batch]
            if len(found) == batch:
                index = found[:, None] + np.arange(length)[None]
                return {k: v[index] for k, v in self.columns.items()}
        return None

    def state(self) -> dict[str, np.ndarray]:
        """Contents as arrays (for checks that resumed replay equals the saved one)."""
        return {k: v[:self.size] for k, v in self.columns.items()}


def sample_sequences(episodes: list[Episode], act_space, count: int, length: int,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`count` windows of `length` rows, each inside one episode (no restarts mid-window)."""
    usable = [ep for ep in episodes if ep.length + 1 >= length]
    if not usable:
        longest = max((ep.length + 1 for ep in episodes), default=0)
        raise WmtoolError(f"no episode has {length} steps (longest: {longest})",
                          "lower --context/--horizon or use longer episodes")
    windows = []
    for i in rng.integers(0, len(usable), count):
        rows = episode_rows(usable[i], act_space)
        start = int(rng.integers(0, len(rows["reward"]) - length + 1))
        windows.append({k: v[start:start + length] for k, v in rows.items()})
    return {k: np.stack([w[k] for w in windows]) for k in windows[0]}
