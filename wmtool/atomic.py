"""Files that appear under their name only when complete."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def written_whole(out: str | Path):
    """A temporary path beside OUT (same suffix: writers that pick a format by it still
    do), moved to OUT only when the block ends without an error. A failure or Ctrl-C
    removes it, so OUT is never a 0-byte or half-written file (as `dream --render` once left
    after Ctrl-C) and an existing OUT stays as it was."""
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    tmp.unlink(missing_ok=True)  # left by a process that was killed: nothing in it counts
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
