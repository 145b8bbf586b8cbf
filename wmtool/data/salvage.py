"""`wmtool data salvage`: copy every episode of a damaged store that can still be trusted to a
new file, and list the rest by episode. The source is only read.

A chunk's checksum (fletcher32) covers every episode with rows in it: one flipped byte in a
reward chunk makes hundreds of episodes unreadable through HDF5. Their rows are still on
disk, so salvage reads the damaged chunk's raw bytes past its checksum (decompressing what
it can), and keeps an episode only if each of its columns matches the CRC-32 that the writer
stored for it (/episode_crc); every episode is checked against it, so an index row whose
length was damaged but still fits the data cannot pass off part of an episode as whole.
An episode whose index row is damaged is found again from where the episode before it ends:
the first length whose rewards match its stored CRC-32, confirmed on every column (one
length in 2^32 could match by chance). Episodes whose own bytes were hit, or that come from
a store written before per-episode checksums with a damaged chunk or index row (nothing to
check them against), are listed, not copied.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from wmtool.data.episode import Episode
from wmtool.data.integrity import CRC
from wmtool.data.maintenance import inspect_index
from wmtool.data.store import STEP_COLUMNS, EpisodeReader, _columns, _data_rows
from wmtool.data.writer import EpisodeWriter, episode_crc, new_store, refuse_existing

BATCH_EPISODES = 64  # episodes per commit to the new file


def salvage(src: Path, out: Path) -> dict:
    """Copy src's trustworthy episodes to out (a new file); see the module docstring."""
    refuse_existing(out)
    kept, recovered, relocated, lost = [], [], [], {}
    with EpisodeReader(src, strict=False) as reader:
        f = reader.file
        index, _, check = inspect_index(f, list(reader.obs_space))
        damaged = dict(check.damaged)
        checks = _stored_checksums(reader)
        bounds = _data_rows(f, list(reader.obs_space))
        with new_store(out) as partial, EpisodeWriter(
                partial, reader.env_id, reader.obs_space, reader.act_space,
                policy=reader.policy, has_action=reader.has_action) as writer:
            batch, ends = [], (0, 0)  # where the next episode's rows start (obs, steps)
            for row in range(check.committed):
                if check.usable[row]:
                    entry = tuple(int(index[row][k]) for k in ("obs_start", "step_start",
                                                                 "length"))
                else:
                    entry, why = _relocate(reader, row, ends, _next_start(index, check, row,
                                                                          bounds), checks)
                    if entry is None:
                        lost[row] = f"its index row is damaged ({damaged.get(row, '?')}); {why}"
                        ends = (-1, -1)  # the next damaged row has nothing to start from
                        continue
                    relocated.append(row)
                episode, why = _episode(reader, row, entry, int(index[row]["seed"]), checks)
                ends = (entry[0] + entry[2] + 1, entry[1] + entry[2])
                if episode is None:
                    lost[row] = why
                    continue
                (recovered if why else kept).append(row)
                batch.append(episode)
                if len(batch) == BATCH_EPISODES:
                    writer.add_many(batch)
                    batch = []
            if batch:
                writer.add_many(batch)
    return {"in": str(src), "out": str(out), "index_rows": len(check.usable),
            "copied": len(kept) + len(recovered), "recovered_from_damaged_chunks": recovered,
            "rebuilt_index_rows": relocated,
            "lost": {str(k): v for k, v in sorted(lost.items())}, "ok": not lost}


def _stored_checksums(reader: EpisodeReader) -> tuple[list, np.ndarray | None]:
    """(/episode_crc's column names, its rows with unreadable ones as None), or no checks."""
    f = reader.file
    if CRC not in f:
        return [], None
    dset = f[CRC]
    rows: list = [None] * dset.shape[0]
    step = dset.chunks[0]
    for lo in range(0, dset.shape[0], step):
        try:
            block = dset[lo:lo + step]
        except OSError:
            continue
        rows[lo:lo + len(block)] = list(block)
    return json.loads(dset.attrs["columns"]), rows


def _next_start(index: np.ndarray, check, row: int, bounds: tuple[int, int]) -> int:
    """The step row where the first usable episode after `row` starts (the data's end if
    none): a damaged row's episode lies before it."""
    later = np.flatnonzero(check.usable[row + 1:check.committed])
    return int(index[row + 1 + later[0]]["step_start"]) if len(later) else bounds[1]


