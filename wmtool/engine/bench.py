"""`wmtool bench`: how fast an agent updates and acts on this machine, and how close that is
to the machine's own limit.

One process, nothing else running: replay is filled with random play in the real env, then
`runs` timed blocks of `updates` updates each (the median is reported, with the range), then
acting steps (a planner's search included). FLOPs per update come from torch's
FlopCounterMode on one eager update; achieved GFLOP/s = FLOPs x updates/s, reported next to
a plain matmul's GFLOP/s measured in the same run on the same threads (fp32, and bf16 where
the hardware has it natively). Compilation and warm-up are timed apart from the steady
state. The JSON keys are those of recipes/bench/dreamer_throughput.py since 0.1, so records
compare across versions.

Data-parallel (`--nproc N`): every rank times its own updates of batch `train.batch` (the
all-reduce of the gradients included); replayed steps/s count every rank's rows, and one
gradient all-reduce is timed on its own (`allreduce_ms`). Rank 0 reports.
"""
from __future__ import annotations

import resource
import statistics
import time

import torch

from wmtool import __version__, config, parallel
from wmtool.behavior.random import RandomPolicy
from wmtool.data.replay import Replay
from wmtool.engine.agent import Agent
from wmtool.engine.compiling import compiled_graphs
from wmtool.engine.loops import run_episodes
from wmtool.engine.train import window
from wmtool.envs.factory import make_vec
from wmtool.errors import WmtoolError
from wmtool.runtime import native_bf16, setup_torch


