"""Recover an HDF5 file whose SWMR writer was killed, without the h5clear tool.

A SWMR writer marks the superblock "open for writing" and keeps its end-of-allocation
address only in memory. After kill -9 the mark stays (so every normal open is refused)
and the stored end-of-allocation is stale (so a new writer would allocate over live data).
`clear_writer_mark` does what `h5clear -s --increment` does: drop the mark and move the
end-of-allocation to the real end of the file, then re-checksum the superblock.
Only superblock versions 2 and 3 (what libver="latest" writes) are handled.
"""
from __future__ import annotations

import os
import struct

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK
    b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK
    c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK
    a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK
    b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK
    c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rot(b, 14)) & _MASK
    a ^= c; a = (a - _rot(c, 11)) & _MASK
    b ^= a; b = (b - _rot(a, 25)) & _MASK
    c ^= b; c = (c - _rot(b, 16)) & _MASK
    a ^= c; a = (a - _rot(c, 4)) & _MASK
    b ^= a; b = (b - _rot(a, 14)) & _MASK
    c ^= b; c = (c - _rot(b, 24)) & _MASK
    return c


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 hashlittle, the checksum HDF5 puts on its metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    pos = 0
    while length - pos > 12:
        x, y, z = struct.unpack_from("<3I", data, pos)
        a, b, c = _mix((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)
        pos += 12
    if length == 0:
        return c
    tail = data[pos:] + bytes(12 - (length - pos))
    x, y, z = struct.unpack("<3I", tail)
    return _final((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)


def _find_superblock(fh) -> int:
    for offset in (0, 512, 1024, 2048, 4096):
        fh.seek(offset)
        if fh.read(8) == SIGNATURE:
            return offset
    raise ValueError("no HDF5 signature found")


class _Opened:
    """Use an already open binary file as is, or open (and later close) a path.

    Callers that hold a POSIX lock on the file pass their open file: closing any other
    descriptor of the file would silently release that lock.
    """

    def __init__(self, target, mode: str):
        self.fh = target if hasattr(target, "seek") else open(target, mode)
        self.owned = self.fh is not target

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        if self.owned:
            self.fh.close()


def writer_mark_set(target) -> bool:
    """True if the file says a writer still has it open (or was killed holding it)."""
    with _Opened(target, "rb") as fh:
        base = _find_superblock(fh)
        fh.seek(base + 8)
        head = fh.read(4)
    if len(head) < 4:
        raise ValueError("truncated HDF5 superblock")
    version, _, _, flags = head
    return version >= 2 and flags != 0


def clear_writer_mark(target) -> bool:
    """Clear a dead writer's mark; returns False when there was nothing to clear."""
    with _Opened(target, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        base = _find_superblock(fh)
        fh.seek(base)
        head = bytearray(fh.read(12))
        version, offset_size = head[8], head[9]
        if version < 2 or head[11] == 0:
            return False
        if offset_size != 8:
            raise ValueError(f"unsupported HDF5 offset size {offset_size}")
        body = bytearray(head + fh.read(4 * 8))
        base_addr, ext_addr, eoa, root = struct.unpack_from("<4Q", body, 12)
        body[11] = 0
        real_end = size - base_addr
        struct.pack_into("<Q", body, 28, max(eoa, real_end))
        checksum = lookup3(bytes(body))
        fh.seek(base)
        fh.write(bytes(body) + struct.pack("<I", checksum))
        fh.flush()
        os.fsync(fh.fileno())
    return True
