"""Checking an episode store: which index rows can be trusted, which data rows read back.

The index (/episodes) is the store's commit record, so its rows fall into three kinds:
  usable      a complete episode, contiguous with the usable rows before it
  uncommitted all-zero rows after the last non-zero one: a commit a crash cut short (the
              index was grown but its rows never written); they hold nothing
  damaged     anything else: a row that is neither, or a row in an index chunk whose
              checksum fails. Readers and writers refuse such a store instead of guessing
              (guessing "everything after the first bad row is uncommitted" once made a
              writer delete 181 good episodes behind one bad row).
Every row i also satisfies obs_start == step_start + i (episode i has T+1 observations and T
steps), which lets rows after a damaged one be checked on their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CRC = "episode_crc"  # the store's per-episode checksums (store.py), optional


@dataclass
class IndexCheck:
    usable: np.ndarray                       # bool per row
    committed: int                           # rows up to the last non-empty one
    damaged: list[tuple[int, str]] = field(default_factory=list)  # (row, why), row < committed

    @property
    def uncommitted(self) -> int:
        return len(self.usable) - self.committed

    @property
    def clean(self) -> bool:
        return not self.damaged

    def unusable_rows(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.usable)]

    def first_problem(self) -> str:
        row, why = self.damaged[0]
        more = f" and {len(self.damaged) - 1} more" if len(self.damaged) > 1 else ""
        return f"index row {row} of {self.committed} is damaged ({why}){more}"


def _row_problem(row, i: int, obs_end: int, step_end: int, obs_rows: int,
                 step_rows: int) -> str | None:
    """Why row i is not the next complete episode after (obs_end, step_end), or None."""
    o0, s0, n = int(row["obs_start"]), int(row["step_start"]), int(row["length"])
    if n <= 0:
        return f"length {n}"
    if s0 != step_end:
        return f"step_start {s0}, expected {step_end}"
    if o0 != obs_end:
        return f"obs_start {o0}, expected {obs_end}"
    if o0 + n + 1 > obs_rows or s0 + n > step_rows:
        return f"length {n} runs past the data ({step_rows - s0} steps left)"
    return None


def _plausible(row, i: int, obs_end: int, step_end: int, obs_rows: int, step_rows: int) -> bool:
    """Whether a row after a damaged one describes an episode on its own terms."""
    o0, s0, n = int(row["obs_start"]), int(row["step_start"]), int(row["length"])
    return (n > 0 and o0 == s0 + i and s0 >= step_end and o0 >= obs_end
            and o0 + n + 1 <= obs_rows and s0 + n <= step_rows)


def check_index(index: np.ndarray, obs_rows: int, step_rows: int,
                unreadable: np.ndarray | None = None) -> IndexCheck:
    """Classify every index row (see the module docstring). `unreadable` marks rows whose
    index chunk failed its checksum: they are damaged whatever they read as."""
    n_rows = len(index)
    unreadable = np.zeros(n_rows, bool) if unreadable is None else unreadable
    empty = np.zeros(n_rows, bool)
    if n_rows:
        empty = (index["length"] == 0) & (index["obs_start"] == 0) & \
            (index["step_start"] == 0) & (index["seed"] == 0) & (index["return"] == 0)
        empty &= ~unreadable
    nonempty = np.flatnonzero(~empty)
    committed = int(nonempty[-1]) + 1 if len(nonempty) else 0
    usable = np.zeros(n_rows, bool)
    damaged: list[tuple[int, str]] = []
    obs_end = step_end = 0
    for i in range(committed):
        row = index[i]
        if unreadable[i]:
            damaged.append((i, "its index chunk fails its checksum"))
            continue
        problem = _row_problem(row, i, obs_end, step_end, obs_rows, step_rows)
        if problem is not None and damaged and _plausible(row, i, obs_end, step_end,
                                                         obs_rows, step_rows):
            problem = None  # after a damaged row the starts cannot match; judge it alone
        if problem is not None:
            damaged.append((i, problem))
            continue
        usable[i] = True
        n = int(row["length"])
        obs_end, step_end = int(row["obs_start"]) + n + 1, int(row["step_start"]) + n
    return IndexCheck(usable, committed, damaged)


def read_index(dset) -> tuple[np.ndarray, np.ndarray]:
    """The whole index and a mask of rows whose chunk could not be read (checksum)."""
    try:
        return dset[()], np.zeros(dset.shape[0], bool)
    except OSError:
        pass
    n = dset.shape[0]
    step = dset.chunks[0] if dset.chunks else n
    index = np.zeros(n, dset.dtype)
    bad = np.zeros(n, bool)
    for start in range(0, n, step):
        try:
            index[start:start + step] = dset[start:start + step]
        except OSError:
            bad[start:start + step] = True
    return index, bad


def is_float(dtype) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


def nonfinite_rows(block: np.ndarray) -> np.ndarray:
    """Bool per row: does the row hold NaN or +-inf anywhere?"""
    bad = ~np.isfinite(block)
    return bad.reshape(len(block), -1).any(axis=1) if block.ndim > 1 else bad


def nonfinite_fields(episode) -> list[str]:
    """Which float arrays of an episode hold NaN or +-inf: "reward", "action", "obs/<key>".

    Empty for a clean episode. Integer and image arrays cannot hold non-finite values."""
    arrays = {f"obs/{k}": v for k, v in episode.obs.items()}
    arrays.update({"action": episode.action, "reward": episode.reward})
    return [name for name, a in arrays.items()
            if a is not None and is_float(np.asarray(a).dtype)
            and not np.isfinite(np.asarray(a)).all()]


@dataclass
class ColumnScan:
    unreadable: list[tuple[int, int]] = field(default_factory=list)  # [start, stop) rows
    nonfinite: np.ndarray | None = None      # row numbers with NaN/inf (float columns)


def scan_column(dset, rows: int, check_finite: bool, read: bool = True,
                block_chunks: int = 64) -> ColumnScan:
    """Read rows [0, rows) of a column chunk by chunk-aligned blocks.

    A block that fails to read (a checksum or filter failure) is re-read chunk by chunk so
    that only the damaged chunks are reported. With read=False only finite-ness of float
    columns is wanted, and non-float columns are skipped without reading."""
    scan = ColumnScan(nonfinite=np.zeros(0, np.int64))
    want_finite = check_finite and is_float(dset.dtype)
    if not read and not want_finite:
        return scan
    chunk = dset.chunks[0] if dset.chunks else max(1, rows)
    step = chunk * block_chunks
    found = []
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        for lo, hi, block in _read_blocks(dset, start, stop, chunk, scan.unreadable):
            if want_finite:
                found.append(lo + np.flatnonzero(nonfinite_rows(block)))
    if found:
        scan.nonfinite = np.concatenate(found)
    return scan


def _read_blocks(dset, start: int, stop: int, chunk: int, unreadable: list):
    try:
        yield start, stop, dset[start:stop]
        return
    except OSError:
        pass
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        try:
            yield lo, hi, dset[lo:hi]
        except OSError:
            if unreadable and unreadable[-1][1] == lo:
                unreadable[-1] = (unreadable[-1][0], hi)
            else:
                unreadable.append((lo, hi))


def episodes_touching(starts: np.ndarray, stops: np.ndarray, ranges) -> set[int]:
    """Positions of episodes [starts[i], stops[i]) overlapping any [lo, hi) in `ranges`."""
    hit: set[int] = set()
    for lo, hi in ranges:
        hit.update(int(i) for i in np.flatnonzero((starts < hi) & (stops > lo)))
    return hit


def episodes_of_rows(starts: np.ndarray, stops: np.ndarray, rows: np.ndarray) -> set[int]:
    """Positions of episodes [starts[i], stops[i]) containing any of the sorted `rows`."""
    if not len(rows) or not len(starts):
        return set()
    pos = np.searchsorted(starts, rows, side="right") - 1
    ok = (pos >= 0) & (rows < stops[np.clip(pos, 0, None)])
    return {int(p) for p in np.unique(pos[ok])}


def past_end(dset, file_size: int) -> str | None:
    """How a column's last chunk lies beyond the end of the file, or None if it does not.

    The chunk holding the last row is among the last written, so a file cut short (a
    partial copy, a full disk) loses it first; HDF5 itself only notices on reading it."""
    rows = dset.shape[0]
    if not rows or not dset.chunks:
        return None
    coord = ((rows - 1) // dset.chunks[0] * dset.chunks[0],) + (0,) * (dset.ndim - 1)
    try:
        info = dset.id.get_chunk_info_by_coord(coord)
    except (OSError, RuntimeError, ValueError):
        return f"the chunk index of {dset.name} is unreadable"
    if info.byte_offset is None or info.size is None:
        return None  # not written (yet): nothing to lose
    end = int(info.byte_offset) + int(info.size)
    if end > file_size:
        return f"{dset.name} ends at byte {end} but the file has only {file_size}"
    return None


def read_tolerant(dset, rows: int) -> np.ndarray:
    """Rows [0, rows) of a column as float64, NaN where a chunk fails to read."""
    out = np.full(rows, np.nan)
    chunk = dset.chunks[0] if dset.chunks else max(1, rows)
    for lo, hi, block in _read_blocks(dset, 0, rows, chunk, []):
        out[lo:hi] = block
    return out


def check_returns(check: IndexCheck, index: np.ndarray, reward) -> IndexCheck:
    """Mark usable rows whose stored return is not the sum of their stored rewards as
    damaged: a length or start that is wrong yet still fits the data (the last row's length
    halved reads as a complete episode followed by an unfinished one). Rows whose rewards
    cannot be read are left to the chunk scan. Reads the whole reward column."""
    rows = np.flatnonzero(check.usable)
    if not len(rows):
        return check
    starts = index["step_start"][rows].astype(np.int64)
    ends = starts + index["length"][rows].astype(np.int64)
    rewards = read_tolerant(reward, min(int(ends.max()), reward.shape[0]))
    for row, s0, s1 in zip(rows, starts, ends):
        total = float(np.sum(rewards[s0:s1]))
        stored = float(index["return"][row])
        # float32 rewards summed in float64 on both sides; the writer may have summed them
        # before rounding to float32, hence the tolerance
        if np.isfinite(total) and not np.isclose(stored, total, rtol=1e-6,
                                                 atol=1e-6 * max(1, s1 - s0)):
            check.usable[row] = False
            check.damaged.append((int(row), f"return {stored:.6g} is not the sum of its "
                                            f"{s1 - s0} rewards ({total:.6g})"))
    check.damaged.sort()
    return check


def rows_past_end(columns: dict, index: np.ndarray, check: IndexCheck) -> int:
    """Rows no index row commits: data rows past the last usable episode, in every column
    ({name: dataset}, obs/ columns by their names), plus uncommitted index rows."""
    last = np.flatnonzero(check.usable)
    obs_end = step_end = 0
    if len(last):
        row = index[last[-1]]
        obs_end = int(row["obs_start"] + row["length"] + 1)
        step_end = int(row["step_start"] + row["length"])
    extra = check.uncommitted
    for name, dset in columns.items():
        if name == CRC:  # one row per episode, like the index
            extra += max(0, dset.shape[0] - check.committed)
        elif name != "episodes":
            extra += max(0, dset.shape[0] - (obs_end if name.startswith("obs/") else step_end))
    return extra
