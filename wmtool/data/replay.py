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

from collections import deque

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
    """A ring of rows: `capacity` rows at most, the oldest overwritten by the newest.

    Rows are addressed by their place in time (logical row 0 is the oldest held), which
    `oldest` maps to where they sit in the columns, so adding an episode costs time in its
    own length whatever the capacity. Sampled windows never cross from the newest row to the
    oldest; an episode whose first rows were overwritten keeps the rest (windows start
    mid-episode anyway) but offers no episode start (`sample_episode_starts`)."""

    def __init__(self, obs_space: dict[str, Space], act_space: Space, capacity: int,
                 seed: int = 0, device: str | None = None):
        self.obs_space, self.act_space, self.capacity = obs_space, act_space, capacity
        self.rng = np.random.default_rng(seed)
        self.columns: dict[str, np.ndarray] = {}
        self.size = 0
        self.oldest = 0  # where logical row 0 sits in the columns
        self.episode_lengths: deque[int] = deque()  # rows per episode still held, oldest first
        self.oldest_cut = False  # the oldest episode lost its first rows to newer ones
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

    @property
    def allocated(self) -> int:
        return len(self.columns["reward"]) if self.columns else 0

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Where logical rows start..stop sit in the columns."""
        return (self.oldest + np.arange(start, stop)) % max(self.allocated, 1)

    def add(self, episode: Episode) -> None:
        self.drop_derived()  # they would not cover the new rows
        rows = episode_rows(episode, self.act_space)
        n = len(rows["reward"])
        cut = n > self.capacity
        if cut:  # only its newest rows fit
            rows, n = {k: v[-self.capacity:] for k, v in rows.items()}, self.capacity
        self._make_room(rows, n)
        at = (self.oldest + self.size) % self.allocated
        first = min(n, self.allocated - at)  # the rows before the end of the columns, then
        for k, v in rows.items():           # the rest from the start
            self.columns[k][at:at + first] = v[:first]
            self.columns[k][:n - first] = v[first:]
        self._mirror_rows(at, at + first)
        self._mirror_rows(0, n - first)
        overwritten = max(0, self.size + n - self.allocated)
        self.size += n - overwritten
        self.oldest = (self.oldest + overwritten) % self.allocated
        self._forget(overwritten)
        self.episode_lengths.append(n)
        self.oldest_cut = self.oldest_cut or cut

    def _make_room(self, rows: dict[str, np.ndarray], n: int) -> None:
        """Allocate (or grow, while below capacity) the columns. Until they reach capacity
        nothing is overwritten, so logical and stored order are the same and growing is a
        plain copy."""
        if not self.columns:
            size = min(self.capacity, max(1024, 2 * n))
            self.columns = {k: np.empty((size, *v.shape[1:]), v.dtype) for k, v in rows.items()}
        if self.size + n > self.allocated and self.allocated < self.capacity:
            grow = min(self.capacity, max(self.size + n, 2 * self.allocated))
            for k, v in self.columns.items():
                bigger = np.empty((grow, *v.shape[1:]), v.dtype)
                bigger[:self.size] = v[:self.size]
                self.columns[k] = bigger

    def _forget(self, rows: int) -> None:
        """The oldest `rows` rows were overwritten: drop their episodes from the count."""
        while rows:
            if self.episode_lengths[0] <= rows:
                rows -= self.episode_lengths.popleft()
                self.oldest_cut = False
            else:
                self.episode_lengths[0] -= rows
                self.oldest_cut, rows = True, 0

    def _mirror_rows(self, start: int, stop: int) -> None:
        """Copy stored rows start..stop to the device copy; when the columns were
        reallocated or changed, allocate the copy afresh at their size and copy every row."""
        if self.device is None or stop <= start:
            return
        if {k: len(v) for k, v in self.on_device.items()} != \
                {k: len(v) for k, v in self.columns.items()}:
            self.on_device = {k: torch.empty((len(v), *v.shape[1:]), device=self.device,
                                             dtype=torch.from_numpy(v[:0]).dtype)
                              for k, v in self.columns.items()}
            start, stop = 0, self.allocated
        for k, v in self.columns.items():
            self.on_device[k][start:stop].copy_(torch.from_numpy(v[start:stop]))

    def sample(self, batch: int, length: int) -> dict[str, np.ndarray | torch.Tensor]:
        """`batch` windows of `length` rows: numpy arrays, or tensors on `device`."""
        if self.size < length:
            raise ValueError(f"replay holds {self.size} steps, fewer than one sequence ({length})")
        starts = self.rng.integers(0, self.size - length + 1, batch)
        index = self._windows(starts, length)
        if self.on_device:
            index = torch.from_numpy(index).to(self.device)
            return {k: v[index] for k, v in self.on_device.items()}
        return {k: v[index] for k, v in self.columns.items()}

    def _windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """Stored rows of the windows of `length` logical rows from each of `starts`."""
        index = self.oldest + starts[:, None] + np.arange(length)[None]
        return index % self.allocated if self.oldest else index

    def derive(self, functions: dict, chunk: int = 1000) -> None:
        """Add columns computed once from every row held, e.g. a frozen encoder's codes, so
        sampled batches carry them instead of recomputing them per update.
        `functions`: name -> f(rows: dict of numpy arrays) -> numpy array with one row each."""
        self.drop_derived()
        for name, function in functions.items():
            column = None
            for i in range(0, self.size, chunk):
                where = self.rows(i, min(i + chunk, self.size))
                part = function({k: v[where] for k, v in self.columns.items()
                                 if k not in self.derived})
                if column is None:
                    column = np.empty((self.allocated, *part.shape[1:]), part.dtype)
                column[where] = part
            self.columns[name] = column
            self.derived.add(name)
        self._mirror_rows(0, self.allocated)

    def drop_derived(self) -> None:
        for name in self.derived:
            del self.columns[name]
            self.on_device.pop(name, None)
        self.derived.clear()

    def sample_episode_starts(self, count: int) -> dict[str, np.ndarray]:
        """`count` one-row windows, each an episode's first row (drawn with replacement)."""
        firsts = np.cumsum([0, *self.episode_lengths])[:-1][int(self.oldest_cut):]
        index = self._windows(self.rng.choice(firsts, count), 1)
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
            inside = ~is_first[self._windows(starts, length)[:, 1:]].any(1)
            found = np.concatenate([found, starts[inside]])[:batch]
            if len(found) == batch:
                index = self._windows(found, length)
                return {k: v[index] for k, v in self.columns.items()}
        return None

    def state(self) -> dict[str, np.ndarray]:
        """Contents in time order (for checks that resumed replay equals the saved one)."""
        where = self.rows(0, self.size)
        return {k: v[where] for k, v in self.columns.items()}


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
