"""Data-parallel throughput on one machine: replayed steps/s of 1 process x T threads
against N processes x T/N threads (torch.distributed, gloo), alternating, as a record.

    python recipes/bench/dp_scaling.py [--sizes debug xs] [--ranks 2] [--rounds 2]
        [--out benchmarks/results]

Each round runs `wmtool bench --json` once as one process with all the cores' threads and
once with `--nproc N` (each rank one share of the cores, batch `train.batch` per rank, so
N times the replayed rows per update), one after the other, never two at once. Replayed
steps/s = updates/s x batch x length x ranks. The 2-rank results also carry the measured
time of one gradient all-reduce (`allreduce_ms`) and its size. The record ("kind": "dp")
keeps every result, the medians and their ratio; `make tables` renders it. Run it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from wmtool.benchmarks.record import header, save


def bench(size: str, ranks: int, threads: int, runs: int, updates: int) -> dict:
    cmd = [sys.executable, "-m", "wmtool", "bench", "--algo", "dreamerv3", "--size", size,
           "--runs", str(runs), "--updates", str(updates), "--act-steps", "5", "--json"]
    cmd += ["--nproc", str(ranks)] if ranks > 1 else ["--threads", str(threads)]
    env = {**os.environ, "TORCH_CPP_LOG_LEVEL": "ERROR"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["debug", "xs"])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                   help="threads of the one process (the ranks share as many cores)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    settings = []
    for size in a.sizes:
        updates = 10 if size == "debug" else 2
        rows = {"one": [], "ranks": []}
        for _ in range(a.rounds):
            rows["one"].append(bench(size, 1, a.threads, a.runs, updates))
            rows["ranks"].append(bench(size, a.ranks, a.threads, a.runs, updates))
        median = {k: statistics.median(r["replayed_steps_per_s"] for r in v)
                  for k, v in rows.items()}
        settings.append({"setting": f"dreamerv3 {size}, 1 x {a.threads} threads vs "
                                    f"{a.ranks} x {max(1, a.threads // a.ranks)}",
                         "size": size, "median_replayed_steps_per_s": median,
                         "ratio": round(median["ranks"] / median["one"], 3), "results": rows})
        print(settings[-1]["setting"], median, file=sys.stderr)
    command = "python recipes/bench/dp_scaling.py " + " ".join(sys.argv[1:])
    save({**header("dp", command, "nothing"), "ranks": a.ranks, "settings": settings,
          "protocol": f"{a.rounds} alternating rounds of `wmtool bench` (median of "
                      f"{a.runs} timed blocks each); the median over rounds"},
         a.out, f"dp-{a.ranks}ranks")


if __name__ == "__main__":
    main()
