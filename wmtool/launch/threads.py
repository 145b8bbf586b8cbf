"""CPU threads for training, measured: the count that updates this model fastest.

A tiny model can update faster on one thread than on two (splitting small operations costs
more synchronisation than it saves) while a large one needs every core. With
`runtime.threads: 0` the trainer times a few updates at each candidate count on a copy of
the agent (training's weights, optimiser state and random streams are untouched), keeps the
fastest, and records the rates in run.json. Runs that must repeat bit for bit pin the count
(`runtime.threads=N`).

The probe costs at most a few seconds: its blocks are sized from one timed update, and a
model whose single update is slow is not probed at all (every core wins there). It also
watches the machine: a core another process keeps busy makes several threads collapse (10-25x
slower), which would make the probe pick one thread for a model that two serve better once
the machine is quiet. So the CPU time other processes take during the probe is read from
/proc/stat; if they held a core's share (`BUSY_CORES`), or several threads read far below one
(`COLLAPSED`, which also ends the timing early), the reading is taken again once if the load
has passed by then, and otherwise discarded: the choice then follows from the one-thread
time per update (`MANY_THREADS_FROM`: below it one thread, at or above it every core),
which is what quiet probes on 2-core machines pick (recipes/bench/thread_probe.py).
"""
from __future__ import annotations

import copy
import os
import time
from typing import Callable

import torch

PROBE_SECONDS = 4.0        # the budget for the timed blocks (the warm-up update comes first)
NOT_PROBED_FROM = 0.5      # s per update on one thread: every core wins, no probe needed
                           # (and probing would cost more than 5 s; `xs`: 0.7 s, 2 threads win)
MANY_THREADS_FROM = 0.03   # s per update on one thread: from here several threads win
BUSY_CORES = 0.3           # other processes' CPU use during the probe, in cores
COLLAPSED = 0.5            # several threads below this share of one thread's rate: suspect


def candidates(available: int) -> list[int]:
    """Thread counts worth timing on `available` cores."""
    return sorted({1, max(1, available // 2), available})


def _busy_seconds() -> tuple[float, float]:
    """(all CPUs' busy time, this process's CPU time), both in seconds."""
    try:
        fields = open("/proc/stat").readline().split()[1:]
    except OSError:
        return 0.0, 0.0
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    hz = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return (sum(ticks[:8]) - idle) / hz, own.user + own.system


def others_cores(sample: Callable[[], None]) -> tuple[float, float]:
    """Run sample(); (cores other processes used meanwhile, its wall seconds)."""
    busy0, own0 = _busy_seconds()
    start = time.perf_counter()
    sample()
    wall = time.perf_counter() - start
    busy1, own1 = _busy_seconds()
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / max(wall, 1e-6), wall


def measure(update: Callable[[], None], counts: list[int], budget: float = PROBE_SECONDS
            ) -> tuple[dict[int, float], float]:
    """Updates per second of `update()` at each thread count, best of two alternating
    rounds of blocks of `budget / (2 * len(counts))` seconds each (a block ends after its
    first update past that), and the cores other processes used meanwhile."""
    slot = budget / (2 * len(counts))
    rates: dict[int, float] = {n: 0.0 for n in counts}
    watch = {"since": _busy_seconds(), "at": time.perf_counter()}

    def blocks():
        for _ in range(2):
            for n in counts:
                if n > 1 and _busy_now(watch):
                    return  # several threads would collapse on the busy core: not worth it
                torch.set_num_threads(n)
                done, start = 0, time.perf_counter()
                while done == 0 or time.perf_counter() - start < slot:
                    update()
                    done += 1
                rates[n] = max(rates[n], done / (time.perf_counter() - start))
                if n > 1 and rates[n] < COLLAPSED * rates[counts[0]]:
                    return  # collapsed: more blocks would only spend the budget
    others, _ = others_cores(blocks)
    return rates, others


def _busy_now(watch: dict) -> bool:
    """Whether other processes held a core's share since the probe began."""
    busy0, own0 = watch["since"]
    busy1, own1 = _busy_seconds()
    wall = max(time.perf_counter() - watch["at"], 1e-6)
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / wall >= BUSY_CORES


def _timed(update: Callable[[], None]) -> float:
    start = time.perf_counter()
    update()
    return time.perf_counter() - start


def suspect(rates: dict[int, float], others: float) -> str:
    """Why a probe's reading cannot be trusted ("" when it can)."""
    if others >= BUSY_CORES:
        return f"other processes used {others:.1f} cores"
    if any(rates[n] < COLLAPSED * rates[1] for n in rates if n > 1):  # 0: not timed
        return "several threads collapsed"
    return ""


def decide(rates: dict[int, float], others: float, available: int) -> tuple[int, str]:
    """The thread count, and how it was chosen."""
    why = suspect(rates, others)
    if not why:
        return max(rates, key=rates.get), "measured"
    rule = available if 1.0 / max(rates[1], 1e-9) >= MANY_THREADS_FROM else 1
    return rule, f"by update time ({why} during the probe, so its reading was discarded)"


def tune_threads(agent, batch: dict, available: int, world_model: bool = True,
                 phase: str | None = None) -> dict:
    """Set torch's thread count to the fastest for `agent`'s updates on `batch`; returns
    what was measured and chosen (for run.json)."""
    probe = copy.deepcopy(agent)
    counts = candidates(available)
    with torch.random.fork_rng():
        update = lambda: probe.train_step(batch, world_model, phase)  # noqa: E731
        torch.set_num_threads(1)
        _timed(update)  # the first update allocates and warms caches
        per_update = _timed(update)
        if per_update >= NOT_PROBED_FROM:
            torch.set_num_threads(available)
            return {"threads": available, "thread_policy": "every core (one update takes "
                    f"{per_update:.1f} s on one thread: not probed)"}
        rates, others = measure(update, counts)
        if suspect(rates, others) and others_cores(lambda: time.sleep(0.3))[0] < BUSY_CORES:
            rates, others = measure(update, counts, budget=PROBE_SECONDS / 2)  # it passed
    best, policy = decide(rates, others, available)
    torch.set_num_threads(best)
    trusted = rates[best] if policy == "measured" else rates[1]  # a discarded reading: 1 thread's
    return {"threads": best, "thread_policy": policy,
            "updates_per_s_by_threads": {str(n): round(r, 3) for n, r in rates.items() if r},
            "expected_updates_per_s": round(trusted, 3),
            "probe_other_cores": round(others, 2)}
