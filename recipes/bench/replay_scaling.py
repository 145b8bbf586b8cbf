"""Replay's cost against its capacity: the ring (wmtool/data/replay.py) beside the replay it
replaced (every eviction shifted every row), on 64x64x3 frames in 500-step episodes.

    python recipes/bench/replay_scaling.py [--capacity 10000 --capacity 100000 ...]
        [--before-up-to 300000] [--adds 10] [--updates 16] [--record]

Per capacity and implementation: replay is filled past its capacity (so every add
overwrites), then `--adds` more episodes are timed one by one (median ms per add), then
sampling a batch of 16 x 64 (median ms), then updates/s of a small pixel DreamerV3
(`--size debug`, 1 thread) drawing its batches from that replay, one add per 8 updates as
online training does at train ratio 512 / (16 x 64). The replaced implementation is loaded
from git (`--before-commit`) and measured up to `--before-up-to` rows. Run alone: adds are
memory bound. `--record` writes benchmarks/results/replay-DATE-COMMIT.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wmtool import spaces
from wmtool.data.episode import Episode

ROOT = Path(__file__).resolve().parents[2]

EPISODE = 500
BEFORE = "5daa277"  # the last commit whose replay shifted every row on eviction


def implementation(commit: str | None):
    """The Replay class of today's tree, or of `commit`'s wmtool/data/replay.py."""
    if commit is None:
        from wmtool.data.replay import Replay
        return Replay
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:wmtool/data/replay.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "replay_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("replay_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Replay


def episode(rng: np.random.Generator) -> Episode:
    frames = rng.integers(0, 256, (EPISODE + 1, 64, 64, 3), np.uint8)
    return Episode({"image": frames}, rng.integers(0, 2, EPISODE),
                   rng.normal(size=EPISODE).astype(np.float32), np.zeros(EPISODE, bool),
                   np.zeros(EPISODE, bool))


def measure(replay_class, capacity: int, adds: int, updates: int) -> dict:
    import torch

    from wmtool import config
    from wmtool.engine.agent import Agent

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pool = [episode(rng) for _ in range(4)]  # reused: generating frames would dominate
    obs_space, act_space = {"image": spaces.image(64, 64)}, spaces.discrete(2)
    replay = replay_class(obs_space, act_space, capacity, seed=0)
    start = time.perf_counter()
    for i in range(capacity // (EPISODE + 1) + 2):
        replay.add(pool[i % len(pool)])
    fill = time.perf_counter() - start
    add_ms = []
    for i in range(adds):
        t = time.perf_counter()
        replay.add(pool[i % len(pool)])
        add_ms.append(1000 * (time.perf_counter() - t))
    sample_ms = []
    for _ in range(20):
        t = time.perf_counter()
        replay.sample(16, 64)
        sample_ms.append(1000 * (time.perf_counter() - t))
    cfg = config.compose({"env": {"id": "gym:CartPole-v1", "obs": "pixels"}}, algo="dreamerv3",
                         size="debug", sets=["train.batch=16", "train.length=64"])
    agent = Agent("dreamerv3", obs_space, act_space, cfg)
    agent.train_step(replay.sample(16, 64))  # warm-up
    t = time.perf_counter()
    for i in range(updates):
        if i % 8 == 7:
            replay.add(pool[i % len(pool)])
        agent.train_step(replay.sample(16, 64))
    ups = updates / (time.perf_counter() - t)
    return {"capacity": capacity, "rows": len(replay), "fill_s": round(fill, 1),
            "add_ms_median": round(statistics.median(add_ms), 2),
            "add_ms_max": round(max(add_ms), 2),
            "sample_ms_median": round(statistics.median(sample_ms), 2),
            "updates_per_s": round(ups, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capacity", type=int, action="append")
    ap.add_argument("--before-up-to", type=int, default=300_000)  # its eviction copies all rows
    ap.add_argument("--before-commit", default=BEFORE)
    ap.add_argument("--adds", type=int, default=10)
    ap.add_argument("--updates", type=int, default=16)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--concurrent", default="nothing")
    args = ap.parse_args()
    capacities = args.capacity or [10_000, 100_000, 300_000, 1_000_000]
    rows = []
    for capacity in capacities:
        for name, commit in (("ring", None), ("before", args.before_commit)):
            if name == "before" and capacity > args.before_up_to:
                continue
            # a fresh process per measurement: the previous one's gigabytes are returned
            out = subprocess.run([sys.executable, __file__, "--child", name, str(capacity),
                                  str(args.adds), str(args.updates), commit or ""],
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"error: {name} at {capacity} rows failed: {out.stderr[-600:]}")
            row = {"replay": name, **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.record:
        import torch

        from wmtool.benchmarks.record import header, save
        from wmtool.engine.bench import matmul_gflops

        command = "python recipes/bench/replay_scaling.py " + " ".join(sys.argv[1:])
        save({**header("replay", command, args.concurrent, threads=1),
              "before_commit": args.before_commit, "episode_steps": EPISODE,
              "frame": [64, 64, 3], "results": rows,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "matmul_gflops_fp32": round(matmul_gflops(torch.float32), 1)},
             ROOT / "benchmarks" / "results", "replay")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, name, capacity, adds, updates, commit = sys.argv
        print(json.dumps(measure(implementation(commit or None), int(capacity), int(adds),
                                 int(updates))))
    else:
        main()
