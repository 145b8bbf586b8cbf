"""EpisodeWriter: appends finished episodes to a store, creating or recovering it as needed.

The layout, the commit protocol and what is trimmed after a crash: see store.py.
"""
from __future__ import annotations

import datetime
import json
import os
import zlib
from pathlib import Path

import numpy as np

from wmtool import __version__, spaces
from wmtool.atomic import written_whole
from wmtool.data.episode import Episode
from wmtool.data.hdf5io import discard_and_close, write_failure
from wmtool.data.integrity import check_index, check_returns, past_end, read_index
from wmtool.data.store import (
    CRC,
    FORMAT,
    FORMAT_VERSION,
    INDEX_DTYPE,
    STEP_COLUMNS,
    WriterLock,
    _busy,
    _check_format,
    _columns,
    _data_rows,
    _h5,
    _open_h5,
    committed_ends,
    damaged_index_error,
    next_seed,
    trim_to,
)
from wmtool.data.superblock import clear_writer_mark, writer_mark_set
from wmtool.errors import UsageError, WmtoolError

VECTOR_CHUNK_BYTES = 1 << 16
# Free space a commit leaves untouched for HDF5's own metadata and the final close.
SPACE_MARGIN = 256 << 10


class EpisodeWriter:
    """Appends finished episodes to a store file, creating or recovering it as needed."""

    def __init__(self, path: str | Path, env_id: str, obs_space: dict, act_space,
                 policy: str = "", image_chunk: int = 16, has_action: bool = True):
        self.path = Path(path)
        self.recovered_rows = 0
        self._f = None
        self._dsets: dict = {}  # kept open: see _open_columns
        self._broken: WmtoolError | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            self._lock = WriterLock(self.path)
            try:
                crashed = self._recover_if_crashed()
                # locking=False: WriterLock is the writer's lock; HDF5's own flock would make
                # a reader that happens to be opening the file look like a second writer.
                self._f = _open_h5(self.path, "a", libver="latest", locking=False)
                _check_format(self._f, self.path)
                self._check_matches(env_id, obs_space, act_space)
                self._open_columns()
                self._trim_uncommitted(crashed)
                self._quick_check()
                self._add_policy(policy)
                self._f.swmr_mode = True
            except BaseException as exc:
                self._fail_open(exc)
        else:
            self._create_file()
            try:
                self._create(env_id, obs_space, act_space, policy, image_chunk, has_action)
                self._open_columns()
                self._f.swmr_mode = True
            except BaseException as exc:
                self._fail_open(exc, created=True)
        self.num_episodes = self._dsets["episodes"].shape[0]

    # -- opening -------------------------------------------------------------------------
    def _create_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._f = _h5().File(self.path, "w-", libver="latest", locking=False)
        except (FileExistsError, OSError) as exc:
            if not os.access(self.path.parent, os.W_OK):  # not "busy": unwritable (EROFS too)
                raise WmtoolError(f"cannot write {self.path}: its directory is not writable",
                                  "choose a directory you can write to") from None
            error = write_failure(self.path, exc) if self.path.exists() else None
            if error is not None:
                self.path.unlink(missing_ok=True)  # we created it; it holds nothing
                raise error from None
            raise _busy(self.path) from None
        self._lock = WriterLock(self.path)

    def _open_columns(self) -> None:
        """Open every column once for the writer's life. Each `f[name]` is a new handle, and
        closing the last handle of a dataset writes its cached chunks: on a full disk that
        happened inside h5py's garbage collection, where the error cannot be caught."""
        self.obs_keys = list(spaces.loads_obs(self._f.attrs["obs_space"]))
        obs_cols, step_cols = _columns(self._f, self.obs_keys)
        self._dsets = {name: self._f[name] for name in (*obs_cols, *step_cols, "episodes")}
        if CRC in self._f:
            self._dsets[CRC] = self._f[CRC]
            self._crc_columns = json.loads(self._f[CRC].attrs["columns"])

    def _fail_open(self, exc: BaseException, created: bool = False) -> None:
        """Give up opening: close (safely after a failed write) and raise a one-line error."""
        error = write_failure(self.path, exc)
        self._abort(broken=error is not None)
        if created:
            self.path.unlink(missing_ok=True)  # a new file that never held an episode
        if error is not None:
            raise error from None
        raise exc

    def _abort(self, broken: bool = False) -> None:
        """Close the file and drop the lock; `broken`: a write failed, HDF5 must not flush."""
        if self._f is not None:
            if broken:
                discard_and_close(self._f, self._dsets.values())
            else:
                self._f.close()
            self._f = None
            self._dsets = {}
        self._lock.release()

    def _recover_if_crashed(self) -> bool:
        """Clear a dead writer's mark; True if there was one (the last writer stopped
        uncleanly, so rows of an unfinished commit may follow its last episode)."""
        try:
            if writer_mark_set(self._lock.file):
                # We hold the writer lock, so whoever left the mark is dead: safe to clear.
                clear_writer_mark(self._lock.file)
                return True
            return False
        except ValueError:
            raise WmtoolError(f"{self.path} is not an HDF5 file",
                              "choose another --out path; nothing was written") from None

    def _create(self, env_id, obs_space, act_space, policy, image_chunk, has_action) -> None:
        f = self._f
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION,
                        "wmtool_version": __version__, "env_id": env_id,
                        "obs_space": spaces.dumps(obs_space), "policy": policy,
                        "created": datetime.datetime.now(datetime.timezone.utc).isoformat()})
        if has_action:
            f.attrs["act_space"] = spaces.dumps(act_space)
        for key, space in obs_space.items():
            self._column(f"obs/{key}", space.shape, space.dtype, image_chunk, space.is_image)
        if has_action:
            self._column("action", act_space.shape, act_space.dtype, image_chunk, False)
        self._column("reward", (), "float32", image_chunk, False)
        self._column("terminated", (), "bool", image_chunk, False)
        self._column("truncated", (), "bool", image_chunk, False)
        f.create_dataset("episodes", (0,), maxshape=(None,), dtype=INDEX_DTYPE, chunks=(256,),
                         fletcher32=True)
        obs_cols, step_cols = _columns(f, list(obs_space))
        crc = f.create_dataset(CRC, (0, len(obs_cols) + len(step_cols)),
                               maxshape=(None, len(obs_cols) + len(step_cols)), dtype="uint32",
                               chunks=(256, len(obs_cols) + len(step_cols)), fletcher32=True)
        crc.attrs["columns"] = json.dumps([*obs_cols, *step_cols])

    def _column(self, name, shape, dtype, image_chunk, is_image) -> None:
        shape = tuple(shape)
        if is_image:  # images compress ~9x with gzip-1 at ~21k frames/s here
            chunk, extra = image_chunk, {"compression": "gzip", "compression_opts": 1}
        else:
            row = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            chunk, extra = max(1, VECTOR_CHUNK_BYTES // row), {}
        # fletcher32: a checksum per chunk (after compression), so bit rot fails loudly
        self._f.create_dataset(name, (0, *shape), maxshape=(None, *shape), dtype=dtype,
                               chunks=(chunk, *shape), fletcher32=True, **extra)

    def _check_matches(self, env_id, obs_space, act_space) -> None:
        attrs = self._f.attrs
        if attrs.get("env_id") != env_id:
            raise WmtoolError(f"{self.path} holds episodes of {attrs.get('env_id')}, not {env_id}",
                              "append only the same env, or choose another --out file")
        theirs = spaces.loads_obs(attrs["obs_space"])
        if theirs != dict(obs_space):
            raise WmtoolError(f"{self.path} has observation space {spaces.dumps(theirs)}, "
                              f"the env has {spaces.dumps(obs_space)}",
                              "use the same --obs/size settings, or another --out file")
        if "act_space" in attrs and spaces.loads_act(attrs["act_space"]) != act_space:
            raise WmtoolError(f"{self.path} has action space {attrs['act_space']}, "
                              f"the env has {spaces.dumps(act_space)}",
                              "use the same env settings, or another --out file")

    def _add_policy(self, policy: str) -> None:
        """`policy` lists every policy that wrote episodes here, comma-separated (set before
        SWMR starts: attributes cannot change under it)."""
        known = [p for p in str(self._f.attrs.get("policy", "")).split(",") if p]
        if policy and policy not in known:
            self._f.attrs["policy"] = ",".join([*known, policy])

    def _trim_uncommitted(self, crashed: bool) -> None:
        """Refuse a damaged index; after a crash, drop what no index row commits.

        Only rows past the last episode go: all-zero index rows of a commit cut short, and
        data rows no index row covers. A clean store never has such rows (a failed commit
        is rolled back, a failed write leaves the writer mark), so there they mean damage:
        refused, and left to `wmtool data repair`."""
        index, unreadable = read_index(self._dsets["episodes"])
        check = check_index(index, *_data_rows(self._dsets, self.obs_keys), unreadable)
        if not check.clean:
            raise damaged_index_error(self.path, check)
        n = check.committed
        obs_end, step_end = committed_ends(index, n)
        obs_cols, step_cols = _columns(self._dsets, self.obs_keys)
        extra = len(index) - n + sum(self._dsets[c].shape[0] - obs_end for c in obs_cols) + \
            sum(self._dsets[c].shape[0] - step_end for c in step_cols) + \
            (self._dsets[CRC].shape[0] - n if CRC in self._dsets else 0)
        if not extra:
            return
        # the rows past the end are an unfinished commit only if the last episode is whole
        check = check_returns(check, index, self._dsets["reward"])
        if not check.clean:
            raise damaged_index_error(self.path, check)
        if not crashed:
            raise WmtoolError(f"{self.path} has {extra} rows after its last episode, but no "
                              "writer crashed", f"run `wmtool data verify {self.path}`, then "
                              f"`wmtool data repair {self.path}` to remove them")
        self.recovered_rows = trim_to(self._dsets, self.obs_keys, n, obs_end, step_end)
        self._f.flush()

    def _quick_check(self) -> None:
        """Refuse to append to a store whose checksums fail where appending reads.

        Checked on every open: the whole index (read above, so its chunks' checksums) and
        the last chunk of every column, which the next commit rewrites. Cheap whatever the
        file's size; chunks further back are `wmtool data verify`'s job. A file cut short
        (its last chunks past its end) is refused too: appending would build on them."""
        size = self.path.stat().st_size
        for dset in self._dsets.values():
            cut = past_end(dset, size)
            if cut is not None:
                raise WmtoolError(f"{self.path} is truncated ({cut}); appending is refused",
                                  "copy it again from its source, or write to another file")
        for name, dset in self._dsets.items():
            rows = dset.shape[0]
            if rows and dset.chunks:
                try:
                    dset[(rows - 1) // dset.chunks[0] * dset.chunks[0]:rows]
                except OSError:
                    raise WmtoolError(f"{self.path}: /{name} fails its checksum at its end; "
                                      "appending is refused",
                                      f"run `wmtool data verify {self.path}` to see the "
                                      "damaged episodes") from None

    # -- writing -------------------------------------------------------------------------
    def add(self, episode: Episode) -> int:
        """Append one finished episode; it is durable when this returns. Returns its index."""
        return self.add_many([episode])[0]

    def add_many(self, episodes: list[Episode]) -> list[int]:
        """Append episodes with one commit: two flushes in all, however many episodes.

        Short episodes (CartPole: ~20 steps) spent most of their time in per-episode flushes.
        """
        if self._broken is not None:
            raise self._broken
        f = self._dsets
        has_action = "action" in f
        rows = []
        obs_start = f[f"obs/{self.obs_keys[0]}"].shape[0]
        step_start = f["reward"].shape[0]
        for ep in episodes:
            n = ep.length
            if n <= 0:
                raise ValueError("cannot store an episode with no steps")
            if any(len(ep.obs[k]) != n + 1 for k in self.obs_keys):
                raise ValueError(f"observations need {n + 1} rows for {n} steps")
            if has_action and (ep.action is None or len(ep.action) != n):
                raise ValueError(f"this store has actions: the episode needs {n} of them")
            rows.append((obs_start, step_start, n, ep.ret, ep.seed))
            obs_start, step_start = obs_start + n + 1, step_start + n
        columns = {f"obs/{k}": [ep.obs[k] for ep in episodes] for k in self.obs_keys}
        for name in STEP_COLUMNS + (("action",) if has_action else ()):
            columns[name] = [getattr(ep, name) for ep in episodes]
        if CRC in f:
            columns[CRC] = [self._checksums(columns, i) for i in range(len(episodes))]
        self._check_space(columns)
        sizes = {name: dset.shape[0] for name, dset in f.items()}
        try:
            self._commit(columns, rows)
        except BaseException as exc:
            self._fail_commit(exc, sizes)
        first = self.num_episodes
        self.num_episodes += len(rows)
        return list(range(first, self.num_episodes))

    def _checksums(self, columns: dict, i: int) -> np.ndarray:
        """Episode i's row of /episode_crc: CRC-32 of its rows per column, as stored."""
        return np.array([[episode_crc(columns[name][i], self._dsets[name].dtype)
                          for name in self._crc_columns]], np.uint32)

    def _commit(self, columns: dict, rows: list) -> None:
        f = self._dsets
        for name, parts in columns.items():
            data = parts[0] if len(parts) == 1 else np.concatenate(parts)
            dset = f[name]
            start = dset.shape[0]
            dset.resize(start + len(data), axis=0)
            dset[start:] = data
        self._f.flush()  # data first ...
        index = f["episodes"]
        first = self.num_episodes
        index.resize(first + len(rows), axis=0)
        index[first:] = np.array(rows, dtype=INDEX_DTYPE)
        self._f.flush()  # ... then the index rows that commit them

    def _fail_commit(self, exc: BaseException, sizes: dict) -> None:
        """A commit failed. A failed write (disk full) leaves HDF5 unable to write this file
        safely again: give it up (hdf5io.discard_and_close), keep the error for every later
        call. Anything else: cut the columns back to where the commit started, so the
        store stays clean (no rows past its last episode), and re-raise."""
        error = write_failure(self.path, exc)
        if error is None:
            try:
                for name, size in sizes.items():
                    self._dsets[name].resize(size, axis=0)
                self._f.flush()
            except (OSError, RuntimeError) as again:
                error = write_failure(self.path, again)
                if error is None:
                    raise
            else:
                raise exc
        self._broken = error
        self._abort(broken=True)
        raise error from None

    def _check_space(self, columns: dict) -> None:
        """Refuse a commit the disk cannot hold, before writing a byte of it.

        Once a write fails HDF5 must abandon the file (see _fail_commit); checking first
        keeps the usual case, a disk filling up, clean: the file closes normally. Needed:
        the raw bytes (compression only shrinks them), a rewrite of every column's last
        chunk, and a margin for metadata. Root may use the blocks reserved for root."""
        raw = sum(part.nbytes for parts in columns.values() for part in parts)
        chunks = sum(np.dtype(d.dtype).itemsize * int(np.prod(d.chunks))
                     for d in self._dsets.values() if d.chunks)
        need = raw + chunks + SPACE_MARGIN
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return
        free = st.f_frsize * (st.f_bfree if os.geteuid() == 0 else st.f_bavail)
        if free < need:
            raise WmtoolError(f"{self.path}: disk full ({free / 2**20:.1f} MiB free, the next "
                              f"episodes need {need / 2**20:.1f} MiB)",
                              f"free space or write elsewhere; the {self.num_episodes} "
                              "episodes in the file are intact")

    def close(self) -> None:
        """Close the file; raises the one-line error if its final flush fails (disk full)."""
        if self._f is None:
            return
        try:
            self._f.flush()
        except (OSError, RuntimeError) as exc:
            error = write_failure(self.path, exc)
            self._abort(broken=True)
            if error is not None:
                raise error from None
            raise
        self._abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def next_seed(self) -> int:
        return next_seed(self._f["episodes"][()])


def episode_crc(rows, dtype) -> int:
    """CRC-32 of one episode's rows of a column, in the column's stored dtype."""
    return zlib.crc32(np.ascontiguousarray(rows, dtype=dtype).tobytes())


def refuse_existing(out: Path) -> Path:
    """OUT, if no file is there yet: commands that make a new store never append."""
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out} already exists", "choose a new --out file; nothing was written")
    return out


def new_store(out: Path):
    """A path to write a new store to, renamed to OUT when the block ends without an error
    (atomic.written_whole). An existing OUT is refused (nothing is ever appended to it):
    `data import-minari` once appended duplicates to an existing file and left partial ones
    behind."""
    return written_whole(refuse_existing(out))
