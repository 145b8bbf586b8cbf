"""Seeding, device and CPU-thread selection, and run directories.

torch's default thread count collapses (10-25x slower, measured here) when another process
keeps a core busy, so the count is chosen deliberately and printed: one thread per physical
core available to this process, or `runtime.threads` when set.
"""
from __future__ import annotations

import datetime
import os
import random
from pathlib import Path

import numpy as np

from wmtool.errors import WmtoolError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def choose_threads(requested: int = 0) -> int:
    if requested > 0:
        return requested
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, available or 1)


def setup_torch(threads: int = 0, device: str = "cpu") -> tuple[str, int]:
    """Set torch's CPU threads and resolve the device; returns (device, threads)."""
    import torch

    n = choose_threads(threads)
    torch.set_num_threads(n)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WmtoolError(f"runtime.device={device} but torch sees no CUDA device",
                          "use --set runtime.device=cpu")
    return device, n


def default_run_dir(algo: str, env_id: str, seed: int, root: str | Path = "runs") -> Path:
    """runs/<algo>/<suite>-<task>/<seed>-<timestamp>/ (DESIGN.md §6)."""
    suite, _, task = env_id.partition(":")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_task = task.replace("/", "_")
    return Path(root) / algo / f"{suite}-{safe_task}" / f"{seed}-{stamp}"
