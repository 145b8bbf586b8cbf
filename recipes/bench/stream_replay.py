"""Training from disk (`train.replay=stream`) against training from memory, and under a memory
limit a third of the dataset's size.

    python recipes/bench/stream_replay.py [--limit-gb 2] [--size debug --size xs]
        [--updates 40] [--rounds 2] [--noise] [--data-dir /tmp/wmtool-stream-bench] [--record]

Data: CartPole rendered at 64x64 (`wmtool collect --obs pixels`, kept in --data-dir for the
next run): a small store that fits in memory, and a large one whose rows take at least three
times the limit in memory, made of the small one's episodes written over and over (on disk
it is far smaller: these frames compress about 28x). Per model size (DreamerV3 on pixels,
batch 16 x 64, 2 threads):
1. on the small store, `--rounds` alternating pairs of runs, memory then stream: updates/s
   from metrics.jsonl's times (the load before the first update left out), median per mode;
2. on the large store, inside a cgroup (v1 memory controller) limited to --limit-gb: the run
   streams (train.replay=auto must choose it), its peak resident memory (VmHWM) and its
   updates/s; and the same run with train.replay=memory, which the limit must stop.
Run alone. `--record` writes benchmarks/results/stream-DATE-COMMIT.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "wmtool"
CGROUP = Path("/sys/fs/cgroup/memory/wmtool-stream-bench")
ROW_BYTES = 64 * 64 * 3 + 8 + 4 + 2  # an image row, its action, reward, flags


def collect(path: Path, steps: int) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BIN), "collect", "--env", "gym:CartPole-v1", "--obs", "pixels",
                    "--steps", str(steps), "--workers", "2", "--out", str(path), "--quiet"],
                   check=True)


def replicate(source: Path, path: Path, steps: int, noise: bool = False) -> None:
    """A store of `source`'s episodes written over and over (collecting half a million
    rendered steps would take 20 minutes here; reading is what is measured). With `noise`,
    each written episode's frames are random bytes, which gzip cannot shrink: the file on
    disk is then as large as its rows in memory."""
    if path.exists():
        return
    from wmtool.data.store import EpisodeReader
    from wmtool.data.writer import EpisodeWriter

    with EpisodeReader(source) as reader:
        episodes = list(reader)
        env_id, obs_space, act_space = reader.env_id, reader.obs_space, reader.act_space
    partial = path.with_suffix(".partial.h5")
    written, rng = 0, np.random.default_rng(0)
    with EpisodeWriter(partial, env_id, obs_space, act_space, policy="random") as writer:
        while written < steps:
            for ep in episodes:
                if noise:
                    frames = rng.integers(0, 256, ep.obs["image"].shape, np.uint8)
                    ep = dataclasses.replace(ep, obs={**ep.obs, "image": frames})
                writer.add(ep)
                written += ep.length
                if written >= steps:
                    break
    partial.rename(path)


def in_cgroup(limit: int | None):
    """preexec_fn: join a memory cgroup of `limit` bytes (None: no limit)."""
    if limit is None:
        return None
    CGROUP.mkdir(exist_ok=True)
    (CGROUP / "memory.limit_in_bytes").write_text(str(limit))

    def join() -> None:
        (CGROUP / "cgroup.procs").write_text(str(os.getpid()))
    return join


def train(data: Path, run: Path, size: str, mode: str, updates: int,
          limit: int | None = None) -> dict:
    """One `wmtool train --data` run, in a fresh `run` directory: exit code, updates/s,
    peak resident memory."""
    shutil.rmtree(run, ignore_errors=True)
    args = [str(BIN), "train", "--algo", "dreamerv3", "--data", str(data), "--size", size,
            "--steps", str(updates), "--set", f"train.replay={mode}", "--set",
            "train.batch=16", "--set", "train.length=64", "--set", "runtime.threads=2",
            "--set", f"train.log_every={max(1, updates // 8)}", "--set", "dream.every=0",
            "--set", "train.checkpoint_every=0", "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=in_cgroup(limit))
    peak = [0]

    def watch() -> None:  # VmHWM is gone once the process exits: read it while it runs
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                line = next(l for l in status.read_text().splitlines() if l.startswith("VmHWM"))
                peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except (OSError, StopIteration):
                pass
            time.sleep(0.2)
    watcher = threading.Thread(target=watch)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    out = {"mode": mode, "size": size, "exit": proc.returncode, "peak_rss_gb":
           round(peak[0] / 2**30, 3)}
    if proc.returncode:
        out["error"] = err.strip().splitlines()[-1][-300:] if err.strip() else ""
        return out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time" in r and "step" in r]
    out["updates_per_s"] = round((rows[-1]["step"] - rows[0]["step"]) /
                                 (rows[-1]["time"] - rows[0]["time"]), 3)
    out["replay"] = json.loads((run / "run.json").read_text()).get("replay")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-gb", type=float, default=2.0)
    ap.add_argument("--noise", action="store_true", help="frames of random bytes: the store on "
                    "disk as large as its rows in memory")
    ap.add_argument("--size", action="append")
    ap.add_argument("--updates", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/wmtool-stream-bench"))
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--concurrent", default="nothing")
    args = ap.parse_args()
    limit = int(args.limit_gb * 2**30)
    small, large = args.data_dir / "small.h5", args.data_dir / "large.h5"
    collect(small, 20_000)
    if args.noise:
        rendered, small = small, args.data_dir / "noise" / "small.h5"
        large = small.with_name("large.h5")
        small.parent.mkdir(exist_ok=True)
        replicate(rendered, small, 20_000, noise=True)
    replicate(small, large, int(3.1 * limit / ROW_BYTES), noise=args.noise)
    runs = large.parent / "runs"
    results = []
    for size in args.size or ["debug", "xs"]:
        pairs = {"memory": [], "stream": []}
        for i in range(args.rounds):
            for mode in ("memory", "stream"):
                r = train(small, runs / f"{size}-{mode}-{i}", size, mode, args.updates)
                print(json.dumps(r), flush=True)
                if r["exit"]:
                    raise SystemExit(f"error: a {mode} run on the small store failed: "
                                     f"{r.get('error')}")
                pairs[mode].append(r)
        fits = {mode: statistics.median(r["updates_per_s"] for r in rs)
                for mode, rs in pairs.items()}
        limited = train(large, runs / f"{size}-limited-auto", size, "auto", args.updates, limit)
        print(json.dumps(limited), flush=True)
        refused = train(large, runs / f"{size}-limited-memory", size, "memory", args.updates,
                        limit)
        print(json.dumps(refused), flush=True)
        results.append({
            "size": size, "small_store": pairs, "updates_per_s_memory": fits["memory"],
            "updates_per_s_stream": fits["stream"],
            "stream_share_of_memory": round(fits["stream"] / fits["memory"], 3),
            "limited_auto": limited, "limited_memory": refused,
            "limited_holds": limited["exit"] == 0 and limited["replay"]["mode"] == "stream"
            and limited["peak_rss_gb"] * 2**30 < limit and refused["exit"] != 0})
    stores = {p.name: {"bytes_on_disk": p.stat().st_size} for p in (small, large)}
    for name, path in (("small.h5", small), ("large.h5", large)):
        info = json.loads(subprocess.run([str(BIN), "data", "info", str(path), "--json"],
                                         capture_output=True, text=True).stdout)
        stores[name].update(steps=info["steps"], episodes=info["episodes"],
                            rows_in_memory_gb=round((info["steps"] + info["episodes"])
                                                    * ROW_BYTES / 2**30, 2))
    out = {"limit_gb": args.limit_gb, "frames": "random bytes" if args.noise else "CartPole",
           "stores": stores, "results": results}
    print(json.dumps(out, indent=1))
    if args.record:
        import torch

        from wmtool.benchmarks.record import header, save
        from wmtool.engine.bench import matmul_gflops

        command = "python recipes/bench/stream_replay.py " + " ".join(sys.argv[1:])
        save({**header("stream", command, args.concurrent, threads=2), **out,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "matmul_gflops_fp32": round(matmul_gflops(torch.float32), 1)},
             ROOT / "benchmarks" / "results", "stream")


if __name__ == "__main__":
    main()
