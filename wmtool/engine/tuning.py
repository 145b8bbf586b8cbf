"""CPU threads for training, measured: the count that updates this model fastest.

A tiny model can update faster on one thread than on two (splitting small operations costs
more synchronisation than it saves) while a large one needs every core, and a core another
process keeps busy makes more threads slower still. With `runtime.threads: 0` the trainer
times a few updates at each candidate count on a copy of the agent (training's weights,
optimiser state and random streams are untouched), keeps the fastest, and records the
rates in run.json. Runs that must repeat bit for bit pin the count (`runtime.threads=N`).
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable

import torch


def candidates(available: int) -> list[int]:
    """Thread counts worth timing on `available` cores."""
    return sorted({1, max(1, available // 2), available})


def measure(update: Callable[[], None], counts: list[int], rounds: int = 2,
            reps: int = 2) -> dict[int, float]:
    """Updates per second of `update()` at each thread count: median of `rounds`
    alternating blocks of `reps` updates, after one warm-up update."""
    update()
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(rounds):
        for n in counts:
            torch.set_num_threads(n)
            start = time.perf_counter()
            for _ in range(reps):
                update()
            rates[n].append(reps / (time.perf_counter() - start))
    return {n: statistics.median(r) for n, r in rates.items()}


def tune_threads(agent, batch: dict, available: int, world_model: bool = True,
                 phase: str | None = None) -> dict:
    """Set torch's thread count to the fastest for `agent`'s updates on `batch`; returns
    what was measured and chosen (for run.json)."""
    probe = copy.deepcopy(agent)
    with torch.random.fork_rng():
        rates = measure(lambda: probe.train_step(batch, world_model, phase),
                        candidates(available))
    best = max(rates, key=rates.get)
    torch.set_num_threads(best)
    return {"threads": best, "thread_policy": "measured",
            "updates_per_s_by_threads": {str(n): round(r, 3) for n, r in rates.items()}}
