"""One table from learning-benchmark run directories: greedy return vs env steps per
algorithm and seed (agent steps x the run's action repeat), then the final and best
evaluation, the wall-clock minutes and the first env step at which the return reached
--target.

Usage: .venv/bin/python recipes/bench/family_table.py RUN_DIR... [--grid 8000,16000,...]
       [--target 700]
A grid cell is the latest evaluation at or before that many env steps ("-" before the first).
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from wmtool import rundir


def evaluations(run: Path) -> dict:
    cfg, meta = rundir.load_config(run), rundir.read_meta(run)
    repeat = max(cfg.env.action_repeat, 1)
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    evals = [(row["step"] * repeat, row["eval/return_mean"]) for row in rows
             if "eval/return_mean" in row]
    first = next(row for row in rows if row.get("fps/env"))
    # the run started counters/env_steps / fps/env seconds before its first log row
    start = first["time"] - first["counters/env_steps"] / first["fps/env"]
    seconds = rows[-1]["time"] - start
    return {"algo": meta["algo"], "seed": cfg.seed, "evals": evals,
            "budget": cfg.train.steps * repeat, "minutes": seconds / 60}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--grid", default="8000,16000,24000,30000,40000,48000")
    parser.add_argument("--target", type=float, default=700.0)
    args = parser.parse_args()
    grid = [int(x) for x in args.grid.split(",")]
    by_algo = defaultdict(list)
    for run in args.runs:
        by_algo[evaluations(run)["algo"]].append(evaluations(run))
    head = ["algo", "seed", *[f"{g // 1000}k" for g in grid], "final", "best",
            f"first >= {args.target:g}", "budget", "minutes incl. evals"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for algo, runs in sorted(by_algo.items()):
        for r in sorted(runs, key=lambda r: r["seed"]):
            cells = []
            for g in grid:
                seen = [ret for step, ret in r["evals"] if step <= g]
                cells.append(f"{seen[-1]:.0f}" if seen and g <= r["budget"] else "-")
            hit = next((step for step, ret in r["evals"] if ret >= args.target), None)
            final, best = r["evals"][-1][1], max(ret for _, ret in r["evals"])
            print(f"| {algo} | {r['seed']} | " + " | ".join(cells) +
                  f" | {final:.0f} | {best:.0f} | {'-' if hit is None else f'{hit:,}'} | "
                  f"{r['budget']:,} | {r['minutes']:.0f} |")
        finals = [r["evals"][-1][1] for r in runs]
        bests = [max(ret for _, ret in r["evals"]) for r in runs]
        print(f"| {algo} | mean of {len(runs)} | " + " | ".join("" for _ in grid) +
              f" | {statistics.mean(finals):.0f} | {statistics.mean(bests):.0f} | | | |")


if __name__ == "__main__":
    main()
