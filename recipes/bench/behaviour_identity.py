"""Does a refactor change behaviour? The same one-thread runs on two checkouts, row by row.

    python recipes/bench/behaviour_identity.py --before DIR [--after DIR] [--old DIR]
        [--only NAME ...] [--record]

DIR is a checkout of wmtool (e.g. `git worktree add --detach /tmp/before <commit>`); --after
defaults to this one. For DreamerV3 (CartPole, online), TD-MPC2 (Pendulum, online), World
Models (both phases, from CarRacing data) and Genie (its three phases, from the same frames)
each checkout trains the same small run with `runtime.threads=1`, and every row of the two
`metrics.jsonl` files must match exactly, leaving out wall-clock keys (`time`, `time/*`,
`fps/*`, acting milliseconds). `--old DIR` (e.g. the 0.2.0 release) also trains each of them
there and checks that the --after checkout loads its checkpoint and uses it (`wmtool eval`
in the env for the agents that act, `eval --data` for the others). `--record` writes
benchmarks/results/identity-*.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]

CAR_DATA = ["collect", "--env", "gym:CarRacing-v3", "--policy", "brownian", "--episodes", "3",
            "--set", "env.time_limit=40", "--seed", "0", "--quiet"]

# name: training arguments after `wmtool train` (one thread, a few hundred updates at most)
RUNS = {
    "dreamerv3": ["--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--size", "debug",
                  "--steps", "600", "--set", "train.prefill=200", "--set", "train.train_ratio=64",
                  "--set", "train.batch=4", "--set", "train.length=16",
                  "--set", "train.eval_every=300", "--set", "train.eval_episodes=2",
                  "--set", "train.log_every=100"],
    "tdmpc2": ["--algo", "tdmpc2", "--env", "gym:Pendulum-v1", "--size", "debug", "--steps",
               "500", "--set", "train.prefill=200", "--set", "env.time_limit=100",
               "--set", "train.eval_every=250", "--set", "train.eval_episodes=1",
               "--set", "train.log_every=50"],
    "worldmodels": ["--algo", "worldmodels", "--data", "{car}", "--size", "debug",
                    "--set", "vae.steps=30", "--set", "mdnrnn.steps=20",
                    "--set", "train.log_every=5"],
    "genie": ["--algo", "genie", "--data", "{car}", "--size", "debug",
              "--set", "genie.tokenizer_steps=12", "--set", "genie.lam_steps=12",
              "--set", "genie.dynamics_steps=12", "--set", "train.log_every=4"],
}
ACTS = {"dreamerv3", "tdmpc2"}  # world models and genie runs here have no policy to eval


def wall_clock(key: str) -> bool:
    """Keys that time something (they differ between any two runs)."""
    words = key.rsplit("/", 1)[-1].split("_")
    return key == "time" or key.startswith(("time/", "fps/")) or "ms" in words or words[-1] == "s"


def wmtool(checkout: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run([sys.executable, "-m", "wmtool", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def train(checkout: Path, name: str, out: Path, car: Path) -> Path:
    run = out / name
    args = [a.replace("{car}", str(car)) for a in RUNS[name]]
    res = wmtool(checkout, ["train", *args, "--set", "runtime.threads=1", "--seed", "3",
                            "--run-dir", str(run), "--quiet"], out)
    if res.returncode:
        raise SystemExit(f"error: {name} on {checkout} failed: {res.stderr.strip()[-800:]}")
    return run


def rows(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").open():
        row = json.loads(line)
        out.append({k: v for k, v in row.items() if not wall_clock(k)})
    return out


def compare(before: list[dict], after: list[dict]) -> dict:
    """Exact equality row by row; the first difference if any."""
    if len(before) != len(after):
        return {"identical": False, "rows": [len(before), len(after)],
                "first_difference": "row counts differ"}
    for i, (a, b) in enumerate(zip(before, after)):
        if a != b:
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            return {"identical": False, "rows": len(before), "first_difference":
                    {"row": i, "keys": {k: [a.get(k), b.get(k)] for k in keys[:5]}}}
    return {"identical": True, "rows": len(before), "values": sum(len(r) for r in before)}


def loads_old(checkout: Path, name: str, old_run: Path, out: Path, car: Path) -> dict:
    """This checkout loads the old run's checkpoint and uses it: evaluation in the env for
    the agents that act, the model's held-out losses (`eval --data`) for the others."""
    if name in ACTS:
        args = ["eval", "--run", str(old_run), "--episodes", "1", "--json", "--quiet"]
    else:
        args = ["eval", "--run", str(old_run), "--data", str(car), "--json", "--quiet"]
    res = wmtool(checkout, args, out)
    return {"loads": res.returncode == 0, "command": " ".join(["wmtool", *args[:2]]),
            "error": res.stderr.strip()[-300:] if res.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=HERE)
    ap.add_argument("--old", type=Path, help="a release checkout whose checkpoints must load")
    ap.add_argument("--only", nargs="*", default=sorted(RUNS))
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="wmtool-identity-") as tmp:
        tmp = Path(tmp)
        car = tmp / "car.h5"
        res = wmtool(args.after, [*CAR_DATA, "--out", str(car)], tmp)
        if res.returncode:
            raise SystemExit(f"error: collecting CarRacing frames failed: {res.stderr[-500:]}")
        for name in args.only:
            sides = {}
            for side, checkout in (("before", args.before), ("after", args.after)):
                (tmp / side).mkdir(exist_ok=True)
                sides[side] = rows(train(checkout, name, tmp / side, car))
            results[name] = compare(sides["before"], sides["after"])
            if args.old:
                (tmp / "old").mkdir(exist_ok=True)
                old_run = train(args.old, name, tmp / "old", car)
                results[name]["old_checkpoint"] = loads_old(args.after, name, old_run, tmp, car)
            print(json.dumps({name: results[name]}), flush=True)
    ok = all(r["identical"] and r.get("old_checkpoint", {"loads": True})["loads"]
             for r in results.values())
    if args.record:
        from wmtool.benchmarks.record import head_commit, header, save

        command = "python recipes/bench/behaviour_identity.py " + " ".join(sys.argv[1:])
        save({**header("identity", command, os.environ.get("BESIDE", "nothing"), threads=1),
              "before": head_commit(args.before), "after": head_commit(args.after),
              "old": head_commit(args.old) if args.old else None, "all_hold": ok,
              "runs": {name: {"train_args": RUNS[name], **r} for name, r in results.items()}},
             HERE / "benchmarks" / "results", "identity")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
