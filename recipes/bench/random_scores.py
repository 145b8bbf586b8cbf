"""A uniform random policy's return on each task, as records for the suite table.

    python recipes/bench/random_scores.py [TASK ...] [--episodes 10] [--out benchmarks/results]

A TASK is a DMC task (cartpole-swingup) or any env id (gym:CarRacing-v3, scored over 100
episodes in World Models' protocol: `--episodes 100`).

Each task plays `--episodes` episodes of `wmtool collect --policy random` from the seed the
runs' evaluations start at (run seed 100 + 2^30, engine/train.py) with the suite's action
repeat, and writes one record (`"kind": "random"`) with the command, commit, machine and the
return's mean, std, min and max; `make tables` puts it beside the suite's rows.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from wmtool.benchmarks.record import head_commit, machine

SUITE = ["cartpole-balance", "cartpole-swingup", "walker-walk", "cheetah-run", "finger-spin",
         "ball_in_cup-catch"]
EVAL_SEED = 100 + 2**30  # the first held-out seed's evaluation starts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="*", default=SUITE)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    commit = head_commit()
    a.out.mkdir(parents=True, exist_ok=True)
    for task in a.tasks:
        env = task if ":" in task else f"dmc:{task}"
        with tempfile.TemporaryDirectory() as tmp:
            cmd = ["wmtool", "collect", "--env", env, "--policy", "random",
                   "--episodes", str(a.episodes), "--seed", str(EVAL_SEED),
                   "--out", f"{tmp}/random.h5", "--json"]
            result = json.loads(subprocess.run([sys.executable, "-m", *cmd], check=True,
                                               capture_output=True, text=True).stdout)
        record = {"kind": "random", "env": env, "command": " ".join(cmd),
                  "commit": commit, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "machine": machine(1, "another benchmark"),
                  **{k: result[k] for k in ("episodes", "steps", "seed", "return_mean",
                                            "return_std", "return_min", "return_max")}}
        path = a.out / f"random-{env.partition(':')[2]}-{commit[:7]}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(path, f"{result['return_mean']:.1f}")


if __name__ == "__main__":
    main()