def _relocate(reader: EpisodeReader, row: int, ends: tuple[int, int], limit: int,
              checks) -> tuple[tuple[int, int, int] | None, str]:
    """(obs_start, step_start, length) of a damaged index row's episode, from where the
    episode before it ends and its stored reward CRC-32; or None and why not."""
    names, stored = checks
    if stored is None:
        return None, "this store has no per-episode checksums to find its episode by"
    if row >= len(stored) or stored[row] is None:
        return None, "its /episode_crc row is unreadable too"
    if ends[0] < 0:
        return None, "the row before it could not be placed either"
    o0, s0 = ends
    rewards = _rows(reader.dataset("reward"), s0, limit)
    if rewards is None:
        return None, "the rewards after it cannot be decoded"
    want, crc = int(stored[row][names.index("reward")]), 0
    for n, value in enumerate(rewards, start=1):
        crc = zlib.crc32(np.ascontiguousarray(value).tobytes(), crc)
        if crc == want:  # _episode confirms the length on every column
            return (o0, s0, n), ""
    return None, "no length after the episode before it matches its stored checksum"


def _episode(reader: EpisodeReader, row: int, entry: tuple[int, int, int], seed: int,
             checks) -> tuple[Episode | None, str]:
    """Index row `row`'s episode at `entry` and "" (read through HDF5's checksums) or
    "recovered" (from damaged chunks); or None and why it is lost. Each column must match
    the episode's stored CRC-32 where the store has them."""
    names, stored = checks
    o0, s0, n = entry
    if not names:
        obs, steps = _columns(reader.file, list(reader.obs_space))
        names = [*obs, *steps]
    if stored is not None and (row >= len(stored) or stored[row] is None):
        return None, "its /episode_crc row is unreadable, so nothing can vouch for its bytes"
    arrays, repaired = {}, False
    for i, name in enumerate(names):
        lo, hi = (o0, o0 + n + 1) if name.startswith("obs/") else (s0, s0 + n)
        dset = reader.dataset(name)
        try:
            rows = dset[lo:hi]
        except OSError:
            if stored is None:
                return None, ("a chunk it lies in fails its checksum, and this store has no "
                              "per-episode checksums to tell its own bytes intact")
            rows, repaired = _rows(dset, lo, hi), True
            if rows is None:
                return None, f"/{name}: its damaged chunk cannot be decoded"
        if len(rows) != hi - lo:
            return None, f"/{name}: its rows run past the data"
        if stored is not None and episode_crc(rows, rows.dtype) != int(stored[row][i]):
            return None, f"/{name}: its own bytes are damaged (CRC-32 differs)"
        arrays[name] = rows
    return Episode(obs={k.removeprefix("obs/"): v for k, v in arrays.items()
                        if k.startswith("obs/")},
                   action=arrays.get("action"), seed=seed,
                   **{name: arrays[name] for name in STEP_COLUMNS}), \
        "recovered" if repaired else ""


def _rows(dset, lo: int, hi: int) -> np.ndarray | None:
    """Rows [lo, hi) of a column, chunk by chunk, decoding damaged chunks past their
    checksum; None if a damaged chunk cannot be decoded as far as these rows."""
    step = dset.chunks[0]
    parts = []
    for start in range(lo // step * step, hi, step):
        a, b = max(lo, start), min(hi, start + step)
        try:
            parts.append(dset[a:b])
            continue
        except OSError:
            pass
        chunk = _raw_chunk(dset, start)
        if chunk is None or len(chunk) < b - start:
            return None
        parts.append(chunk[a - start:b - start])
    return np.concatenate(parts) if parts else dset[lo:hi]


def _raw_chunk(dset, start: int) -> np.ndarray | None:
    """The chunk at row `start` as stored, ignoring its fletcher32 checksum: the whole rows
    that decode (gzip: up to where the damage stops decompression)."""
    try:
        _, raw = dset.id.read_direct_chunk((start,) + (0,) * (dset.ndim - 1))
    except (OSError, RuntimeError, ValueError):
        return None
    data = raw[:-4] if dset.fletcher32 else raw  # the checksum is the chunk's last 4 bytes
    if dset.compression == "gzip":
        data = _inflate_prefix(data)
    row_bytes = dset.dtype.itemsize * int(np.prod(dset.chunks[1:], dtype=np.int64))
    whole = len(data) // row_bytes
    return np.frombuffer(data[:whole * row_bytes], dset.dtype).reshape(
        (whole, *dset.chunks[1:]))


def _inflate_prefix(data: bytes, piece: int = 512) -> bytes:
    """What zlib decodes of `data` before it hits the damage."""
    inflater, out = zlib.decompressobj(), []
    for i in range(0, len(data), piece):
        try:
            out.append(inflater.decompress(data[i:i + piece]))
        except zlib.error:
            break
    return b"".join(out)
