"""Replay streamed from the stores, for datasets larger than memory (`train.replay: stream`).

Nothing but the index is loaded: each sampled window is read from the HDF5 files when it is
needed. Window starts are drawn uniformly over every window of `length` rows that lies
inside one store (the in-memory replay also has the windows that run from one store's last
episode into the next store's first; streaming leaves those out), from the same generator
the in-memory replay would use, so checkpoints resume the stream. A background thread reads
the next batch while the model trains on this one: it draws from a copy of the generator,
and the batch is used only if the real draw agrees, so prefetching never changes what is
sampled. Memory: HDF5's chunk cache per column (`CACHE_BYTES`) and one prefetched batch,
whatever the dataset's size. With data-parallel ranks each rank samples its own contiguous
share of every store's rows (a share may begin mid-episode, as windows do).
"""
from __future__ import annotations

import copy
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from wmtool.data.dataset import Dataset
from wmtool.data.store import EpisodeReader
from wmtool.errors import WmtoolError
from wmtool.spaces import Space

CACHE_BYTES = 8 << 20  # HDF5's chunk cache per column (its default is 1 MiB)


def share(rows: int, rank: int, ranks: int) -> tuple[int, int]:
    """Rows [lo, hi) of a timeline of `rows` that rank `rank` of `ranks` samples from:
    contiguous, equal to a row (an episode may be split between two ranks: a window that
    starts mid-episode is as ordinary as in memory)."""
    return rows * rank // ranks, rows * (rank + 1) // ranks


class _Timeline:
    """One store's rows (this rank's share of them) as one run of replay rows."""

    def __init__(self, path, rank: int, ranks: int, act_space: Space):
        self.reader = EpisodeReader(path)
        index = self.reader.index
        self.obs_start = index["obs_start"].astype(np.int64)
        self.step_start = index["step_start"].astype(np.int64)
        self.ends = np.cumsum(index["length"] + 1)  # rows up to each episode's end
        self.first, last = share(int(self.ends[-1]) if len(self.ends) else 0, rank, ranks)
        self.rows = last - self.first
        self.act_space = act_space
        self.columns = {key: self._cached(f"obs/{key}") for key in self.reader.obs_space}
        self.steps = {name: self._cached(name) for name in
                      ("reward", "terminated", *(("action",) if self.reader.has_action else ()))}

    def episode_firsts(self) -> np.ndarray:
        """This share's rows that are an episode's first."""
        starts = np.concatenate([[0], self.ends[:-1]]) - self.first
        return starts[(starts >= 0) & (starts < self.rows)]

    def _cached(self, name: str):
        import h5py

        dataset = self.reader.dataset(name)
        access = dataset.id.get_access_plist()
        access.set_chunk_cache(521, CACHE_BYTES, 0.75)
        return h5py.Dataset(h5py.h5d.open(self.reader.file.id, name.encode(), dapl=access))

    def read(self, start: int, length: int) -> dict[str, np.ndarray]:
        """Replay rows start..start+length of this share (episode_rows' layout)."""
        parts = []
        row, stop = self.first + start, self.first + start + length
        while row < stop:
            e = int(np.searchsorted(self.ends, row, "right"))
            begin = int(self.ends[e - 1]) if e else 0
            t0, t1 = row - begin, min(stop, int(self.ends[e])) - begin
            parts.append(self._episode_rows(e, t0, t1))
            row += t1 - t0
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _episode_rows(self, e: int, t0: int, t1: int) -> dict[str, np.ndarray]:
        o, s = int(self.obs_start[e]), int(self.step_start[e])
        n = t1 - t0
        try:
            rows = {k: v[o + t0:o + t1] for k, v in self.columns.items()}
            lo = max(t0, 1)  # row t holds the step that led to it, t-1
            steps = {k: v[s + lo - 1:s + t1 - 1] for k, v in self.steps.items()}
        except OSError as exc:
            raise WmtoolError(
                f"{self.reader.path}: episode {int(self.reader.rows[e])} "
                f"cannot be read ({str(exc).splitlines()[0] if str(exc) else exc!r})",
                f"run `wmtool data verify {self.reader.path}` to list the damaged "
                "episodes") from None
        skip = lo - t0  # 1 when the window starts at the episode's first row
        prev_action = np.zeros((n, *self.act_space.shape), self.act_space.dtype)
        if "action" in steps:
            prev_action[skip:] = steps["action"]
        reward = np.zeros(n, np.float32)
        reward[skip:] = steps["reward"]
        is_terminal = np.zeros(n, bool)
        is_terminal[skip:] = steps["terminated"]
        is_first = np.zeros(n, bool)
        is_first[0] = t0 == 0
        return {**rows, "prev_action": prev_action, "reward": reward, "is_first": is_first,
                "is_terminal": is_terminal}

    def close(self) -> None:
        self.reader.close()


