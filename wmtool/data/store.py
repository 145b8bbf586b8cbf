"""The HDF5 episode store: one file, many episodes, safe against kill -9.

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
Episode i is obs[obs_start : obs_start+length+1] and action[step_start : step_start+length].

Why this shape: the file is written in HDF5's SWMR mode, which keeps it consistent on disk
at every flush (plain h5py with per-episode flushes lost finished episodes in 4 of 8 kill -9
trials here; SWMR kept all of them in 8 of 8). SWMR cannot create new groups or datasets
once started, so episodes are appended rows, not groups. A row in /episodes is the commit:
data rows are written and flushed first, the index row last. After a crash, the next writer
clears the dead writer's mark (superblock.py) and trims rows that no index entry covers.
"""
from __future__ import annotations

import datetime
import fcntl
import os
from pathlib import Path

import numpy as np

from wmtool import __version__, spaces
from wmtool.data.episode import Episode
from wmtool.data.superblock import clear_writer_mark, writer_mark_set
from wmtool.errors import WmtoolError

FORMAT = "wmtool-episodes"
FORMAT_VERSION = 1
INDEX_DTYPE = np.dtype([("obs_start", "<i8"), ("step_start", "<i8"), ("length", "<i8"),
                        ("return", "<f8"), ("seed", "<i8")])
STEP_COLUMNS = ("reward", "terminated", "truncated")
VECTOR_CHUNK_BYTES = 1 << 16


def _h5():
    import h5py

    return h5py


def valid_rows(index: np.ndarray, obs_rows: int, step_rows: int) -> int:
    """Number of leading index rows that describe complete, contiguous episodes."""
    obs_end = step_end = 0
    for i, row in enumerate(index):
        length = int(row["length"])
        if (length <= 0 or row["obs_start"] != obs_end or row["step_start"] != step_end
                or obs_end + length + 1 > obs_rows or step_end + length > step_rows):
            return i
        obs_end += length + 1
        step_end += length
    return len(index)


