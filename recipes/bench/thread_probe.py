"""The thread probe against the truth: what it picks alone and beside a busy loop on one
core, against both thread counts timed alone afterwards.

    python recipes/bench/thread_probe.py [--setting demo --setting tiny ...] [--record]

Per setting (a model and its batch): the probe (wmtool/launch/threads.py) on a quiet machine, the
probe while a `while True: pass` process holds one core, then 1 and 2 threads timed alone
(median of 5 alternating blocks). The probe holds when its pick, in both conditions, is no
more than 10% slower alone than the other count, and when it took at most 5 s. Run it with
nothing else on the machine. `--record` writes benchmarks/results/threads-DATE-COMMIT.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from wmtool.benchmarks.record import header, save
from wmtool.engine.bench import matmul_gflops

ROOT = Path(__file__).resolve().parents[2]
# name: (recipe or None, size, batch, length)
SETTINGS = {"demo": ("dreamerv3__gym_cartpole_demo", "debug", None, None),
            "tiny": (None, "debug", 4, 8),
            "xs": (None, "xs", None, 32)}  # random CartPole episodes end before xs's 64 steps
CHILD = r"""
import json, statistics, sys, time, torch, numpy as np
from wmtool import config
from wmtool.engine.agent import Agent
from wmtool.data.replay import sample_sequences
from wmtool.engine.loops import run_episodes
from wmtool.launch.threads import tune_threads
from wmtool.envs.factory import make_env
from wmtool.envs.vector import VecEnv
recipe, size, batch, length, what = json.loads(sys.argv[1])
sets = [f"train.batch={batch}"] * bool(batch) + [f"train.length={length}"] * bool(length)
cfg = config.compose({"env": {"id": "gym:CartPole-v1"}}, algo="dreamerv3", size=size,
                     recipe=recipe, sets=sets)
env = make_env(cfg.env)
agent = Agent("dreamerv3", env.obs_space, env.act_space, cfg)
rng = np.random.default_rng(0)
class Random:
    def act(self, obs):
        return np.stack([env.act_space.sample(rng) for _ in obs["is_first"]])
eps = []
vec = VecEnv([lambda: make_env(cfg.env)])
run_episodes(vec, Random(), steps=800, seed=0, on_episode=eps.append)
vec.close()
rows = sample_sequences(eps, env.act_space, cfg.train.batch, cfg.train.length, rng)
if what == "probe":
    start = time.perf_counter()
    out = tune_threads(agent, rows, 2)
    out["seconds"] = round(time.perf_counter() - start, 2)
else:
    rates = {1: [], 2: []}
    agent.train_step(rows)
    for _ in range(5):
        for n in (1, 2):
            torch.set_num_threads(n)
            t = time.perf_counter()
            for _ in range(3):
                agent.train_step(rows)
            rates[n].append(3 / (time.perf_counter() - t))
    out = {str(n): round(statistics.median(r), 3) for n, r in rates.items()}
print(json.dumps(out))
"""


def child(setting: str, what: str) -> dict:
    spec = json.dumps([*SETTINGS[setting], what])
    out = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {0, 1}))
    if out.returncode:
        raise SystemExit(f"error: the {setting} {what} child failed: {out.stderr[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(setting: str) -> dict:
    quiet = child(setting, "probe")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            preexec_fn=lambda: os.sched_setaffinity(0, {1}))
    try:
        time.sleep(0.5)
        loaded = child(setting, "probe")
    finally:
        busy.kill()
        busy.wait()
    alone = child(setting, "alone")
    best = max(alone, key=alone.get)
    slower = lambda picked: round(1 - alone[str(picked)] / alone[best], 3)  # noqa: E731
    return {"setting": setting, "probe_quiet": quiet, "probe_busy": loaded,
            "alone_updates_per_s": alone, "best_alone": int(best),
            "quiet_pick_slower_by": slower(quiet["threads"]),
            "busy_pick_slower_by": slower(loaded["threads"]),
            "holds": max(slower(quiet["threads"]), slower(loaded["threads"])) <= 0.10
            and max(quiet["seconds"], loaded["seconds"]) <= 5.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", action="append", choices=sorted(SETTINGS))
    ap.add_argument("--probe-only", choices=sorted(SETTINGS),
                    help="print one probe's JSON for this setting and stop (tests/test_threads.py)")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--concurrent", default="nothing")
    args = ap.parse_args()
    if args.probe_only:
        print(json.dumps(child(args.probe_only, "probe")))
        return
    import torch

    results = [measure(s) for s in args.setting or list(SETTINGS)]
    out = {"results": results, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "matmul_gflops_fp32": round(matmul_gflops(torch.float32), 1)}
    print(json.dumps(out, indent=1))
    if args.record:
        command = "python recipes/bench/thread_probe.py " + " ".join(sys.argv[1:])
        save({**header("threads", command, args.concurrent), **out},
             ROOT / "benchmarks" / "results", "threads")


if __name__ == "__main__":
    main()
