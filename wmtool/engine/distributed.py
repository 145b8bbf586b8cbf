"""A data-parallel rank's side of a run: joining the process group torchrun describes,
stopping together, and leaving. The launcher that starts the ranks (`wmtool train --nproc
N`) is wmtool/launch/torchrun.py; multi-node runs start them with `torchrun` itself;
everything after the join is the same (wmtool/parallel.py).
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import sys
from typing import Iterator, NoReturn

from wmtool import parallel
from wmtool.errors import Terminated


def join_if_launched(device: str) -> parallel.World:
    """In a torchrun worker: join its process group (once) and end with the launcher;
    elsewhere: one process."""
    if parallel.launched() and parallel.world().size == 1 and int(os.environ["WORLD_SIZE"]) > 1:
        parallel.join(parallel.rank_device(device))
        _die_with_launcher()
    return parallel.world()


def stop_together() -> None:
    """In a rank of a group: Ctrl-C and SIGTERM stop only where the ranks agree (below)."""
    if parallel.world().size > 1:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _request_stop)


# A rank that stops where it is leaves the others waiting in a collective, and what it would
# save disagrees with theirs. So a rank's first Ctrl-C or SIGTERM is only noted; the ranks
# share their notes at the next step of the run's clock (engine/train.py) and all stop there
# together, as one process stops: checkpoint, stores closed, status "interrupted".
_STOP = {"signal": 0}


def _request_stop(signum, frame) -> None:
    """Note the first signal. A second Ctrl-C stops this rank at once; a repeated SIGTERM
    changes nothing (a rank can get more than one when its launcher dies, and supervisors
    escalate to SIGKILL themselves)."""
    if not _STOP["signal"]:
        _STOP["signal"] = signum
    elif signum == signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise KeyboardInterrupt()


def stop_flags() -> list[int]:
    """[Ctrl-C noted, SIGTERM noted] on this rank, as integers to sum over the ranks."""
    return [int(_STOP["signal"] == signal.SIGINT), int(_STOP["signal"] == signal.SIGTERM)]


def stop_exception(sigint: int, sigterm: int) -> KeyboardInterrupt | None:
    """What the ranks raise together once any of them noted a signal (summed flags)."""
    if sigterm:
        return Terminated()
    return KeyboardInterrupt() if sigint else None


def _die_with_launcher() -> None:
    """SIGTERM to this rank when its launcher dies, even by SIGKILL: ranks run in sessions
    of their own, so killing the launcher's process group does not reach them."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the launcher died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def leaving() -> Iterator[None]:
    """Leave the process group at the end: after every rank finished (rank 0 evaluates
    last), or at once after a failure; a group left open aborts the process at exit."""
    try:
        yield
        parallel.barrier()
    finally:
        parallel.leave()


def in_a_group() -> bool:
    """True in a worker of a data-parallel run of more than one rank."""
    return parallel.launched() and int(os.environ["WORLD_SIZE"]) > 1


def end_rank(code: object) -> NoReturn:
    """A rank's last step, once its command returned: Python's exit handlers run and the
    streams are flushed, then the process ends without finalizing the interpreter. Gloo's
    worker threads may still be freeing a finished collective whose tensors Python owns; if
    that happens while the interpreter finalizes, the thread dies taking the GIL and the
    rank aborts (SIGABRT, "terminate called without an active exception", about 1 run in
    10 on a busy machine)."""
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)