def _open_h5(path: Path, mode: str, **kwargs):
    h5py = _h5()
    try:
        return h5py.File(path, mode, **kwargs)
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
    """Reads finished episodes; safe while a writer is appending (SWMR read)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise WmtoolError(f"{self.path}: no such file", "check the path")
        # SWMR read only while a writer holds the file (or died holding it): a SWMR reader
        # retries failed metadata reads for a long time, which would hang on a corrupt file.
        try:
            self._swmr = writer_mark_set(self.path)
        except ValueError:
            raise WmtoolError(f"{self.path} is not an HDF5 file",
                              "pass a .h5 file written by `wmtool collect`") from None
        # locking=False matches the writer's flags (HDF5 refuses mixed flags in one process).
        self._f = _open_h5(self.path, "r", locking=False,
                           **({"libver": "latest", "swmr": True} if self._swmr else {}))
        try:
            _check_format(self._f, self.path)
            attrs = self._f.attrs
            self.env_id = str(attrs.get("env_id", ""))
            self.policy = str(attrs.get("policy", ""))
            self.obs_space = spaces.loads_obs(attrs["obs_space"])
            self.act_space = spaces.loads_act(attrs["act_space"]) if "act_space" in attrs else None
            self.refresh()
        except Exception:
            self._f.close()
            raise

    def refresh(self) -> None:
        """Re-read the index (a writer may have committed more episodes)."""
        if self._swmr:
            for name in ("episodes", "reward", *(f"obs/{k}" for k in self.obs_space)):
                self._f[name].refresh()
        index = self._f["episodes"][()]
        obs_rows = min(self._f[f"obs/{k}"].shape[0] for k in self.obs_space)
        self.index = index[:valid_rows(index, obs_rows, self._f["reward"].shape[0])]

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
        f = self._f
        return Episode(
            obs={k: f[f"obs/{k}"][o0:o0 + n + 1] for k in self.obs_space},
            action=f["action"][s0:s0 + n] if self.has_action else None,
            reward=f["reward"][s0:s0 + n], terminated=f["terminated"][s0:s0 + n],
            truncated=f["truncated"][s0:s0 + n], seed=int(row["seed"]))

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
        }

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


class EpisodeWriter:
    """Appends finished episodes to a store file, creating or recovering it as needed."""

    def __init__(self, path: str | Path, env_id: str, obs_space: dict, act_space,
                 policy: str = "", image_chunk: int = 16, has_action: bool = True):
        self.path = Path(path)
        self.recovered_rows = 0
        self._f = None
        if self.path.exists() and self.path.stat().st_size > 0:
            self._lock = WriterLock(self.path)
            try:
                self._recover_if_crashed()
                # locking=False: WriterLock is the writer's lock; HDF5's own flock would make
                # a reader that happens to be opening the file look like a second writer.
                self._f = _open_h5(self.path, "a", libver="latest", locking=False)
                _check_format(self._f, self.path)
                self._check_matches(env_id, obs_space, act_space)
                self._trim_uncommitted()
                self._add_policy(policy)
            except BaseException:
                self._abort()
                raise
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._f = _h5().File(self.path, "w-", libver="latest", locking=False)
            except (FileExistsError, OSError):
                raise _busy(self.path) from None
            self._lock = WriterLock(self.path)
            self._create(env_id, obs_space, act_space, policy, image_chunk, has_action)
        self.obs_keys = list(spaces.loads_obs(self._f.attrs["obs_space"]))
        self._f.swmr_mode = True
        self.num_episodes = self._f["episodes"].shape[0]

    # -- opening -------------------------------------------------------------------------
    def _abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self._lock.release()

    def _recover_if_crashed(self) -> None:
        try:
            if writer_mark_set(self._lock.file):
                # We hold the writer lock, so whoever left the mark is dead: safe to clear.
                clear_writer_mark(self._lock.file)
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
        f.create_dataset("episodes", (0,), maxshape=(None,), dtype=INDEX_DTYPE, chunks=(256,))

    def _column(self, name, shape, dtype, image_chunk, is_image) -> None:
        shape = tuple(shape)
        if is_image:  # images compress ~9x with gzip-1 at ~21k frames/s here
            chunk, extra = image_chunk, {"compression": "gzip", "compression_opts": 1}
        else:
            row = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            chunk, extra = max(1, VECTOR_CHUNK_BYTES // row), {}
        self._f.create_dataset(name, (0, *shape), maxshape=(None, *shape), dtype=dtype,
                               chunks=(chunk, *shape), **extra)

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

    def _trim_uncommitted(self) -> None:
        f = self._f
        index = f["episodes"][()]
        obs_keys = list(spaces.loads_obs(f.attrs["obs_space"]))
        obs_rows = min(f[f"obs/{k}"].shape[0] for k in obs_keys)
        n = valid_rows(index, obs_rows, f["reward"].shape[0])
        obs_end = int(index["length"][:n].sum()) + n
        step_end = int(index["length"][:n].sum())
        columns = {f"obs/{k}": obs_end for k in obs_keys}
        columns.update({c: step_end for c in (*STEP_COLUMNS, "action") if c in f})
        for name, end in columns.items():
            self.recovered_rows += f[name].shape[0] - end
            f[name].resize(end, axis=0)
        self.recovered_rows += len(index) - n
        f["episodes"].resize(n, axis=0)
        f.flush()

    # -- writing -------------------------------------------------------------------------
    def add(self, episode: Episode) -> int:
        """Append one finished episode; it is durable when this returns. Returns its index."""
        return self.add_many([episode])[0]

    def add_many(self, episodes: list[Episode]) -> list[int]:
        """Append episodes with one commit: two flushes in all, however many episodes.

        Short episodes (CartPole: ~20 steps) spent most of their time in per-episode flushes.
        """
        f = self._f
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
        for name, parts in columns.items():
            data = parts[0] if len(parts) == 1 else np.concatenate(parts)
            dset = f[name]
            start = dset.shape[0]
            dset.resize(start + len(data), axis=0)
            dset[start:] = data
        f.flush()  # data first ...
        index = f["episodes"]
        first = self.num_episodes
        index.resize(first + len(rows), axis=0)
        index[first:] = np.array(rows, dtype=INDEX_DTYPE)
        f.flush()  # ... then the index rows that commit them
        self.num_episodes += len(rows)
        return list(range(first, self.num_episodes))

    def close(self) -> None:
        if self._f is not None:
            self._abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def describe_spaces(obs_space: dict, act_space) -> str:
    obs = ", ".join(f"{k} {list(s.shape)} {s.dtype}" for k, s in obs_space.items())
    act = f"discrete({act_space.n})" if act_space.discrete else f"box{list(act_space.shape)}"
    return f"obs: {obs}; action: {act}"
