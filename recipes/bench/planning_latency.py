"""A planner's latency per action on this CPU (PlaNet's CEM, TD-MPC2's MPPI), at the
paper's settings and at the CPU recipe's (recipes/exp/<algo>__dmc_proprio_cpu.yaml), for an
untrained model of the given task (the cost does not depend on the weights).

Usage: .venv/bin/python recipes/bench/planning_latency.py [TASK] [--algo planet|tdmpc2]
       [--size 1m] [--threads N] [--repeats R] [--record]
Prints the median and spread of R timed actions (after 3 warm-up actions) per setting;
`--record` writes benchmarks/results/planning-DATE-COMMIT.json with the machine (torch's cpu
capability, the fp32 matmul peak). Run it alone: the other core's load changes the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from wmtool import config
from wmtool.engine.agent import Agent
from wmtool.envs.factory import make_vec
from wmtool.runtime import setup_torch


def time_actions(algo: str, cfg, repeats: int) -> tuple[list[float], str]:
    vec = make_vec(cfg.env, 1)
    try:
        agent = Agent(algo, vec.obs_space, vec.act_space, cfg)
        obs, carry, times = vec.reset(0), None, []
        for i in range(repeats + 3):
            tick = time.perf_counter()
            action, carry = agent.policy_step(obs, carry, "greedy")
            if i >= 3:
                times.append(1000 * (time.perf_counter() - tick))
            obs = vec.step(action)
    finally:
        vec.close()
    return times, agent.behavior.describe()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", nargs="?", default="cartpole-balance")
    parser.add_argument("--algo", default="planet")
    parser.add_argument("--size", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--concurrent", default="nothing")
    args = parser.parse_args()
    setup_torch(args.threads, "cpu")
    env = {"env": {"id": f"dmc:{args.task}"}}
    algo, size = args.algo, args.size
    settings = {"paper": config.compose(env, algo=algo, size=size),
                "cpu recipe": config.compose(env, f"{algo}__dmc_proprio_cpu", algo=algo,
                                             size=size)}
    print(f"machine: {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s); "
          f"{algo} {size or ''} on dmc:{args.task}, median of {args.repeats} actions")
    rows = []
    for name, cfg in settings.items():
        times, planner = time_actions(algo, cfg, args.repeats)
        q1, q3 = np.percentile(times, [25, 75])
        print(f"{name:>10}: {planner}: {statistics.median(times):.1f} ms per action "
              f"(quartiles {q1:.1f}-{q3:.1f})")
        rows.append({"setting": name, "planner": planner,
                     "ms_per_action_median": round(statistics.median(times), 2),
                     "ms_quartiles": [round(q1, 2), round(q3, 2)], "actions": len(times)})
    if args.record:
        import sys
        from pathlib import Path

        from wmtool.benchmarks.record import header, save
        from wmtool.engine.bench import matmul_gflops

        command = "python recipes/bench/planning_latency.py " + " ".join(sys.argv[1:])
        save({**header("planning", command, args.concurrent, threads=args.threads),
              "algo": algo, "task": f"dmc:{args.task}", "size": size, "results": rows,
              "matmul_gflops_fp32": round(matmul_gflops(torch.float32), 1)},
             Path(__file__).resolve().parents[2] / "benchmarks" / "results", "planning")


if __name__ == "__main__":
    main()
