"""Data-parallel training on torch.distributed: which rank this process is, and the few
collectives an update needs.

`torchrun` (or `wmtool train --nproc N`, which runs torchrun's launcher in process) starts
one process per rank and sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR; `join` then opens
the process group (gloo on CPU, NCCL on CUDA). In a process that did not join, every function
here is the single-process identity, so model code calls them unconditionally.

N ranks with batch B/N each make the same update as one process with batch B, because
- gradients are averaged over ranks (`average_gradients`, one all-reduce per optimiser step);
- batch statistics cover the whole batch: percentiles over every rank's values
  (`gather_rows`), masked means over every rank's count (`masked_mean`);
- the noise of an update (latent samples, actions in imagination, dropout, augmentation) is
  drawn for the whole batch from a generator seeded alike on every rank, and each rank keeps
  its own rows (`rand`, `randn_like`, ... inside `training_step`).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from wmtool.errors import WmtoolError

# A rank that waits this long in a collective stops with an error instead of hanging (rank
# 0 evaluates and checkpoints while the others wait at their next update).
TIMEOUT = datetime.timedelta(hours=1)

# Rank r's envs, replay sampling and exploration use the run seed plus r times this: apart
# from rank 0's seeds (the run seed plus env index and agent steps so far) for any run of
# fewer agent steps, and below the evaluation seeds (engine/train.py, 2**30) for 63 ranks.
RANK_SEED_STRIDE = 2**24


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, evaluates and writes checkpoints."""
        return self.rank == 0


_CURRENT = {"world": World(), "sharding": False, "drawing": False}


class LostRank(WmtoolError):
    """A collective failed: another rank stopped or failed (torchrun stops the rest)."""


LOST_RANK_EXIT = 3  # the exit code of a rank that lost the others (not the one that failed)


def _collective(call: Callable[[], object]):
    try:
        return call()
    except RuntimeError as exc:  # gloo and NCCL report a vanished peer as RuntimeError
        first = (str(exc).splitlines() or [""])[0][:160]
        raise LostRank(f"rank {world().rank} lost contact with the other ranks ({first})",
                       "the launcher names the rank that stopped first") from exc


def world() -> World:
    return _CURRENT["world"]


def launched() -> bool:
    """True in a worker that torchrun (or `--nproc`) started."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def rank_device(device: str) -> str:
    """One CUDA device per rank on each node; CPU ranks share the host."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and launched():
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def join(device: str) -> World:
    """Open the process group torchrun described in the environment."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend, timeout=TIMEOUT)
    _CURRENT["world"] = World(dist.get_rank(), dist.get_world_size())
    return world()


def leave() -> None:
    """Close the process group; `world()` still names the rank this process was (for its
    last words)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def backend() -> str:
    return dist.get_backend() if dist.is_initialized() else "none"


def rank_threads() -> int:
    """CPU threads per rank: the cores this process may use, shared by the node's ranks
    (0 = the usual choice, when this process is not a rank)."""
    if not launched():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def rank_seed(seed: int) -> int:
    """This rank's seed for what must differ between ranks: envs, replay sampling, acting."""
    return seed + world().rank * RANK_SEED_STRIDE


# -- collectives ---------------------------------------------------------------------------
def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each gradient by its mean over ranks, in one all-reduce of one flat buffer.
    Every rank runs the same graph, so the same parameters have gradients on every rank (a
    mismatch fails the all-reduce); those without one stay None, as in one process."""
    w = world()
    params = [p for p in params if p.grad is not None]
    if w.size == 1 or not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    _collective(lambda: dist.all_reduce(flat))
    flat.div_(w.size)
    for p, part in zip(params, flat.split([p.numel() for p in params])):
        p.grad = part.view_as(p)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` concatenated along dim 0 (for statistics of the whole batch; no
    gradient flows back)."""
    w = world()
    if w.size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(w.size)]
    _collective(lambda: dist.all_gather(parts, x.detach().contiguous()))
    return torch.cat(parts)


def total(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over ranks (no gradient)."""
    if world().size == 1:
        return x
    x = x.detach().clone()
    _collective(lambda: dist.all_reduce(x))
    return x


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """The mean of `x` where `mask` is 1, over the whole batch of all ranks: this rank's sum
    over the average count per rank, so that the ranks' mean of it (what averaging the
    gradients takes) is the sum over all ranks divided by the count over all ranks."""
    count = mask.sum() if dim is None else mask.sum(dim)
    share = total(count).clamp(min=1.0) / world().size
    return ((x * mask).sum() if dim is None else (x * mask).sum(dim)) / share


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over every rank's batch as the value, with this rank's own mean's
    gradient: a nonlinearity applied to it (free-nats clipping) then decides on the whole
    batch, and averaging the ranks' gradients gives one process's gradient."""
    local = x.mean()
    return local + (total(local.detach()) / world().size - local).detach()


