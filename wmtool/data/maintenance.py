"""`wmtool data verify` and `wmtool data repair`: find and fix what went wrong with a store.

verify  reads every chunk of every column (fletcher32 checksums, where the store has them,
        are checked by HDF5 on each read) and every index row; lists the damaged episodes
        and those holding NaN/inf. Read-only.
repair  needs the file to itself (no live writer: the WriterLock). Clears a dead writer's
        mark, so plain h5py opens the file again; rebuilds a damaged index row from its
        neighbours when that is unambiguous (row i starts where row i-1 ends and ends where
        row i+1 starts; its return is recomputed from the stored rewards; its seed kept);
        then, once the index is sound, trims what no index row commits. Damage it cannot
        undo (a chunk whose checksum fails, a truncated file) is reported, not guessed at.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wmtool import spaces
from wmtool.data import store
from wmtool.data.integrity import (
    check_index,
    episodes_of_rows,
    episodes_touching,
    past_end,
    read_index,
    scan_column,
)
from wmtool.data.superblock import clear_writer_mark, writer_mark_set
from wmtool.errors import WmtoolError


def scan_store(reader: store.EpisodeReader, full: bool) -> dict:
    """Damaged and non-finite episodes of an open reader, by index row number.

    full=False (data info): only float columns are read, for NaN/inf. full=True (verify):
    every chunk of every column is read, so every checksum is checked."""
    index = reader.index
    lengths = index["length"].astype(np.int64)
    obs_starts = index["obs_start"].astype(np.int64)
    step_starts = index["step_start"].astype(np.int64)
    spans = {"obs": (obs_starts, obs_starts + lengths + 1),
             "step": (step_starts, step_starts + lengths)}
    damaged: set[int] = set()
    nonfinite: dict[int, list[str]] = {}
    chunks = []
    for name in reader.column_names():
        if name == "episodes":
            continue
        dset = reader.dataset(name)
        starts, stops = spans["obs" if name.startswith("obs/") else "step"]
        rows = int(stops[-1]) if len(stops) else 0
        scan = scan_column(dset, rows, check_finite=True, read=full)
        for lo, hi in scan.unreadable:
            chunks.append({"dataset": name, "rows": [lo, hi]})
        damaged |= episodes_touching(starts, stops, scan.unreadable)
        for pos in episodes_of_rows(starts, stops, scan.nonfinite):
            nonfinite.setdefault(pos, []).append(name)
    to_row = reader.rows
    return {
        "damaged_episodes": sorted(int(to_row[p]) for p in damaged),
        "damaged_chunks": chunks,
        "nonfinite_episodes": sorted(int(to_row[p]) for p in nonfinite),
        "nonfinite_fields": {str(int(to_row[p])): f for p, f in sorted(nonfinite.items())},
    }


def verify(path: Path) -> dict:
    """Everything `wmtool data verify` reports; result["ok"] is False when damage was found."""
    with store.EpisodeReader(path, strict=False) as reader:
        found = scan_store(reader, full=True)
        result = {"path": str(path), "episodes": len(reader),
                  "index_rows": len(reader.check.usable),
                  "checksums": reader.checksummed, "writer_mark": reader.info()["writer_mark"],
                  "unusable_index_rows": reader.check.unusable_rows(),
                  "uncommitted_index_rows": reader.check.uncommitted,
                  "index_problems": [f"row {r}: {why}" for r, why in reader.check.damaged],
                  **found}
    result["ok"] = not (result["damaged_episodes"] or result["index_problems"])
    return result


def repair(path: Path) -> dict:
    """Repair a store in place (see the module docstring); result["ok"] when it is sound."""
    path = Path(path)
    if not path.exists():
        raise WmtoolError(f"{path}: no such file", "check the path")
    lock = store.WriterLock(path)  # refuses while a live writer holds the file
    try:
        try:
            cleared = writer_mark_set(lock.file) and clear_writer_mark(lock.file)
        except ValueError:
            raise WmtoolError(f"{path} is not an HDF5 file",
                              "pass a .h5 file written by `wmtool collect`") from None
        f = store._open_h5(path, "a", libver="latest", locking=False)
        try:
            store._check_format(f, path)
            result = _repair_open(f, path)
            f.flush()
        finally:
            f.close()
    finally:
        lock.release()
    return {"path": str(path), "writer_mark_cleared": bool(cleared), **result}


def _repair_open(f, path: Path) -> dict:
    obs_keys = list(spaces.loads_obs(f.attrs["obs_space"]))
    size = path.stat().st_size
    for name in ("episodes", *store._columns(f, obs_keys)[0], *store._columns(f, obs_keys)[1]):
        cut = past_end(f[name], size)
        if cut is not None:
            raise WmtoolError(f"{path} is truncated ({cut}); repair cannot restore lost bytes",
                              "copy it again from its source")
    index, unreadable = read_index(f["episodes"])
    obs_rows, step_rows = store._data_rows(f, obs_keys)
    check = check_index(index, obs_rows, step_rows, unreadable)
    rebuilt, unrepaired = [], []
    for row, why in check.damaged:
        fixed, reason = _rebuild_row(f, index, check.usable, row, unreadable, obs_rows,
                                     step_rows, check.committed)
        if fixed is None:
            unrepaired.append(f"row {row}: {why}; {reason}")
            continue
        changes = {k: [_plain(index[row][k]), _plain(fixed[k])] for k in index.dtype.names
                   if _plain(index[row][k]) != _plain(fixed[k])}
        index[row] = fixed
        check.usable[row] = True
        f["episodes"][row] = fixed
        rebuilt.append({"row": int(row), "was": why, "changed": changes})
    trimmed = 0
    if rebuilt:
        check = check_index(index, obs_rows, step_rows, unreadable)
    if check.clean:
        obs_end, step_end = store.committed_ends(index, check.committed)
        trimmed = store.trim_to(f, obs_keys, check.committed, obs_end, step_end)
    return {"rebuilt_index_rows": rebuilt, "unrepaired": unrepaired, "trimmed_rows": trimmed,
            "episodes": int(check.usable.sum()), "ok": check.clean}


def _plain(value):
    return np.asarray(value).item()  # a JSON-friendly int or float


def _rebuild_row(f, index, usable, i: int, unreadable, obs_rows: int, step_rows: int,
                 committed: int):
    """Row i from its neighbours, or (None, why not)."""
    if unreadable[i]:
        return None, "its chunk of the index fails its checksum: its rows cannot be rewritten"
    if i > 0 and not usable[i - 1]:
        return None, "the row before it is damaged too"
    o0, s0 = store.committed_ends(index, i) if i > 0 else (0, 0)
    if i + 1 < committed:
        if not usable[i + 1]:
            return None, "the row after it is damaged too"
        nxt = index[i + 1]
        n = int(nxt["step_start"]) - s0
        if n <= 0 or int(nxt["obs_start"]) - o0 != n + 1:
            return None, "its neighbours do not leave room for one episode"
    else:  # the last row: only the data's end bounds it, so ask for a second witness
        n = step_rows - s0
        if n <= 0 or obs_rows - o0 != n + 1:
            return None, "it is the last row and the data past it is not one episode"
    ret = float(np.sum(f["reward"][s0:s0 + n], dtype=np.float64))
    old = index[i]
    if i + 1 >= committed and int(old["length"]) != n and not np.isclose(old["return"], ret):
        return None, "it is the last row and neither its length nor its return confirms it"
    fixed = np.array((o0, s0, n, ret, int(old["seed"])), dtype=index.dtype)
    return fixed, ""
