"""Seeding, device and CPU-thread selection, native bf16, and run directories.

torch's default thread count collapses (10-25x slower, measured here) when another process
keeps a core busy, so the count is chosen deliberately and printed: `runtime.threads` when
set; otherwise one per core available to this process to start with, and training then
measures which count updates its model fastest (wmtool/launch/threads.py).
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


def native_bf16(device: str) -> str | None:
    """What multiplies bf16 natively on `device` (AMX, AVX512-BF16, CUDA), or None where
    bf16 would be emulated: on an AVX2-only CPU a bf16 matmul runs ~100x slower than fp32."""
    import torch

    if device.startswith("cuda"):
        return "CUDA" if torch.cuda.is_bf16_supported() else None
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


def check_bf16(device: str) -> str:
    """`train.amp` only where bf16 is native; returns what provides it."""
    provider = native_bf16(device)
    if provider is None:
        raise WmtoolError(f"train.amp=true but {device} has no native bf16 (it would be "
                          "emulated, far slower than fp32)", "use --set train.amp=false")
    return provider


def default_run_dir(algo: str, env_id: str, seed: int, root: str | Path = "runs") -> Path:
    """runs/<algo>/<suite>-<task>/<seed>-<timestamp>/ (docs/commands.md, "Run directories")."""
    suite, _, task = env_id.partition(":")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_task = task.replace("/", "_")
    return Path(root) / algo / f"{suite}-{safe_task}" / f"{seed}-{stamp}"