def broadcast_(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's `x` on every rank, in place (state an update changes outside gradients)."""
    if world().size > 1:
        _collective(lambda: dist.broadcast(x, 0))
    return x


def gather_objects(obj) -> list:
    """Every rank's picklable `obj`, in rank order (host bookkeeping: episode returns, RNG
    states); every rank must call it at the same point."""
    w = world()
    if w.size == 1:
        return [obj]
    out: list = [None] * w.size
    _collective(lambda: dist.all_gather_object(out, obj))
    return out


def broadcast_object(obj):
    """Rank 0's `obj` on every rank."""
    if world().size == 1:
        return obj
    box = [obj]
    _collective(lambda: dist.broadcast_object_list(box, 0))
    return box[0]


def check_same_weights(module: torch.nn.Module, tolerance: float = 1e-6) -> None:
    """Every rank steps with the same averaged gradients, so the weights must agree; a
    difference is a bug (state an update changed outside the gradients) and stops the run
    before a checkpoint keeps rank 0's version of it."""
    if world().size == 1:
        return
    with torch.no_grad():
        mine = sum(float(p.double().abs().sum()) for p in module.parameters())
    sums = gather_objects(mine)
    worst = max(range(len(sums)), key=lambda r: abs(sums[r] - sums[0]))
    if abs(sums[worst] - sums[0]) > tolerance * max(abs(sums[0]), 1.0):
        raise WmtoolError(f"rank {worst}'s weights differ from rank 0's (sum of |w| "
                          f"{sums[worst]:.9g} vs {sums[0]:.9g})",
                          "a bug in data-parallel training: please report it; the last "
                          "checkpoint is intact")


def sum_ints(values: list[int]) -> list[int]:
    """Element-wise sums over ranks of a few host integers (the run's shared clock)."""
    if world().size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.int64, device=_collective_device())
    _collective(lambda: dist.all_reduce(t))
    return t.tolist()


def _collective_device() -> str:
    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


def barrier() -> None:
    if world().size > 1:
        _collective(dist.barrier)


# -- the noise of an update ----------------------------------------------------------------
def step_seed(seed: int, update: int) -> int:
    return int(np.random.SeedSequence([seed, update]).generate_state(1, np.uint64)[0] >> 1)


@contextlib.contextmanager
def training_step(seed: int, update: int) -> Iterator[None]:
    """Inside: torch's generator is seeded from (run seed, update), alike on every rank, and
    the noise helpers below draw for the whole batch and keep this rank's rows. Outside it
    the generator continues as before (acting keeps its own, rank-distinct stream)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(step_seed(seed, update))
        _CURRENT["sharding"] = True
        try:
            yield
        finally:
            _CURRENT["sharding"] = False


def drawing() -> bool:
    """Whether a helper below is drawing right now (wmtool/noise_audit.py asks)."""
    return _CURRENT["drawing"]


@contextlib.contextmanager
def _drawing() -> Iterator[None]:
    """Marks a draw made by the helpers below (what `noise_audit` lets through)."""
    outer = _CURRENT["drawing"]
    _CURRENT["drawing"] = True
    try:
        yield
    finally:
        _CURRENT["drawing"] = outer


def _rows(draw: Callable[[tuple], torch.Tensor], shape, dim: int) -> torch.Tensor:
    w = world()
    shape = tuple(shape)
    with _drawing():
        if w.size == 1 or not _CURRENT["sharding"]:
            return draw(shape)
        n = shape[dim]
        full = draw(shape[:dim] + (n * w.size,) + shape[dim + 1:])
    return full.narrow(dim, w.rank * n, n)


def rand(shape, device, dtype: torch.dtype | None = None, dim: int = 0) -> torch.Tensor:
    """Uniform [0, 1) noise of `shape`, whose batch runs along `dim`."""
    return _rows(lambda s: torch.rand(s, device=device, dtype=dtype), shape, dim)


def rand_like(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return rand(x.shape, x.device, x.dtype, dim)


def randn_like(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return _rows(lambda s: torch.randn(s, device=x.device, dtype=x.dtype), x.shape, dim)


def randint(high: int, shape, device, dim: int = 0) -> torch.Tensor:
    return _rows(lambda s: torch.randint(0, high, s, device=device), shape, dim)


# Noise that belongs to no batch row (which ensemble members a target uses, which code a
# restart moves) must be the same on every rank: drawn whole from the generator that
# `training_step` seeds alike everywhere.
def alike_randperm(n: int, device) -> torch.Tensor:
    """A random permutation of range(n), the same on every rank inside an update."""
    with _drawing():
        return torch.randperm(n, device=device)


def alike_randint(high: int, shape, device) -> torch.Tensor:
    """Integers in [0, high), the same on every rank inside an update."""
    with _drawing():
        return torch.randint(0, high, tuple(shape), device=device)
