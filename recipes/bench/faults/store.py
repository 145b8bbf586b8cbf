"""Damaged stores x the commands that meet them. One real store (CartPole, vector and image
observations, collected by wmtool) is damaged ten ways; each damaged copy goes to verify,
info, repair --dry-run, repair, salvage, an append by collect, and train --data.

Data lost counts the committed episodes whose own bytes were intact before the command
(the damage's victims excluded) and that nothing can get back after it: for commands that
write, what `data salvage` recovers before vs after; for the others, any change to the file.
"""
from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from faults.common import TINY, Outcome, file_digest, judge, start, wait_for, wm

EPISODES = 40


def digests(path: Path) -> list[str]:
    from wmtool.data.store import EpisodeReader

    with EpisodeReader(path) as r:
        return [e.digest() for e in r]


def recoverable(path: Path, scratch: Path) -> set[str]:
    """Episodes `data salvage` gets out of PATH (the set a user can still have)."""
    out = scratch / f"salvage-{time.monotonic_ns()}.h5"
    wm("data", "salvage", path, "--out", out, "--quiet")
    found = set(digests(out)) if out.exists() else set()
    out.unlink(missing_ok=True)
    return found


def flip(path: Path, dataset: str, chunk: int, at: int | None = None) -> None:
    """One bit of a stored chunk flipped (its middle byte, or byte `at`)."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    where = info.byte_offset + (info.size // 2 if at is None else at)
    with open(path, "r+b") as fh:
        fh.seek(where)
        byte = fh.read(1)[0]
        fh.seek(where)
        fh.write(bytes([byte ^ 0x10]))


def _rows_hit(path: Path, dataset: str, chunk: int) -> set[int]:
    """Episodes with rows in a chunk of a column (the ones a flip there may take)."""
    with h5py.File(path, "r") as f:
        rows = f[dataset].chunks[0]
        index = f["episodes"][()]
    lo, hi = chunk * rows, (chunk + 1) * rows
    start = "obs_start" if dataset.startswith("obs/") else "step_start"
    extra = 1 if dataset.startswith("obs/") else 0
    return {i for i, r in enumerate(index)
            if r[start] < hi and r[start] + r["length"] + extra > lo}


# -- the ten damages: each edits PATH and returns the episodes it took ----------------------
def image_flip(path: Path, work: Path) -> set[int]:
    flip(path, "obs/image", 5)
    return _rows_hit(path, "obs/image", 5)


def reward_flip(path: Path, work: Path) -> set[int]:
    with h5py.File(path, "r") as f:
        row = int(f["episodes"][7]["step_start"]) + 1
    flip(path, "reward", 0, at=4 * row + 1)  # float32, stored raw: one row of episode 7
    return {7}


def action_flip(path: Path, work: Path) -> set[int]:
    with h5py.File(path, "r") as f:
        row = int(f["episodes"][20]["step_start"]) + 2
    flip(path, "action", 0, at=8 * row + 2)  # int64 rows
    return {20}


def index_row(path: Path, work: Path) -> set[int]:
    with h5py.File(path, "a") as f:
        row = f["episodes"][11]
        row["length"] = 10**9
        f["episodes"][11] = row
    return set()


def adjacent_index_rows(path: Path, work: Path) -> set[int]:
    with h5py.File(path, "a") as f:
        rows = f["episodes"][10:12]
        rows["step_start"] = 7
        f["episodes"][10:12] = rows
    return set()


def last_index_row(path: Path, work: Path) -> set[int]:
    with h5py.File(path, "a") as f:
        n = f["episodes"].shape[0]
        row = f["episodes"][n - 1]
        row["length"] = max(1, int(row["length"]) // 2)
        f["episodes"][n - 1] = row
    return set()


def crashed_writer(path: Path, work: Path) -> set[int]:
    """A real collect appending to PATH, killed -9 after it committed two more episodes."""
    from wmtool.data.store import EpisodeReader

    proc = start("collect", "--env", "gym:CartPole-v1", "--obs", "both", "--steps", "100000",
                 "--out", path, "--quiet", log=work / "crash.log")
    with EpisodeReader(path) as r:
        before = len(r)

    def committed() -> bool:
        with EpisodeReader(path) as r:
            return len(r) >= before + 2
    wait_for(committed, proc, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return set()


def crashed_and_cut(path: Path, work: Path) -> set[int]:
    crashed_writer(path, work)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * 0.9))
    return set(range(10**6))  # unknown: whatever lay in the cut tail


def rows_past_end(path: Path, work: Path) -> set[int]:
    with h5py.File(path, "a") as f:
        for name in ("obs/vector", "obs/image", "action", "reward", "terminated", "truncated"):
            f[name].resize(f[name].shape[0] + 3, axis=0)
    return set()


def nonfinite_reward(path: Path, work: Path) -> set[int]:
    """A NaN reward in episode 5, as a broken env would produce (written by wmtool's own
    writer, so its checksums agree): a data problem, not damage."""
    from wmtool.data.store import EpisodeReader
    from wmtool.data.writer import EpisodeWriter

    with EpisodeReader(path) as r:
        episodes, env_id, spaces = list(r), r.env_id, (r.obs_space, r.act_space)
    episodes[5].reward[1] = np.nan
    path.unlink()
    with EpisodeWriter(path, env_id, *spaces, policy="random") as w:
        w.add_many(episodes)
    return {5}  # changed: its old bytes are not the ones to salvage


DAMAGES: dict[str, Callable[[Path, Path], set[int]]] = {
    "bit flip in an image chunk": image_flip,
    "bit flip in the reward chunk": reward_flip,
    "bit flip in the action chunk": action_flip,
    "damaged index row": index_row,
    "two adjacent damaged index rows": adjacent_index_rows,
    "last index row's length halved": last_index_row,
    "writer killed -9 mid-collect": crashed_writer,
    "writer killed -9, file cut to 90%": crashed_and_cut,
    "rows past the last episode, no crash": rows_past_end,
    "NaN reward in an episode": nonfinite_reward,
}
# What each command may answer per damage (exit codes); anything else fails the trial.
DAMAGED = {"verify": (1,), "info": (0, 1), "dry-run": (0, 1), "repair": (0, 1),
           "salvage": (0, 1), "append": (1,), "train --data": (1,)}
EXPECT: dict[str, dict[str, tuple[int, ...]]] = {name: dict(DAMAGED) for name in DAMAGES}
for name in ("damaged index row", "last index row's length halved"):
    EXPECT[name]["repair"] = (0,)  # rebuilt from the data
EXPECT["bit flip in an image chunk"]["append"] = (0, 1)  # an older chunk: appends add to it
EXPECT["writer killed -9 mid-collect"].update(
    {"verify": (0, 1), "repair": (0,), "salvage": (0,), "append": (0,), "train --data": (0,)})
EXPECT["writer killed -9, file cut to 90%"].update({"append": (1,), "train --data": (1,)})
EXPECT["rows past the last episode, no crash"].update({"salvage": (0,), "repair": (1,)})
EXPECT["NaN reward in an episode"].update(
    {"verify": (0,), "info": (0,), "dry-run": (0,), "repair": (0,), "salvage": (0,),
     "append": (0,)})


REPORTS = ("verify", "dry-run", "repair", "salvage")


def base_store(work: Path) -> Path:
    base = work / "base.h5"
    if not base.exists():
        res = wm("collect", "--env", "gym:CartPole-v1", "--obs", "both", "--episodes",
                 EPISODES, "--out", base, "--quiet")
        assert res.code == 0, res.stderr
    return base


def command(op: str, path: Path, work: Path) -> list:
    return {"verify": ["data", "verify", path],
            "info": ["data", "info", path],
            "dry-run": ["data", "repair", path, "--dry-run"],
            "repair": ["data", "repair", path],
            "salvage": ["data", "salvage", path, "--out", work / "saved.h5"],
            "append": ["collect", "--env", "gym:CartPole-v1", "--obs", "both", "--episodes",
                       "2", "--out", path, "--quiet"],
            "train --data": ["train", "--algo", "dreamerv3", "--data", path, "--steps", "5",
                             *TINY, "--run-dir", work / "run", "--quiet"]}[op]


def trial(damage: str, op: str, root: Path) -> Outcome:
    work = root / f"{damage}-{op}".replace(" ", "_").replace("%", "pc").replace("'", "")
    work.mkdir(parents=True)
    shutil.copy(base_store(root), work / "base.h5")
    path = work / "store.h5"
    shutil.copy(work / "base.h5", path)
    truth = digests(path)
    victims = DAMAGES[damage](path, work)
    writes = op in ("repair", "append")
    had = recoverable(path, work) if writes else set()
    before = file_digest(path)
    res = wm(*command(op, path, work))
    out = judge(res, EXPECT[damage][op], limit=120 if op == "train --data" else 30,
                report=op in REPORTS)
    if op == "salvage":
        saved = set(digests(work / "saved.h5")) if (work / "saved.h5").exists() else set()
        should = {d for i, d in enumerate(truth) if i not in victims}
        out.lost = len(should - saved) if len(victims) < 10**6 else 0
    elif writes and not (op == "append" and res.code):
        out.lost = len(had - recoverable(path, work))
    elif file_digest(path) != before:
        out.verdict, out.detail = "failed", f"{op} changed the file; " + out.detail
    if out.lost and out.verdict != "failed":
        out.verdict, out.detail = "failed", f"lost {out.lost} intact episodes; " + out.detail
    return out


def trials() -> list[tuple[str, str, Callable[[Path], Outcome]]]:
    return [("store", f"{damage} / {op}", lambda root, d=damage, o=op: trial(d, o, root))
            for damage in DAMAGES for op in DAMAGED]
