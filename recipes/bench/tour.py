"""Run README's tour as written and time every line: the newcomer path, measured.

    python recipes/bench/tour.py [--small] [--workdir DIR] [--record] [--concurrent "..."]

Takes the ```bash block under "## A tour" in README.md, runs each line with bash in an
empty working directory (`examples/` linked in, `.venv/bin` first on PATH, as after
`source .venv/bin/activate`) and prints one JSON object: per line the command as run, its
exit code and seconds, then the total and what the tour's trained model showed (the eval's
greedy return beside the random policy's). `--small` shrinks the budgets (steps, episodes,
bench's timed blocks) so the tour's commands can run inside the test suite
(tests/test_tour.py); the README's own budgets are the figure `--record` keeps, under
benchmarks/results/tour-DATE-COMMIT.json with the machine. Stops at the first line that fails.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wmtool.benchmarks.record import header, save

ROOT = Path(__file__).resolve().parents[2]

# --small: what each command's budget shrinks to. Training lines run a few hundred steps
# after a short prefill, so checkpoints, evaluations and the resume still happen.
SMALL_TRAIN = ["--set", "train.prefill=100", "--set", "train.prefill_updates=10",
               "--set", "train.train_ratio=64",
               "--set", "train.eval_every=200",
               "--set", "train.eval_episodes=1", "--set", "train.checkpoint_every=200"]
SMALL_STEPS = {"train": 300, "resume": 400, "imagine": 10, "sweep": 200}
SMALL_EPISODES = {"eval": 2}  # collect keeps its 20: dream needs an episode of 32 steps
SMALL_BENCH = ["--runs", "1", "--updates", "1", "--act-steps", "2", "--random-steps", "200"]


def tour_lines(readme: str) -> list[str]:
    """The commands of README's tour, comments cut."""
    section = readme.split("## A tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line]


def shrink(command: str) -> str:
    """One wmtool command (no shell operators) with the --small budgets."""
    words = shlex.split(command)
    if words[:1] != ["wmtool"] or len(words) < 2:
        return command
    verb = "resume" if "--resume" in words else words[1]
    for flag, table in (("--steps", SMALL_STEPS), ("--episodes", SMALL_EPISODES)):
        if flag in words and verb in table:
            words[words.index(flag) + 1] = str(table[verb])
        elif verb in table and flag == "--steps" and verb in ("train", "sweep"):
            words += [flag, str(table[verb])]  # a recipe's own budget
    if words[1] in ("train", "sweep") and verb != "resume":
        words += SMALL_TRAIN
    if words[1] == "bench":
        words += SMALL_BENCH
    return shlex.join(words)


def as_run(line: str, small: bool) -> str:
    if not small:
        return line
    return " && ".join(shrink(part.strip()) for part in line.split("&&"))


def run_tour(workdir: Path, small: bool) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "examples").exists():
        (workdir / "examples").symlink_to(ROOT / "examples")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "VIRTUAL_ENV": str(bin_dir.parent), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    rows, started = [], time.perf_counter()
    for line in tour_lines((ROOT / "README.md").read_text()):
        command = as_run(line, small)
        t = time.perf_counter()
        proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=env,
                              capture_output=True, text=True)
        rows.append({"line": line, "command": command, "exit": proc.returncode,
                     "seconds": round(time.perf_counter() - t, 1),
                     "stdout_tail": proc.stdout[-400:], "stderr_tail": proc.stderr[-600:]})
        print(f"{rows[-1]['seconds']:7.1f} s  exit {proc.returncode}  {line}", file=sys.stderr)
        if proc.returncode:
            break
    return {"small": small, "lines": rows, "seconds": round(time.perf_counter() - started, 1),
            "passed": all(r["exit"] == 0 for r in rows) and len(rows) == len(
                tour_lines((ROOT / "README.md").read_text())),
            "learning": learning(workdir, env)}


def learning(workdir: Path, env: dict) -> dict:
    """What the tour's model shows: its final evaluation (metrics.jsonl of runs/cp) and a
    random policy's return on the same env, from the tour's own collected data."""
    out: dict = {}
    metrics = workdir / "runs" / "cp" / "metrics.jsonl"
    if metrics.exists():
        evals = [json.loads(x) for x in metrics.read_text().splitlines() if "eval/return_mean" in x]
        if evals:
            out["final_eval_return"] = evals[-1]["eval/return_mean"]
            out["final_eval_step"] = evals[-1]["step"]
    store = workdir / "data" / "cartpole.h5"
    if store.exists():
        info = subprocess.run(["wmtool", "data", "info", str(store), "--json"], env=env,
                              capture_output=True, text=True)
        if info.returncode == 0:
            stats = json.loads(info.stdout)
            out["random_return"] = stats["return"]["mean"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="shrunk budgets (the test suite's)")
    ap.add_argument("--workdir", type=Path, help="where the tour runs (default: a temp dir)")
    ap.add_argument("--record", action="store_true", help="write benchmarks/results/tour-*.json")
    ap.add_argument("--concurrent", default="nothing", help="what else ran on the machine")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wmtool-tour-"))
    result = run_tour(workdir, args.small)
    print(json.dumps(result, indent=1))
    if args.record:
        command = "python recipes/bench/tour.py" + (" --small" if args.small else "")
        rec = {**header("tour", command, args.concurrent), **result}
        save(rec, ROOT / "benchmarks" / "results", "tour")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
