"""A published learning curve from DreamerV3's authors' released score file, binned as they
bin it, for benchmarks/reference/ (numbers only; see its README.md).

    python recipes/bench/reference_curve.py SCORES.json.gz --repo danijar/dreamerv3 \
        --path scores/dmc_vision-dreamerv3.json.gz --commit COMMIT --protocol "..." \
        [--tasks cartpole-swingup finger-spin ...] [--bin 10000] [--until 500000] > out.json

It prints one algorithm's entry of a reference file (as "dreamerv3" in dmc_proprio.json):
source, protocol, how runs compare with it (training episodes in the same bins), tasks.

The file is a list of runs ({task, method, seed, xs, ys}: env steps at the end of each
training episode and its return). Each seed's episodes are binned with `curves.authors_bins`
(the authors' plot.py binning); a bin's value is the mean over the seeds that have episodes
in it of each seed's mean, rounded to 0.1.
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
    domain = "ball_in_cup" if name.startswith("ball_in_cup") else name.split("_")[0]
    return f"dmc:{domain}-{name[len(domain) + 1:]}"


def curve(runs: list[dict], bin_size: int, until: int) -> list[list[float]]:
    per_seed = [dict((edge, mean) for edge, mean, _ in
                     authors_bins([[x, y] for x, y in zip(r["xs"], r["ys"])], bin_size, until))
                for r in runs]
    edges = sorted({edge for bins in per_seed for edge in bins})
    return [[edge, round(float(np.mean([b[edge] for b in per_seed if edge in b])), 1)]
            for edge in edges]


def reference(runs: list[dict], tasks: list[str] | None, bin_size: int, until: int) -> dict:
    by_task: dict[str, list[dict]] = {}
    for r in runs:
        by_task.setdefault(r["task"], []).append(r)
    out = {}
    for source_task, members in sorted(by_task.items()):
        task = wmtool_task(source_task)
        if tasks and task.removeprefix("dmc:") not in tasks:
            continue
        out[task] = {"seeds": len({r["seed"] for r in members}), "source_task": source_task,
                     "curve": curve(members, bin_size, until)}
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
    a = p.parse_args()
    runs = json.loads(gzip.decompress(a.scores.read_bytes()))
    methods = {r["method"] for r in runs}
    if len(methods) != 1:
        raise SystemExit(f"error: {a.scores} holds methods {sorted(methods)}; "
                         "give the file of one method")
    methods.pop()
    print(json.dumps({
        "source": {"repo": a.repo, "path": a.path, "commit": a.commit},
        "protocol": a.protocol,
        "compare": {"with": "training_episodes", "bin": a.bin,
                    "note": "a run's training-episode returns binned as the authors' episodes "
                            "are here (curves.authors_bins)"},
        "tasks": reference(runs, a.tasks, a.bin, a.until)}, indent=1))


if __name__ == "__main__":
    main()
