"""Two things h5py does not do for us: bound SWMR metadata retries, and give up a file safely.

Bounded retries. A SWMR reader re-reads metadata whose checksum fails, assuming a writer is
halfway through updating it; the default is 100 attempts with a growing back-off. On a
truncated or damaged file the checksum never comes right: `wmtool data info` on a crashed
store cut to 50% of its size ran for more than ten minutes inside HDF5, deaf to Ctrl-C.
Measured here on such a file: up to ~24 attempts fail in milliseconds, 40 already take longer
than half a minute. h5py does not expose H5Pset_metadata_read_attempts, so we call it in the
libhdf5 h5py itself loaded (same library, so h5py's property-list ids are valid there).

Giving up a file. Once an HDF5 write has failed (ENOSPC), HDF5 2.0 segfaults when it later
flushes or closes that file: `wmtool collect` onto a full disk died with exit 139 at the next
flush, or at interpreter exit. So after a failed write we point the file's descriptor at an
anonymous in-memory file: HDF5's closing writes land there and succeed, the real file keeps
exactly what the last successful flush put in it, plus the SWMR writer mark, so the next
writer (or `wmtool data repair`) recovers it as after a crash.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
from pathlib import Path

from wmtool.errors import WmtoolError

# Enough for a live writer's torn metadata to settle, few enough to fail in milliseconds.
SWMR_READ_ATTEMPTS = 16

_ERRNO = re.compile(r"errno = (\d+)")


def _libhdf5():
    """The libhdf5 h5py linked against (a wheel bundles its own), or None."""
    import h5py

    root = Path(h5py.__file__).parent
    candidates = [*glob.glob(str(root.parent / "h5py.libs" / "libhdf5-*.so*")),
                  *glob.glob(str(root / ".dylibs" / "libhdf5*.dylib")),
                  *glob.glob(str(root / "libhdf5*.so*"))]
    candidates = [c for c in candidates if "_hl" not in Path(c).name]
    names = candidates or ["libhdf5.so"]  # a source build of h5py uses the system library
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            lib.H5Pset_metadata_read_attempts  # noqa: B018 - probe the symbol
            return lib
        except (OSError, AttributeError):
            continue
    return None


def swmr_read_fapl(attempts: int = SWMR_READ_ATTEMPTS):
    """A file access property list for SWMR reads with at most `attempts` metadata reads."""
    from h5py._hl.files import make_fapl

    fapl = make_fapl(None, "latest", None, None, None, False)  # locking=False, as the writer
    lib = _libhdf5()
    if lib is not None:
        lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        lib.H5Pset_metadata_read_attempts.restype = ctypes.c_int
        lib.H5Pset_metadata_read_attempts(fapl.id, attempts)
    return fapl


def open_swmr_read(path: Path):
    """h5py.File(path, "r", swmr=True) that gives up on bad metadata within milliseconds."""
    import h5py
    from h5py import h5f

    try:
        fapl = swmr_read_fapl()
    except (ImportError, TypeError):  # make_fapl is h5py-internal: another h5py may differ
        return h5py.File(path, "r", libver="latest", swmr=True, locking=False)
    fid = h5f.open(os.fsencode(path), h5f.ACC_RDONLY | h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


def write_failure(path: Path, exc: BaseException) -> WmtoolError | None:
    """The one-line error for a failed HDF5 write (disk full, quota, I/O), else None.

    h5py raises these as OSError or RuntimeError, with the errno only inside the message."""
    text = str(exc)
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    code = getattr(exc, "errno", None)
    match = _ERRNO.search(text)
    if match:
        code = int(match.group(1))
    if code == 28 or "No space left" in text:
        return WmtoolError(f"{path}: disk full while writing episodes",
                           "free space or write elsewhere; episodes committed before this "
                           "are intact and the next writer recovers the file")
    if code == 122 or "quota" in text.lower():
        return WmtoolError(f"{path}: disk quota exceeded while writing episodes",
                           "free space or write elsewhere; committed episodes are intact")
    if code is not None or "write failed" in text:
        first = text.splitlines()[0] if text else type(exc).__name__
        return WmtoolError(f"{path}: writing failed ({first[:120]})",
                           "check the disk; committed episodes are intact")
    return None


def discard_and_close(f, handles=()) -> None:
    """Close an h5py file after a failed write without HDF5 writing to (or crashing on) it."""
    try:
        fd = f.id.get_vfd_handle()
        sink = os.memfd_create("wmtool-discard")
        os.dup2(sink, fd)  # the real file keeps what the last successful flush wrote
        os.close(sink)
    except (OSError, AttributeError, ValueError):
        pass  # no memfd (not Linux): close anyway and hope HDF5 copes
    for handle in handles:
        try:
            handle.id.close()
        except Exception:  # noqa: BLE001 - closing into the sink; nothing left to save
            pass
    try:
        f.close()
    except Exception:  # noqa: BLE001
        pass
