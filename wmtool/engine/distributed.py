"""Starting data-parallel training: `wmtool train --nproc N` runs torchrun's launcher in
process (one worker process per rank, each running the same `wmtool train` command), and a
worker joins the process group torchrun describes. Multi-node runs start the workers with
`torchrun` itself; everything after the join is the same (wmtool/parallel.py).
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import sys
import uuid
from typing import Iterator, NoReturn

from wmtool import parallel
from wmtool.errors import Terminated, WmtoolError


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


def without_nproc(argv: list[str]) -> list[str]:
    """The command line each worker runs: the same one, minus `--nproc N`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def describe(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}; its error is above"


def launch(nproc: int, argv: list[str], resume_hint: str = "") -> None:
    """Run `wmtool <argv>` as `nproc` ranks on this machine; a failed rank stops them all
    and is reported as one line naming it."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in list(logging.root.manager.loggerDict):  # the outcome is reported below
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # no per-rank gloo banners
    os.environ["WMTOOL_NPROC_LAUNCHER"] = "1"  # cli/common.py: ranks leave reports to us
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=f"wmtool-{uuid.uuid4().hex[:8]}", rdzv_backend="c10d",
                          rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, sys.executable)("-m", "wmtool", *without_nproc(argv))
    except SignalException as exc:  # Ctrl-C or SIGTERM: the ranks were stopped
        raise (KeyboardInterrupt() if exc.sigval == signal.SIGINT else Terminated()) from None
    except ChildFailedError as exc:
        # the rank that failed first, not one that then lost contact with it
        rank, failure = min(exc.failures.items(), key=lambda kv: (
            kv[1].exitcode == parallel.LOST_RANK_EXIT, kv[1].timestamp))
        raise WmtoolError(f"rank {rank} of {nproc} failed ({describe(failure.exitcode)}); "
                          "the other ranks were stopped", resume_hint and
                          f"finished episodes and the last checkpoint are kept: {resume_hint}"
                          ) from None