def matmul_gflops(dtype: torch.dtype, device: str = "cpu", n: int = 2048,
                  reps: int = 10) -> float:
    """A plain n x n matmul's GFLOP/s; a 512 probe where the dtype is emulated (bf16 without
    native support runs at ~1 GFLOP/s, and 2048^3 would take minutes)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(size: int, count: int) -> float:
        a = torch.randn(size, size, dtype=dtype, device=device)
        b = torch.randn(size, size, dtype=dtype, device=device)
        a @ b
        sync()
        start = time.perf_counter()
        for _ in range(count):
            a @ b
        sync()
        return 2 * size**3 * count / (time.perf_counter() - start) / 1e9

    probe = timed(512, 2)
    return timed(n, reps) if probe > 20 else probe


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: allocated on the GPU, resident on the CPU (env included)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Prepared:
    """An agent with a replay of random play and one update of a phase, ready to time."""

    def __init__(self, algo: str, env_id: str, recipe: str | None, size: str | None,
                 sets: list[str], phase: str | None, random_steps: int):
        self.cfg = cfg = config.compose({"env": {"id": env_id}}, recipe, algo=algo, size=size,
                                        sets=sets)
        self.device, self.threads = setup_torch(cfg.runtime.threads or parallel.rank_threads(),
                                                parallel.rank_device(cfg.runtime.device))
        torch.manual_seed(cfg.seed)
        vec = make_vec(cfg.env, 1)
        seed = parallel.rank_seed(cfg.seed)
        self.replay = Replay(vec.obs_space, vec.act_space, 10 * random_steps, seed)
        try:
            run_episodes(vec, RandomPolicy(vec.act_space, seed), steps=random_steps,
                         seed=seed, on_episode=self.replay.add)
        finally:
            vec.close()
        self.agent = agent = Agent(algo, vec.obs_space, vec.act_space, cfg, self.device)
        self.phase = phase = phase or agent.wm.phases[0]
        schedule = {p.name: (p.batch, p.length) for p in agent.wm.schedule()}
        if phase not in schedule:
            raise WmtoolError(f"--phase {phase}: {algo} has phases {', '.join(schedule)}",
                              f"pass one of {', '.join(schedule)}")
        self.batch, self.length = schedule[phase]
        self.rows = window(agent.wm, self.length)
        if len(self.replay) < self.rows:
            raise WmtoolError(f"{random_steps} random steps are fewer than one window "
                              f"({self.rows})", "raise --random-steps")
        self.done = 0

    def update(self) -> None:
        with parallel.training_step(self.cfg.seed, self.done):
            self.agent.train_step(self.replay.sample(self.batch, self.rows), phase=self.phase)
        self.done += 1


def run_bench(algo: str, env_id: str = "gym:CartPole-v1", recipe: str | None = None,
              size: str | None = None, device: str = "cpu", compile: str = "off",
              threads: int = 0, amp: bool = False, runs: int = 5, updates: int = 5,
              act_steps: int = 20, phase: str | None = None, sets: list[str] = (),
              random_steps: int = 3000, on_block=None) -> dict:
    """The measurement (module docstring); `on_block` hears how many timed blocks are done
    (0 once the replay is filled and the update warmed up)."""
    sets = [f"train.compile={compile}", f"train.amp={str(amp).lower()}",
            f"runtime.device={device}", f"runtime.threads={threads}", *sets]
    prepared = Prepared(algo, env_id, recipe, size, sets, phase, random_steps)
    cfg, agent, replay, update = prepared.cfg, prepared.agent, prepared.replay, prepared.update
    device, threads, phase = prepared.device, prepared.threads, prepared.phase
    batch, length = prepared.batch, prepared.length
    ranks = parallel.world().size
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # eager: before anything is compiled
        update()
    flops = counter.get_total_flops()
    compiled = agent.compile_hot_paths()
    graphs_before = compiled_graphs()
    started = time.perf_counter()
    update()
    sync()
    first_update_s = time.perf_counter() - started
    for _ in range(2):
        update()
    sync()
    warmup_s = time.perf_counter() - started
    graphs_after_warmup = compiled_graphs()
    rates = []
    report = on_block or (lambda done: None)
    report(0)
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(updates):
            update()
        sync()
        rates.append(updates / (time.perf_counter() - start))
        report(len(rates))
    ups = statistics.median(rates)
    recompiled = compiled_graphs() - graphs_after_warmup
    allreduce_ms, gradient_mb = allreduce_cost(agent)
    act_ms = act_latency_ms(agent, replay, act_steps)
    fp32 = matmul_gflops(torch.float32, device)
    bf16 = matmul_gflops(torch.bfloat16, device)
    replayed = batch * length * ranks
    if not parallel.world().main:
        return None
    return {
        "algo": algo, "env": env_id, "recipe": recipe, "size": size, "phase": phase,
        "device": device, "threads": threads, "amp_bf16": agent.amp,
        "native_bf16": native_bf16(device), "compile": cfg.train.compile,
        "compile_mode": agent.compile_mode,
        "compile_reason": agent.compile_reason, "compiled": compiled,
        "parameters": agent.parameter_counts()["total"], "batch": batch, "length": length,
        "ranks": ranks, "effective_batch": batch * ranks, "allreduce_ms": allreduce_ms,
        "gradient_mb": gradient_mb,
        "ms_per_update": round(1000 / ups, 2),
        "updates_per_s": round(ups, 3),
        "updates_per_s_range": [round(min(rates), 3), round(max(rates), 3)],
        "replayed_steps_per_s": round(ups * replayed),
        "imagined_state_steps_per_s": round(ups * agent.behavior.imagined_per_update() * ranks),
        "act_ms_per_step": round(act_ms, 3),
        "gflop_per_update": round(flops / 1e9, 2),
        "achieved_gflops": round(flops / 1e9 * ups, 1),
        "matmul_gflops_fp32": round(fp32, 1), "matmul_gflops_bf16": round(bf16, 1),
        "percent_of_fp32_matmul": round(100 * flops / 1e9 * ups / fp32, 1),
        "first_update_s": round(first_update_s, 2), "warmup_s": round(warmup_s, 2),
        "compile_s": round(max(0.0, first_update_s - 1 / ups), 2),
        "graphs_compiled": graphs_after_warmup - graphs_before,
        "graphs_compiled_while_timed": recompiled,
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__, "wmtool": __version__,
        "timed": f"median of {runs} blocks of {updates} updates after 3 warm-up updates",
    }


def allreduce_cost(agent: Agent, reps: int = 10) -> tuple[float | None, float]:
    """Median milliseconds of one all-reduce of every trained parameter's gradient (what one
    update sends, its optimiser steps together) over the ranks, and its size in MB (fp32);
    None in one process."""
    params = [p for ps in agent.params.values() for p in ps]
    megabytes = round(sum(p.numel() * p.element_size() for p in params) / 1e6, 3)
    if parallel.world().size == 1:
        return None, megabytes
    saved = [p.grad for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    times = []
    for _ in range(reps + 2):  # two warm-up rounds
        parallel.barrier()
        start = time.perf_counter()
        parallel.average_gradients(params)
        times.append(time.perf_counter() - start)
    for p, grad in zip(params, saved):
        p.grad = grad
    return round(1000 * statistics.median(times[2:]), 3), megabytes


def act_latency_ms(agent: Agent, replay: Replay, steps: int) -> float:
    """Median milliseconds per acting step for one env (a planner's search included)."""
    row = replay.sample(1, 1)
    obs = {k: v[:, 0] for k, v in row.items()}
    carry, times = None, []
    for i in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        _, carry = agent.policy_step(obs, carry, "sample")  # returns numpy: synchronised
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
