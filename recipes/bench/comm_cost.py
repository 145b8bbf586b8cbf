"""What data-parallel training communicates: per size preset, the gradient bytes one update
all-reduces, and the time that all-reduce took here (gloo, 2 ranks on this machine), as a
record that `make tables` turns into the communication table (with the ring all-reduce time
those bytes imply at common interconnect speeds).

    python recipes/bench/comm_cost.py [--sizes debug xs s m l xl 1m 5m 19m 48m 317m]
        [--reps 5] [--out benchmarks/results]

DreamerV3 presets are built for 64x64 RGB pixels and 6 continuous actions (DMC from pixels),
TD-MPC2's for 24 state dimensions and 6 actions (walker from state). Every parameter an
optimiser steps is all-reduced once per update (its optimisers' steps together), in fp32.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DREAMER = ("debug", "xs", "s", "m", "l", "xl")


def setting(size: str):
    from wmtool import config
    from wmtool.spaces import Space

    algo = "dreamerv3" if size in DREAMER else "tdmpc2"
    obs = {"image": Space((64, 64, 3), "uint8")} if algo == "dreamerv3" else \
        {"vector": Space((24,), "float32")}
    act = Space((6,), "float32", -1.0, 1.0)
    cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, algo=algo, size=size)
    return algo, cfg, obs, act


def worker(sizes: list[str], reps: int, out: Path) -> None:
    """Under torchrun: build each preset, time one all-reduce of all its gradients."""
    import torch

    from wmtool import parallel
    from wmtool.engine.agent import Agent
    from wmtool.engine.distributed import join_if_launched

    world = join_if_launched("cpu")
    torch.set_num_threads(1)
    rows = []
    for size in sizes:
        algo, cfg, obs, act = setting(size)
        agent = Agent(algo, obs, act, cfg)
        params = [p for ps in agent.params.values() for p in ps]
        for p in params:
            p.grad = torch.zeros_like(p)
        times = []
        for _ in range(reps + 1):  # one warm-up
            parallel.barrier()
            start = time.perf_counter()
            parallel.average_gradients(params)
            times.append(time.perf_counter() - start)
        rows.append({"algo": algo, "size": size,
                     "parameters": {name: sum(p.numel() for p in ps)
                                    for name, ps in agent.params.items()},
                     "gradient_bytes": sum(p.numel() * 4 for p in params),
                     "allreduce_ms_here": round(1000 * statistics.median(times[1:]), 2)})
        del agent, params
    if world.main:
        out.write_text(json.dumps(rows))
    parallel.leave()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=[*DREAMER, "1m", "5m", "19m", "48m", "317m"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.sizes, a.reps, a.worker)
    from wmtool.benchmarks.record import header, save

    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node=2", __file__, "--worker", str(rows_file),
                        "--reps", str(a.reps), "--sizes", *a.sizes],
                       env={**os.environ, "TORCH_CPP_LOG_LEVEL": "ERROR"}, check=True)
        rows = json.loads(rows_file.read_text())
    command = "python recipes/bench/comm_cost.py " + " ".join(sys.argv[1:])
    save({**header("comm", command, "nothing", threads=1),
          "measured_with": "gloo, 2 ranks x 1 thread on this machine (loopback TCP), median of "
                           "the repetitions", "rows": rows}, a.out, "comm")


if __name__ == "__main__":
    main()
