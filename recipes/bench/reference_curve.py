"""A published learning curve from an authors' released score file, for
benchmarks/reference/ (numbers only; see its README.md).

    python recipes/bench/reference_curve.py SCORES.json[.gz] --repo danijar/dreamerv3 \
        --path scores/dmc_vision-dreamerv3.json.gz --commit COMMIT --protocol "..." \
        [--tasks cartpole-swingup finger-spin ...] [--bin 10000] [--until 500000] \
        [--points | --baseline planet_1e6 --at 1000000] > out.json

It prints one algorithm's entry of a reference file (as "dreamerv3" in dmc_proprio.json):
source, protocol, how runs compare with it, tasks. Three kinds of file:

- training episodes (DreamerV3): a list of runs ({task, method, seed, xs, ys}: env steps at
  the end of each training episode and its return). Each seed's episodes are binned with
  `curves.authors_bins` (the authors' plot.py binning); a bin's value is the mean over the
  seeds that have episodes in it of each seed's mean, rounded to 0.1. Runs compare their
  training episodes in the same bins.
- measured points (`--points`, Dreamer V1's scores/dreamer.json): the same list, but each x
  is a point where the authors measured a return; a point's value is the mean over the
  seeds that measured it. Runs compare their final evaluation with a point within 10% of
  their budget, and are shown the points either side otherwise (never a value between).
- a table of baselines (`--baseline KEY --at STEPS`, danijar/dreamer's
  scores/baselines.json: {task: {method_budget: return}}): the value under KEY, one point
  at STEPS env steps.
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

from wmtool.benchmarks.curves import authors_bins


def wmtool_task(source_task: str) -> str:
    """The authors' task name as wmtool's: dmc_ball_in_cup_catch -> dmc:ball_in_cup-catch."""
    name = source_task.removeprefix("dmc_")
    if name.startswith("cup_"):  # Dreamer V1's files call ball_in_cup "cup"
        name = "ball_in_" + name
    domain = "ball_in_cup" if name.startswith("ball_in_cup") else name.split("_")[0]
    return f"dmc:{domain}-{name[len(domain) + 1:]}"


def wanted(task: str, tasks: list[str] | None) -> bool:
    return not tasks or task.removeprefix("dmc:") in tasks


def curve(runs: list[dict], bin_size: int, until: int) -> list[list[float]]:
    per_seed = [dict((edge, mean) for edge, mean, _ in
                     authors_bins([[x, y] for x, y in zip(r["xs"], r["ys"])], bin_size, until))
                for r in runs]
    edges = sorted({edge for bins in per_seed for edge in bins})
    return [[edge, round(float(np.mean([b[edge] for b in per_seed if edge in b])), 1)]
            for edge in edges]


def measured(runs: list[dict], until: int) -> list[list[float]]:
    """The mean over the seeds that measured each point, up to `until` env steps."""
    by_x: dict[float, list[float]] = {}
    for r in runs:
        for x, y in zip(r["xs"], r["ys"]):
            if x <= until:
                by_x.setdefault(x, []).append(y)
    return [[int(x), round(float(np.mean(ys)), 1)] for x, ys in sorted(by_x.items())]


def reference(runs: list[dict], tasks: list[str] | None, bin_size: int, until: int,
              points: bool = False) -> dict:
    by_task: dict[str, list[dict]] = {}
    for r in runs:
        by_task.setdefault(r["task"], []).append(r)
    out = {}
    for source_task, members in sorted(by_task.items()):
        task = wmtool_task(source_task)
        if not wanted(task, tasks):
            continue
        out[task] = {"seeds": len({r["seed"] for r in members}), "source_task": source_task,
                     "curve": measured(members, until) if points
                     else curve(members, bin_size, until)}
    return out


def baseline(table: dict, key: str, at: int, tasks: list[str] | None) -> dict:
    """One point per task: the table's value under `key`, at `at` env steps."""
    out = {}
    for source_task, methods in sorted(table.items()):
        task = wmtool_task(source_task)
        if key in methods and wanted(task, tasks):
            out[task] = {"source_task": source_task, "curve": [[at, float(methods[key])]]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scores", type=Path)
    p.add_argument("--repo", required=True)
    p.add_argument("--path", required=True, help="the score file's path in --repo")
    p.add_argument("--commit", required=True)
    p.add_argument("--protocol", required=True, help="what the authors' numbers measure")
    p.add_argument("--tasks", nargs="*", help="wmtool task names (default: every task)")
    p.add_argument("--bin", type=int, default=10_000)
    p.add_argument("--until", type=int, default=500_000)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--points", action="store_true",
                      help="each x is a measured point (not the end of a training episode)")
    kind.add_argument("--baseline", metavar="KEY",
                      help="the file is {task: {KEY: return}}; one point per task at --at")
    p.add_argument("--at", type=int, help="env steps of a --baseline value")
    a = p.parse_args()
    raw = a.scores.read_bytes()
    data = json.loads(gzip.decompress(raw) if a.scores.suffix == ".gz" else raw)
    entry = {"source": {"repo": a.repo, "path": a.path, "commit": a.commit},
             "protocol": a.protocol}
    if a.baseline:
        if a.at is None:
            raise SystemExit("error: --baseline needs --at, the env steps of its values")
        entry["compare"] = {"with": "final_evaluation"}
        entry["tasks"] = baseline(data, a.baseline, a.at, a.tasks)
    else:
        methods = {r["method"] for r in data}
        if len(methods) != 1:
            raise SystemExit(f"error: {a.scores} holds methods {sorted(methods)}; "
                             "give the file of one method")
        entry["compare"] = {"with": "final_evaluation"} if a.points else {
            "with": "training_episodes", "bin": a.bin,
            "note": "a run's training-episode returns binned as the authors' episodes are "
                    "here (curves.authors_bins)"}
        entry["tasks"] = reference(data, a.tasks, a.bin, a.until, a.points)
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
