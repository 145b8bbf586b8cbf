"""`wmtool data salvage`: copy every episode of a damaged store that can still be trusted to a
new file, and list the rest by episode. The source is only read.

A chunk's checksum (fletcher32) covers every episode with rows in it: one flipped byte in a
reward chunk makes hundreds of episodes unreadable through HDF5. Their rows are still on
disk, so salvage reads the damaged chunk's raw bytes past its checksum (decompressing what
it can), and keeps an episode only if each of its columns matches the CRC-32 that the writer
stored for it (/episode_crc). Episodes whose own bytes were hit, whose index row is damaged,
or that come from a store written before per-episode checksums (nothing to check them
against) are listed, not copied.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from wmtool.data.episode import Episode
from wmtool.data.integrity import CRC
from wmtool.data.store import STEP_COLUMNS, EpisodeReader
from wmtool.data.writer import EpisodeWriter, episode_crc, new_store, refuse_existing
from wmtool.errors import WmtoolError

BATCH_EPISODES = 64  # episodes per commit to the new file


def salvage(src: Path, out: Path) -> dict:
    """Copy src's trustworthy episodes to out (a new file); see the module docstring."""
    refuse_existing(out)
    kept, recovered, lost = [], [], {}
    with EpisodeReader(src, strict=False) as reader:
        for row, why in reader.check.damaged:
            lost[int(row)] = f"its index row is damaged ({why})"
        checks = _stored_checksums(reader)
        with new_store(out) as partial, EpisodeWriter(
                partial, reader.env_id, reader.obs_space, reader.act_space,
                policy=reader.policy, has_action=reader.has_action) as writer:
            batch = []
            for pos, row in enumerate(reader.rows):
                episode, why = _episode(reader, pos, checks)
                if episode is None:
                    lost[int(row)] = why
                    continue
                (recovered if why else kept).append(int(row))
                batch.append(episode)
                if len(batch) == BATCH_EPISODES:
                    writer.add_many(batch)
                    batch = []
            if batch:
                writer.add_many(batch)
    return {"in": str(src), "out": str(out), "index_rows": len(reader.check.usable),
            "copied": len(kept) + len(recovered), "recovered_from_damaged_chunks": recovered,
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


def _episode(reader: EpisodeReader, pos: int, checks) -> tuple[Episode | None, str]:
    """The episode at position pos, and "" (read through HDF5's checksums) or "recovered"
    (rebuilt from damaged chunks and matched to its CRC); or None and why it is lost."""
    try:
        return reader.episode(pos), ""
    except WmtoolError:
        pass
    names, stored = checks
    row = int(reader.rows[pos])
    if stored is None:
        return None, ("a chunk it lies in fails its checksum, and this store has no "
                      "per-episode checksums to tell its own bytes intact")
    if row >= len(stored) or stored[row] is None:
        return None, "a chunk it lies in fails its checksum, and so does its /episode_crc row"
    entry = reader.index[pos]
    o0, s0, n = int(entry["obs_start"]), int(entry["step_start"]), int(entry["length"])
    arrays = {}
    for name, crc in zip(names, stored[row]):
        lo, hi = (o0, o0 + n + 1) if name.startswith("obs/") else (s0, s0 + n)
        rows = _rows(reader.dataset(name), lo, hi)
        if rows is None:
            return None, f"/{name}: its damaged chunk cannot be decoded"
        if episode_crc(rows, rows.dtype) != int(crc):
            return None, f"/{name}: its own bytes are damaged (CRC-32 differs)"
        arrays[name] = rows
    return Episode(obs={k.removeprefix("obs/"): v for k, v in arrays.items()
                        if k.startswith("obs/")},
                   action=arrays.get("action"), seed=int(entry["seed"]),
                   **{name: arrays[name] for name in STEP_COLUMNS}), "recovered"


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
