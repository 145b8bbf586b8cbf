"""Update and acting speed, this checkout against an older one, alternating on this machine.

    python recipes/bench/speed.py --baseline DIR [--rounds 3] [--only NAME ...]
        [--out benchmarks/results]

DIR is another checkout of wmtool (e.g. `git worktree add --detach /tmp/base <commit>`).
For every setting below, each round runs one measuring process on the baseline and one on
this checkout, one after the other (never two at once); the record keeps every row, the
medians and their ratio, the commits, the machine (CPU, torch's cpu capability, the fp32
and bf16 matmul peaks measured in each process) and the command. Both sides are timed by
the same code (`--worker`, below), through APIs both versions have, with the thread count
pinned; `wmtool bench` is the user-facing form of the same measurement. Run it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]

# name: (algo, env, recipe, size, threads, --set overrides)
SETTINGS = {
    "demo, 1 thread": ("dreamerv3", "gym:CartPole-v1", "dreamerv3__gym_cartpole_demo", "debug",
                       1, []),
    "demo, 2 threads": ("dreamerv3", "gym:CartPole-v1", "dreamerv3__gym_cartpole_demo",
                        "debug", 2, []),
    "xs fp32, 2 threads": ("dreamerv3", "gym:CartPole-v1", None, "xs", 2, []),
    "xs bf16, 2 threads": ("dreamerv3", "gym:CartPole-v1", None, "xs", 2, ["train.amp=true"]),
    "tdmpc2 1m, 2 threads": ("tdmpc2", "dmc:cartpole-balance", None, "1m", 2, []),
    # 64x64 pixels through the conv encoder and decoder (the issue-42 reference setting)
    "pixels 64x64, 1 thread": ("dreamerv3", "dmc:cartpole-swingup", "dreamerv3__dmc_proprio_cpu",
                               None, 1, ["env.obs=pixels"]),
    "pixels 64x64, 2 threads": ("dreamerv3", "dmc:cartpole-swingup",
                                "dreamerv3__dmc_proprio_cpu", None, 2, ["env.obs=pixels"]),
    # the pixel suite's own recipe (issue 42): one thread per run as the suite runs it, and two
    "pixel recipe, 1 thread": ("dreamerv3", "dmc:cartpole-swingup", "dreamerv3__dmc_vision_cpu",
                               None, 1, []),
    "pixel recipe, 2 threads": ("dreamerv3", "dmc:cartpole-swingup", "dreamerv3__dmc_vision_cpu",
                                None, 2, []),
    # as the held-out suite runs it: the CPU recipe's MPPI, one thread per run
    "tdmpc2 1m cpu recipe, 1 thread": ("tdmpc2", "dmc:walker-walk", "tdmpc2__dmc_proprio_cpu",
                                       "1m", 1, []),
}


def worker(algo: str, env: str, recipe: str | None, size: str | None, threads: int,
           sets: list[str], runs: int, updates: int, act_steps: int) -> dict:
    """Time updates and acting with whatever wmtool is on sys.path; print one JSON row."""
    import torch

    from wmtool import config
    from wmtool.behavior.random import RandomPolicy
    from wmtool.data.replay import Replay
    from wmtool.engine.agent import Agent
    from wmtool.engine.loops import run_episodes
    from wmtool.engine.train import window
    from wmtool.envs.factory import make_vec

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = config.compose({"env": {"id": env}}, recipe, algo=algo, size=size, sets=sets)
    vec = make_vec(cfg.env, 1)
    replay = Replay(vec.obs_space, vec.act_space, 100_000)
    run_episodes(vec, RandomPolicy(vec.act_space, 0), steps=3000, seed=0, on_episode=replay.add)
    vec.close()
    agent = Agent(algo, vec.obs_space, vec.act_space, cfg)
    rows = window(agent.wm, cfg.train.length)

    def update():
        agent.train_step(replay.sample(cfg.train.batch, rows))

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        update()
    for _ in range(2):
        update()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(updates):
            update()
        rates.append(updates / (time.perf_counter() - start))
    obs = {k: v[:, 0] for k, v in replay.sample(1, 1).items()}
    carry, times = None, []
    for i in range(act_steps + 2):
        start = time.perf_counter()
        _, carry = agent.policy_step(obs, carry, "sample")
        if i >= 2:
            times.append(1000 * (time.perf_counter() - start))
    ups = statistics.median(rates)
    fp32 = matmul(torch.float32)
    return {"updates_per_s": round(ups, 3), "updates_per_s_blocks": [round(r, 3) for r in rates],
            "act_ms_per_step": round(statistics.median(times), 3),
            "gflop_per_update": round(counter.get_total_flops() / 1e9, 2),
            "achieved_gflops": round(counter.get_total_flops() / 1e9 * ups, 1),
            "matmul_gflops_fp32": round(fp32, 1),
            "percent_of_fp32_matmul": round(100 * counter.get_total_flops() / 1e9 * ups / fp32,
                                            1),
            "matmul_gflops_bf16": round(matmul(torch.bfloat16), 1),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "parameters": sum(p.numel() for p in agent.parameters() if p.requires_grad)}


def matmul(dtype, n: int = 2048, reps: int = 10) -> float:
    """engine/bench.py's matmul_gflops, kept here: the worker runs baseline checkouts that
    predate it."""
    import torch

    def timed(size: int, count: int) -> float:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(count):
            a @ b
        return 2 * size**3 * count / (time.perf_counter() - start) / 1e9

    probe = timed(512, 2)
    return timed(n, reps) if probe > 20 else probe


def measure(tree: Path, name: str, runs: int, updates: int) -> dict:
    algo, env, recipe, size, threads, sets = SETTINGS[name]
    spec = json.dumps([algo, env, recipe, size, threads, sets, runs, updates, 20])
    environ = {**os.environ, "PYTHONPATH": str(tree), "MUJOCO_GL": "egl"}
    out = subprocess.run([sys.executable, __file__, "--worker", spec], cwd=tree, env=environ,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} on {tree} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5, help="timed blocks per process")
    p.add_argument("--updates", type=int, default=5, help="updates per block")
    p.add_argument("--only", nargs="*", default=None, help="setting names (default: all)")
    p.add_argument("--out", type=Path, default=HERE / "benchmarks" / "results")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(*json.loads(a.worker))))
        return
    if a.baseline is None:
        p.error("--baseline DIR is required")
    from wmtool.benchmarks.record import head_commit, header, isa_limits, save

    names = a.only or list(SETTINGS)
    trees = {"baseline": a.baseline.resolve(), "current": HERE}
    rows = {name: {"baseline": [], "current": []} for name in names}
    for r in range(a.rounds):
        for name in names:
            for side, tree in trees.items():
                rows[name][side].append(measure(tree, name, a.runs, a.updates))
                print(f"round {r + 1} {name} {side}: {rows[name][side][-1]['updates_per_s']} "
                      f"updates/s, {rows[name][side][-1]['act_ms_per_step']} ms/act",
                      file=sys.stderr)
    results = []
    for name in names:
        algo, env, recipe, size, threads, sets = SETTINGS[name]
        med = {side: {k: statistics.median(row[k] for row in rows[name][side])
                      for k in ("updates_per_s", "act_ms_per_step", "percent_of_fp32_matmul")}
               for side in trees}
        results.append({"setting": name, "algo": algo, "env": env, "recipe": recipe,
                        "size": size, "threads": threads, "sets": sets, "median": med,
                        "update_speedup": round(med["current"]["updates_per_s"]
                                                / med["baseline"]["updates_per_s"], 3),
                        "act_speedup": round(med["baseline"]["act_ms_per_step"]
                                             / med["current"]["act_ms_per_step"], 3),
                        "rows": rows[name]})
    save({**header("speed", " ".join(["python", *sys.argv]), "nothing (run alone)", tree=HERE),
          "baseline_commit": head_commit(trees["baseline"]),
          "protocol": f"{a.rounds} alternating rounds; per process {a.runs} blocks of "
                      f"{a.updates} updates after 3 warm-up updates (median), 20 acting "
                      "steps for one env after 2 warm-up steps (median)",
          "results": results}, a.out,
         # a capped run gets its own file: "speed-avx2-DATE-COMMIT"
         "-".join(["speed", *sorted({v.lower() for v in isa_limits().values()})]))


if __name__ == "__main__":
    main()
