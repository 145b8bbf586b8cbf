"""wmtool's reference update against sheeprl's, alternating in one session (issue 45 item 3).

    python recipes/bench/sheeprl_compare.py --sheeprl-python V/bin/python [--rounds 3]
        [--avx2] [--record]

Each round runs recipes/bench/dreamer_throughput.py (wmtool, `--size xs`, 2 threads) and
recipes/bench/sheeprl_reference.py (sheeprl 0.8.4 `dreamer_v3_XS`, 2 threads, in its own
environment), each a fresh process timing 5 blocks of 5 updates; the figure per tool is the
median over rounds of each run's median. `--avx2` limits both to AVX2
(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`). Run alone. `--record` writes
benchmarks/results/reference-DATE-COMMIT.json with both series, the ratio and the fp32
matmul peak measured in this process under the same limits.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def run(python: str, script: str, env: dict) -> dict:
    out = subprocess.run([python, str(HERE / script)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"error: {script} failed: {out.stderr.strip()[-600:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sheeprl-python", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--avx2", action="store_true")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--concurrent", default="nothing")
    args = ap.parse_args()
    if args.avx2:
        os.environ.update(AVX2)  # this process's matmul peak too
    env = dict(os.environ)
    series = {"wmtool": [], "sheeprl": []}
    for _ in range(args.rounds):
        series["wmtool"].append(run(sys.executable, "dreamer_throughput.py", env))
        series["sheeprl"].append(run(args.sheeprl_python, "sheeprl_reference.py", env))
        print(json.dumps({k: v[-1]["updates_per_s"] for k, v in series.items()}), flush=True)
    medians = {k: statistics.median(r["updates_per_s"] for r in v) for k, v in series.items()}
    out = {"updates_per_s": medians, "ratio": round(medians["wmtool"] / medians["sheeprl"], 3),
           "series": series}
    print(json.dumps({k: out[k] for k in ("updates_per_s", "ratio")}))
    if args.record:
        import torch

        from wmtool.benchmarks.record import header, save
        from wmtool.engine.bench import matmul_gflops

        command = "python recipes/bench/sheeprl_compare.py " + " ".join(sys.argv[1:])
        save({**header("reference", command, args.concurrent, threads=2), **out,
              "matmul_gflops_fp32": round(matmul_gflops(torch.float32), 1)},
             HERE.parents[1] / "benchmarks" / "results", "reference")


if __name__ == "__main__":
    main()
