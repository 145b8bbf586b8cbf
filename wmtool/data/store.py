"""The HDF5 episode store: one file, many episodes, safe against kill -9. This module holds
the layout and the reader; writer.py appends, integrity.py and maintenance.py check and fix.

Layout (plain h5py can read it; see README "Data format"):
    /            attrs: format="wmtool-episodes", format_version, wmtool_version, env_id,
                        obs_space, act_space (JSON), created, policy (every policy
                        that wrote episodes, comma-separated)
    /obs/<key>   (sum of T_i+1, ...)  every episode's observations, back to back
    /action      (sum of T_i, ...)    absent for observation-only (video) datasets
    /reward      (sum of T_i,) float32
    /terminated  (sum of T_i,) bool   true terminal: bootstrapping stops
    /truncated   (sum of T_i,) bool   time limit or cut: never learned as a terminal
    /episodes    (N,) compound: obs_start, step_start, length, return, seed
/episode_crc (N, C) uint32        CRC-32 of each episode's rows per column (the columns
                                  named in its attrs["columns"]); stores written after 0.2.0.
                                  A chunk checksum covers many episodes; this one lets
                                  `wmtool data salvage` keep the intact ones of a bad chunk
Episode i is obs[obs_start : obs_start+length+1] and action[step_start : step_start+length].

Why this shape: the file is written in HDF5's SWMR mode, which keeps it consistent on disk
at every flush (plain h5py with per-episode flushes lost finished episodes in 4 of 8 kill -9
trials here; SWMR kept all of them in 8 of 8). SWMR cannot create new groups or datasets
once started, so episodes are appended rows, not groups. A row in /episodes is the commit:
data rows are written and flushed first, the index row last. After a crash, the next writer
clears the dead writer's mark (superblock.py) and trims rows that no index entry covers:
data rows past the last episode and all-zero index rows of a commit cut short. It trims only
after an unclean stop (the mark was set); an index row that is damaged (integrity.py) makes
readers and writers refuse the file with one line instead, never a silent truncation.

New stores checksum every chunk (HDF5's fletcher32 filter), so a flipped bit fails the read
of its chunk instead of returning wrong numbers; stores written before that stay readable
and appendable. Tools for damaged or crashed files (wmtool/data/maintenance.py):
    wmtool data verify FILE   read every chunk, list damaged and non-finite episodes
    wmtool data repair FILE   clear a dead writer's mark (so plain h5py opens the file
                              again), rebuild a damaged index row from its neighbours when
                              that is unambiguous, trim rows of an unfinished episode
A store whose writer crashed keeps the writer mark until the next writer or `data repair`:
until then plain h5py opens it only as h5py.File(path, "r", libver="latest", swmr=True).
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import numpy as np

from wmtool import spaces
from wmtool.data.episode import Episode
from wmtool.data.hdf5io import open_swmr_read
from wmtool.data.integrity import (
    CRC,
    IndexCheck,
    check_index,
    nonfinite_fields,
    past_end,
    read_index,
    rows_past_end,
)
from wmtool.data.superblock import writer_mark_set
from wmtool.errors import WmtoolError

# nonfinite_fields lives in integrity.py; callers may import it from here.
__all__ = ["EpisodeReader", "WriterLock", "nonfinite_fields"]  # the writer: writer.py

FORMAT = "wmtool-episodes"
FORMAT_VERSION = 1
INDEX_DTYPE = np.dtype([("obs_start", "<i8"), ("step_start", "<i8"), ("length", "<i8"),
                        ("return", "<f8"), ("seed", "<i8")])
STEP_COLUMNS = ("reward", "terminated", "truncated")


def _h5():
    import h5py

    return h5py


def _open_h5(path: Path, mode: str, swmr_read: bool = False, **kwargs):
    h5py = _h5()
    try:
        return open_swmr_read(path) if swmr_read else h5py.File(path, mode, **kwargs)
    except FileNotFoundError:
        raise WmtoolError(f"{path}: no such file", "check the path") from None
    except OSError as exc:
        text = str(exc)
        if "unable to lock file" in text or "already open for write" in text:
            raise _busy(path) from None
        if not h5py.is_hdf5(path):
            raise WmtoolError(f"{path} is not an HDF5 file",
                              "pass a .h5 file written by `wmtool collect`") from None
        raise WmtoolError(f"{path} is corrupt or truncated ({text.splitlines()[0]})",
                          "it cannot be read; collect into a new file") from None


def damaged_index_error(path: Path, check: IndexCheck) -> WmtoolError:
    return WmtoolError(f"{path}: {check.first_problem()}",
                       f"`wmtool data repair {path}` rebuilds it (with --dry-run: what is "
                       "affected, changing nothing)")


def _columns(f, obs_keys) -> tuple[list[str], list[str]]:
    """(observation columns, step columns) present in an open store."""
    steps = [c for c in (*STEP_COLUMNS, "action") if c in f]
    return [f"obs/{k}" for k in obs_keys], steps


def _data_rows(f, obs_keys) -> tuple[int, int]:
    """(observation rows, step rows) every column holds at least."""
    obs_cols, step_cols = _columns(f, obs_keys)
    return min(f[c].shape[0] for c in obs_cols), min(f[c].shape[0] for c in step_cols)


def committed_ends(index: np.ndarray, n: int) -> tuple[int, int]:
    """(observation rows, step rows) the first n (usable) index rows cover."""
    if n == 0:
        return 0, 0
    last = index[n - 1]
    return int(last["obs_start"] + last["length"] + 1), int(last["step_start"] + last["length"])


def trim_to(f, obs_keys, n_index: int, obs_end: int, step_end: int) -> int:
    """Cut every column to the committed rows and the index to n_index rows; rows removed."""
    obs_cols, step_cols = _columns(f, obs_keys)
    removed = 0
    per_episode = ["episodes", *([CRC] if CRC in f else [])]
    for names, end in ((obs_cols, obs_end), (step_cols, step_end), (per_episode, n_index)):
        for name in names:
            removed += f[name].shape[0] - end
            f[name].resize(end, axis=0)
    return removed


def _check_format(f, path) -> None:
    if f.attrs.get("format") != FORMAT:
        raise WmtoolError(f"{path} is an HDF5 file but not a wmtool episode store "
                          "(no format='wmtool-episodes' attribute)",
                          "pass a file written by `wmtool collect`")
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        raise WmtoolError(f"{path} has store format {version}; this wmtool reads up to "
                          f"{FORMAT_VERSION}", "upgrade wmtool")
    missing = [k for k in ("episodes", "obs", *STEP_COLUMNS) if k not in f]
    if missing:
        raise WmtoolError(f"{path} is missing {', '.join('/' + m for m in missing)}",
                          "the file is damaged or was not written by wmtool")


class EpisodeReader:
    """Reads finished episodes; safe while a writer is appending (SWMR read).

    A damaged index row makes it refuse the file (strict, the default). With strict=False
    (`wmtool data info`, `data verify`) it serves every usable episode instead and lists the
    rest in `check`; `rows` maps its episode positions to index rows."""

    def __init__(self, path: str | Path, strict: bool = True):
        self.path = Path(path)
        self.strict = strict
        if not self.path.exists():
            raise WmtoolError(f"{self.path}: no such file", "check the path")
        # SWMR read only while a writer holds the file (or died holding it): a SWMR reader
        # retries failed metadata reads, which hung for minutes on a truncated crashed store,
        # so its retries are bounded (hdf5io.py).
        try:
            self._swmr = writer_mark_set(self.path)
        except ValueError:
            raise WmtoolError(f"{self.path} is not an HDF5 file",
                              "pass a .h5 file written by `wmtool collect`") from None
        # locking=False matches the writer's flags (HDF5 refuses mixed flags in one process).
        self._f = _open_h5(self.path, "r", swmr_read=self._swmr, locking=False)
        try:
            _check_format(self._f, self.path)
            attrs = self._f.attrs
            self.env_id = str(attrs.get("env_id", ""))
            self.policy = str(attrs.get("policy", ""))
            self.obs_space = spaces.loads_obs(attrs["obs_space"])
            self.act_space = spaces.loads_act(attrs["act_space"]) if "act_space" in attrs else None
            self.refresh()
        except Exception as exc:
            self._f.close()
            if isinstance(exc, (OSError, RuntimeError)):  # metadata unreadable: truncated?
                raise WmtoolError(f"{self.path} is corrupt or truncated "
                                  f"({str(exc).splitlines()[0] if str(exc) else exc!r})",
                                  f"run `wmtool data verify {self.path}`; a partial copy "
                                  "needs copying again") from None
            raise

    def refresh(self) -> None:
        """Re-read the index (a writer may have committed more episodes)."""
        for _ in range(3 if self._swmr else 1):
            if self._swmr:
                for name in ("episodes", *_columns(self._f, self.obs_space)[1],
                             *(f"obs/{k}" for k in self.obs_space)):
                    self._f[name].refresh()
            cut = self._past_end()
            index, unreadable = read_index(self._f["episodes"])
            obs_rows, step_rows = _data_rows(self._f, self.obs_space)
            check = check_index(index, obs_rows, step_rows, unreadable)
            if check.clean and cut is None:
                break
            time.sleep(0.05)  # a live writer may be mid-write: look again before judging
        if cut is not None:
            raise WmtoolError(f"{self.path} is truncated ({cut})",
                              "it was cut short (a partial copy or a full disk): copy it "
                              "again from its source; episodes past the cut are lost")
        if self.strict and not check.clean:
            raise damaged_index_error(self.path, check)
        if self.strict and not self._swmr and check.clean:
            self._refuse_rows_past_end(index, check)
        self.check = check
        self.rows = np.flatnonzero(check.usable)
        self.index = index[self.rows]

    def _refuse_rows_past_end(self, index: np.ndarray, check: IndexCheck) -> None:
        """Rows after the last episode of a store no writer holds are damage (a last index
        row whose length shrank leaves its steps there), not a crash's unfinished commit:
        reading on would train on part of an episode, so readers refuse as writers do."""
        columns = {name: self._f[name] for name in self.column_names()}
        extra = rows_past_end(columns, index, check)
        if extra:
            raise WmtoolError(
                f"{self.path} has {extra} rows after its last episode (index row "
                f"{check.committed - 1}), but no writer crashed: its last index row may be "
                "damaged", f"run `wmtool data repair {self.path}` (it rebuilds that row or "
                "says how to drop the rows)")

    def _past_end(self) -> str | None:
        size = self.path.stat().st_size
        for name in self.column_names():
            cut = past_end(self._f[name], size)
            if cut is not None:
                return cut
        return None

    @property
    def has_action(self) -> bool:
        return "action" in self._f

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_steps(self) -> int:
        return int(self.index["length"].sum())

    def episode(self, i: int) -> Episode:
        row = self.index[i]
        o0, s0, n = int(row["obs_start"]), int(row["step_start"]), int(row["length"])
        for _ in range(3 if self._swmr else 1):
            try:
                obs, steps = self._read_rows(o0, s0, n)
                break
            except OSError as exc:  # a chunk failed its checksum or lies past a truncated end
                error = exc
                time.sleep(0.05)  # a live writer may be rewriting that chunk: look again
        else:
            name = getattr(self, "_reading", "")
            raise WmtoolError(
                f"{self.path}: episode {int(self.rows[i])} cannot be read: /{name} is damaged "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__})",
                f"run `wmtool data verify {self.path}` to list the damaged episodes; "
                "re-collect them or restore the file from a copy") from None
        return Episode(obs=obs, action=steps.get("action"), reward=steps["reward"],
                       terminated=steps["terminated"], truncated=steps["truncated"],
                       seed=int(row["seed"]))

    def _read_rows(self, o0: int, s0: int, n: int) -> tuple[dict, dict]:
        obs, steps = {}, {}
        for key in self.obs_space:
            self._reading = f"obs/{key}"
            obs[key] = self._f[self._reading][o0:o0 + n + 1]
        for name in (*STEP_COLUMNS, *(("action",) if self.has_action else ())):
            self._reading = name
            steps[name] = self._f[name][s0:s0 + n]
        return obs, steps

    def __iter__(self):
        return (self.episode(i) for i in range(len(self)))

    def info(self) -> dict:
        returns = self.index["return"]
        lengths = self.index["length"]
        stats = (lambda a: {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
                            "max": float(a.max())} if len(a) else None)
        return {
            "path": str(self.path), "env": self.env_id, "policy": self.policy,
            "format_version": int(self._f.attrs["format_version"]),
            "episodes": len(self), "steps": self.num_steps,
            "return": stats(returns), "length": stats(lengths.astype(np.float64)),
            "obs_space": {k: s.to_dict() for k, s in self.obs_space.items()},
            "act_space": self.act_space.to_dict() if self.act_space else None,
            "has_action": self.has_action,
            "size_bytes": self.path.stat().st_size,
            "checksums": self.checksummed,
            "writer_mark": self._swmr,
            "unusable_index_rows": self.check.unusable_rows(),
            "index_problems": [f"row {r}: {why}" for r, why in self.check.damaged],
        }

    @property
    def checksummed(self) -> bool:
        """Whether every column carries fletcher32 checksums (stores from before do not)."""
        return all(self._f[name].fletcher32 for name in self.column_names())

    def column_names(self) -> list[str]:
        obs_cols, step_cols = _columns(self._f, self.obs_space)
        return [*obs_cols, *step_cols, "episodes"]

    def dataset(self, name: str):
        return self._f[name]

    @property
    def file(self):
        """The open h5py file, read-only: for the maintenance tools (maintenance.py)."""
        return self._f

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _busy(path: Path) -> WmtoolError:
    return WmtoolError(f"{path} is being written by another process",
                       "wait for it to finish or write to another file")


class WriterLock:
    """One writer per store file, across processes and within one.

    A POSIX record lock on the file's first byte. HDF5 itself uses flock(), which does not
    interact with it on Linux, and readers take no record lock, so a reader never looks like
    a writer. A second writer must get this lock before it may clear a writer mark, so only
    a dead writer's mark is ever cleared. POSIX locks are per process (and are dropped when
    any descriptor of the file closes), hence the in-process registry, and the superblock
    helpers reuse `file` instead of opening their own descriptor.
    """

    _held: set[str] = set()

    def __init__(self, path: Path):
        self.key = os.path.realpath(path)
        if self.key in WriterLock._held:
            raise _busy(path)
        self.file = open(path, "r+b")
        try:
            fcntl.lockf(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError:
            self.file.close()
            raise _busy(path) from None
        WriterLock._held.add(self.key)

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()
            WriterLock._held.discard(self.key)


def next_seed(index: np.ndarray) -> int:
    """One past the largest reset seed the episodes record (0 for none): where new seeds
    start, so appending never replays the episode starts already stored."""
    return int(max(index["seed"], default=-1)) + 1


def describe_spaces(obs_space: dict, act_space) -> str:
    obs = ", ".join(f"{k} {list(s.shape)} {s.dtype}" for k, s in obs_space.items())
    act = f"discrete({act_space.n})" if act_space.discrete else f"box{list(act_space.shape)}"
    return f"obs: {obs}; action: {act}"
