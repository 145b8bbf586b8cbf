"""`wmtool data verify` and `wmtool data repair`: find and fix what went wrong with a store.

Both judge a store by the same checks (`inspect`): every index row (integrity.py), every
row's return against the sum of its stored rewards (a damaged length that still fits the
data), rows past the last episode, and every chunk of every column (fletcher32 checksums,
where the store has them, are checked by HDF5 on each read).

verify  reports; read-only. Lists the damaged episodes and those holding NaN/inf.
repair  needs the file to itself (no live writer: the WriterLock). Clears a dead writer's
        mark, so plain h5py opens the file again; rebuilds a damaged index row from its
        neighbours when that is unambiguous (row i starts where row i-1 ends and ends where
        row i+1 starts; the last row only when its stored return confirms the data's end;
        its seed kept). It never deletes a committed step: rows past the last episode are
        trimmed only after a crash (the writer mark was set: an unfinished commit) or when
        asked (--drop-trailing), and it says what it trims before it does. Damage it cannot
        undo (a chunk whose checksum fails, a truncated file) is reported, not guessed at:
        `wmtool data salvage` copies what can still be trusted to a new file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wmtool import spaces
from wmtool.data import store
from wmtool.data.integrity import (
    CRC,
    IndexCheck,
    check_index,
    check_returns,
    episodes_of_rows,
    episodes_touching,
    past_end,
    read_index,
    rows_past_end,
    scan_column,
)
from wmtool.data.superblock import clear_writer_mark, writer_mark_set
from wmtool.errors import WmtoolError


def scan_store(reader: store.EpisodeReader, full: bool) -> dict:
    """Damaged and non-finite episodes of an open reader, by index row number.

    full=False (data info): only float columns are read, for NaN/inf. full=True (verify):
    every chunk of every column is read, so every checksum is checked."""
    columns = {name: reader.dataset(name) for name in reader.column_names()}
    return scan_columns(columns, reader.index, reader.rows, full)


def scan_columns(columns: dict, index: np.ndarray, to_row: np.ndarray, full: bool) -> dict:
    """scan_store on the columns ({name: dataset}) of the usable episodes `index`, whose
    index row numbers are `to_row`."""
    lengths = index["length"].astype(np.int64)
    obs_starts = index["obs_start"].astype(np.int64)
    step_starts = index["step_start"].astype(np.int64)
    spans = {"obs": (obs_starts, obs_starts + lengths + 1),
             "step": (step_starts, step_starts + lengths)}
    damaged: set[int] = set()
    nonfinite: dict[int, list[str]] = {}
    chunks = []
    for name, dset in columns.items():
        if name == "episodes":
            continue
        starts, stops = spans["obs" if name.startswith("obs/") else "step"]
        rows = int(stops.max()) if len(stops) else 0
        scan = scan_column(dset, rows, check_finite=True, read=full)
        for lo, hi in scan.unreadable:
            chunks.append({"dataset": name, "rows": [lo, hi]})
        damaged |= episodes_touching(starts, stops, scan.unreadable)
        for pos in episodes_of_rows(starts, stops, scan.nonfinite):
            nonfinite.setdefault(pos, []).append(name)
    return {
        "damaged_episodes": sorted(int(to_row[p]) for p in damaged),
        "damaged_chunks": chunks,
        "nonfinite_episodes": sorted(int(to_row[p]) for p in nonfinite),
        "nonfinite_fields": {str(int(to_row[p])): f for p, f in sorted(nonfinite.items())},
    }


def store_columns(f, obs_keys) -> dict:
    """Every dataset of a store by name: observation columns, step columns, the index."""
    obs_cols, step_cols = store._columns(f, obs_keys)
    return {name: f[name] for name in (*obs_cols, *step_cols, "episodes")}


def inspect_index(f, obs_keys) -> tuple[np.ndarray, np.ndarray, IndexCheck]:
    """The index, its unreadable rows and their check, returns included."""
    index, unreadable = read_index(f["episodes"])
    check = check_index(index, *store._data_rows(f, obs_keys), unreadable)
    return index, unreadable, check_returns(check, index, f["reward"])


def verify(path: Path) -> dict:
    """Everything `wmtool data verify` reports; result["ok"] is False when damage was found.
    Rows past the last episode are damage unless a writer crashed (an unfinished commit)."""
    with store.EpisodeReader(path, strict=False) as reader:
        f, obs_keys = reader.file, list(reader.obs_space)
        index, _, check = inspect_index(f, obs_keys)
        columns = store_columns(f, obs_keys)
        usable = np.flatnonzero(check.usable)
        found = scan_columns(columns, index[usable], usable, full=True)
        crashed = reader.info()["writer_mark"]
        result = {"path": str(path), "episodes": len(usable), "index_rows": len(check.usable),
                  "checksums": reader.checksummed, "writer_mark": crashed,
                  "unusable_index_rows": check.unusable_rows(),
                  "uncommitted_index_rows": check.uncommitted,
                  "index_problems": [f"row {r}: {why}" for r, why in check.damaged],
                  "rows_past_end": rows_past_end(columns, index, check) if check.clean else 0,
                  **found}
    result["ok"] = not (result["damaged_episodes"] or result["index_problems"]
                        or (result["rows_past_end"] and not crashed))
    return result


def repair(path: Path, dry_run: bool = False, drop_trailing: bool = False,
           say=lambda line: None) -> dict:
    """Repair a store in place (see the module docstring); result["ok"] when it is sound.
    `say` hears each change before it is made; dry_run makes none."""
    path = Path(path)
    if not path.exists():
        raise WmtoolError(f"{path}: no such file", "check the path")
    lock = store.WriterLock(path)  # refuses while a live writer holds the file
    try:
        try:
            crashed = writer_mark_set(lock.file)
        except ValueError:
            raise WmtoolError(f"{path} is not an HDF5 file",
                              "pass a .h5 file written by `wmtool collect`") from None
        if crashed and not dry_run:
            say("clearing a dead writer's mark")
            clear_writer_mark(lock.file)
        f = store._open_h5(path, "r" if dry_run else "a", swmr_read=dry_run and crashed,
                           libver="latest", locking=False)
        try:
            store._check_format(f, path)
            result = _repair_open(f, path, crashed, dry_run, drop_trailing, say)
            if not dry_run:
                f.flush()
        finally:
            f.close()
    finally:
        lock.release()
    return {"path": str(path), "dry_run": dry_run,
            "writer_mark_cleared": bool(crashed and not dry_run), **result}


def _repair_open(f, path: Path, crashed: bool, dry_run: bool, drop_trailing: bool,
                 say) -> dict:
    obs_keys = list(spaces.loads_obs(f.attrs["obs_space"]))
    size = path.stat().st_size
    columns = store_columns(f, obs_keys)
    for name, dset in columns.items():
        cut = past_end(dset, size)
        if cut is not None:
            raise WmtoolError(f"{path} is truncated ({cut}); repair cannot restore lost bytes",
                              "copy it again from its source")
    index, unreadable, check = inspect_index(f, obs_keys)
    obs_rows, step_rows = store._data_rows(f, obs_keys)
    rebuilt, unrepaired = [], []
    for row, why in list(check.damaged):
        fixed, reason = _rebuild_row(f, index, check.usable, row, unreadable, obs_rows,
                                     step_rows, check.committed)
        if fixed is None:
            unrepaired.append(f"row {row}: {why}; {reason}")
            continue
        changes = {k: [_plain(index[row][k]), _plain(fixed[k])] for k in index.dtype.names
                   if _plain(index[row][k]) != _plain(fixed[k])}
        say(f"rebuilding index row {row} ({why}): "
            + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items()))
        index[row] = fixed
        check.usable[row] = True
        if not dry_run:
            f["episodes"][row] = fixed
        rebuilt.append({"row": int(row), "was": why, "changed": changes})
    if rebuilt:
        check = check_returns(check_index(index, obs_rows, step_rows, unreadable), index,
                              f["reward"])
    trimmed = 0
    per_episode = {CRC: f[CRC]} if CRC in f else {}
    extra = rows_past_end({**columns, **per_episode}, index, check) if check.clean else 0
    if extra and (crashed or drop_trailing):
        why = ("an unfinished commit: the last writer crashed" if crashed else
               "--drop-trailing")
        say(f"trimming {extra} rows after the last episode (index row {check.committed - 1}) "
            f"that no index row commits ({why})")
        trimmed = extra
        if not dry_run:
            obs_end, step_end = store.committed_ends(index, check.committed)
            store.trim_to(f, obs_keys, check.committed, obs_end, step_end)
    elif extra:
        unrepaired.append(
            f"{extra} rows after the last episode (index row {check.committed - 1}) that no "
            "index row commits, and no writer crashed: kept, since they may be steps of an "
            "episode whose index row is damaged; back the file up, then `wmtool data repair "
            f"--drop-trailing {path}` removes them")
    usable = np.flatnonzero(check.usable)
    found = scan_columns(columns, index[usable], usable, full=True)
    return {"rebuilt_index_rows": rebuilt, "unrepaired": unrepaired, "trimmed_rows": trimmed,
            "episodes": int(len(usable)), "damaged_episodes": found["damaged_episodes"],
            "damaged_chunks": found["damaged_chunks"],
            "ok": check.clean and not unrepaired and not found["damaged_episodes"]}


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
