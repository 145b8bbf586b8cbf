"""Atari 100k across games: human-normalised mean, median and IQM with stratified bootstrap
95% confidence intervals, from run records (recipes/bench/record.py).

    python recipes/bench/atari100k_aggregate.py RECORD.json... [--reference
        benchmarks/reference/atari_human_random.json] [--reps 2000] [--seed 0] [--json]

A run's score is its final weights' evaluation (`final_weights_eval`, the script's
EVAL_EPISODES greedy episodes) or, without one, its last evaluation during training.
Human-normalised score (HNS) = (score - random) / (human - random), per game from the
reference table. Mean and median are over games of each game's mean HNS over its runs;
IQM is the mean of the middle 50% of every run's HNS pooled. Confidence intervals: a
stratified bootstrap that resamples each game's runs with replacement `--reps` times
(recipes/bench/aggregate.py, shared with the held-out suite's summary).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wmtool.benchmarks.aggregate import aggregates, bootstrap

HERE = Path(__file__).resolve().parents[2]


def game_of(env_id: str) -> str:
    """'atari:bank_heist' or 'atari:bankheist' -> 'bankheist' (the reference's key form,
    without separators)."""
    return env_id.partition(":")[2].replace("_", "").replace("-", "").lower()


def run_score(record: dict) -> float:
    final = record.get("final_weights_eval") or record["final"]
    return float(final["return_mean"])


def normalised(scores: dict[str, list[float]], reference: dict) -> dict[str, np.ndarray]:
    table = {game_of(f"atari:{k}"): v for k, v in reference["games"].items()}
    out = {}
    for game, values in scores.items():
        if game not in table:
            raise SystemExit(f"no human/random scores for {game} in the reference table")
        lo, hi = table[game]["random"], table[game]["human"]
        out[game] = (np.asarray(values, dtype=float) - lo) / (hi - lo)
    return out


def summarise(records: list[dict], reference: dict, reps: int = 2000, seed: int = 0) -> dict:
    scores: dict[str, list[float]] = {}
    for r in records:
        scores.setdefault(game_of(r["env"]), []).append(run_score(r))
    hns = normalised(scores, reference)
    return {"games": len(hns), "runs": sum(len(v) for v in hns.values()),
            "per_game": {g: {"scores": scores[g], "hns_mean": float(v.mean())}
                         for g, v in sorted(hns.items())},
            **aggregates(hns), "ci95": bootstrap(hns, reps, seed),
            "bootstrap": f"stratified over each game's runs, {reps} resamples, seed {seed}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("records", nargs="+", type=Path)
    p.add_argument("--reference", type=Path,
                   default=HERE / "benchmarks/reference/atari_human_random.json")
    p.add_argument("--reps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    result = summarise([json.loads(f.read_text()) for f in a.records],
                       json.loads(a.reference.read_text()), a.reps, a.seed)
    if a.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['games']} games, {result['runs']} runs (human-normalised; 95% CI)")
    for key in ("mean", "median", "iqm"):
        lo, hi = result["ci95"][key]
        print(f"  {key:<6} {result[key]:8.3f}  [{lo:.3f}, {hi:.3f}]")
    for game, row in result["per_game"].items():
        print(f"  {game:<16} HNS {row['hns_mean']:7.3f}  scores {row['scores']}")


if __name__ == "__main__":
    main()