class StreamReplay:
    """Replay's sampling interface over a Dataset on disk (see the module's docstring)."""

    def __init__(self, dataset: Dataset, act_space: Space, seed: int = 0, rank: int = 0,
                 ranks: int = 1, rng: np.random.Generator | None = None):
        self.dataset = dataset
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.timelines = [_Timeline(p, rank, ranks, act_space) for p in dataset.paths]
        self.size = sum(t.rows for t in self.timelines)
        self.derived: dict = {}
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="replay-stream")
        self._next: tuple[tuple, Future] | None = None
        self._lock = threading.Lock()  # h5py is not thread-safe for one file's handles

    def __len__(self) -> int:
        return self.size

    def _draw(self, rng: np.random.Generator, batch: int, length: int) -> list[tuple[int, int]]:
        valid = np.array([max(0, t.rows - length + 1) for t in self.timelines])
        if valid.sum() == 0:
            raise WmtoolError(f"this rank's share of the dataset ({self.size:,} rows) holds no "
                              f"window of {length} steps inside one store",
                              "use fewer ranks, shorter sequences, or train.replay=memory")
        ends = np.cumsum(valid)
        picks = rng.integers(0, ends[-1], batch)
        which = np.searchsorted(ends, picks, "right")
        return [(int(w), int(p - (ends[w - 1] if w else 0))) for w, p in zip(which, picks)]

    def _read(self, windows: list[tuple[int, int]], length: int) -> dict[str, np.ndarray]:
        with self._lock:
            rows = [self.timelines[w].read(start, length) for w, start in windows]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def sample(self, batch: int, length: int) -> dict[str, np.ndarray]:
        """`batch` windows of `length` rows, read from disk (the next batch is read ahead)."""
        if self.size < length:
            raise ValueError(f"replay holds {self.size} steps, fewer than one sequence ({length})")
        windows = self._draw(self.rng, batch, length)
        key = (batch, length, tuple(windows))
        if self._next is not None and self._next[0] == key:
            out = self._next[1].result()
        else:
            if self._next is not None:
                self._next[1].cancel()
            out = self._read(windows, length)
        ahead = self._draw(copy.deepcopy(self.rng), batch, length)
        self._next = ((batch, length, tuple(ahead)), self._reader.submit(self._read, ahead,
                                                                         length))
        return self._with_derived(out)

    def _with_derived(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Derived columns are computed per batch here (the in-memory replay stores them)."""
        for name, function in self.derived.items():
            flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in rows.items()}
            value = function(flat)
            rows[name] = value.reshape(*rows["reward"].shape, *value.shape[1:])
        return rows

    def derive(self, functions: dict, chunk: int = 1000) -> None:
        self.derived = dict(functions)

    def drop_derived(self) -> None:
        self.derived = {}

    def sample_episode_starts(self, count: int) -> dict[str, np.ndarray]:
        """`count` one-row windows, each an episode's first row (drawn with replacement)."""
        firsts = [t.episode_firsts() for t in self.timelines]
        ends = np.cumsum([len(f) for f in firsts])
        if ends[-1] == 0:
            raise ValueError("this share of the dataset holds no episode's first row")
        picks = self.rng.integers(0, ends[-1], count)
        which = np.searchsorted(ends, picks, "right")
        with self._lock:
            rows = [self.timelines[w].read(int(firsts[w][p - (ends[w - 1] if w else 0)]), 1)
                    for w, p in zip(which, picks)]
        return self._with_derived({k: np.stack([r[k] for r in rows]) for k in rows[0]})

    def sample_within_episodes(self, batch: int, length: int, rng: np.random.Generator,
                               tries: int = 20) -> dict[str, np.ndarray] | None:
        """Windows that never restart an episode after their first row (None if none found)."""
        found: list[tuple[int, int]] = []
        for _ in range(tries):
            for w, start in self._draw(rng, batch, length):
                t = self.timelines[w]
                end = t.ends[np.searchsorted(t.ends, t.first + start, "right")] - t.first
                if start + length <= end:
                    found.append((w, start))
            if len(found) >= batch:
                return self._with_derived(self._read(found[:batch], length))
        return None

    def close(self) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)
        for t in self.timelines:
            t.close()
