"""`wmtool train --nproc N`: torchrun's launcher run in process, one worker process per rank,
each running the same `wmtool` command without `--nproc` (it then joins the group:
wmtool/engine/distributed.py). A failed rank stops the others and is reported as one line.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import uuid

from wmtool import parallel
from wmtool.errors import Terminated, WmtoolError


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
