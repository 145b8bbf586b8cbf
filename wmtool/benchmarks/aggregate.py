"""Aggregates over tasks of normalised run scores, with stratified bootstrap intervals: the
arithmetic the Atari 100k summary (atari100k_aggregate.py) and the held-out suite
(suite_table.py) share.

Scores come as {task: array of each run's normalised score}. Mean and median are over tasks
of each task's mean; IQM (Agarwal et al., 2021) is the mean of the middle half of every run's
score pooled (a quarter of the runs cut from each end). The interval resamples each task's
runs (seeds) with replacement and takes the 2.5 and 97.5 percentiles of each aggregate.
"""
from __future__ import annotations

import numpy as np


def iqm(values) -> float:
    """The mean of the middle half: int(n / 4) values cut from each end (as
    scipy.stats.trim_mean(x, 0.25) cuts)."""
    x = np.sort(np.asarray(values, dtype=float).ravel())
    cut = int(0.25 * len(x))
    return float(x[cut:len(x) - cut].mean())


def aggregates(scores: dict[str, np.ndarray]) -> dict[str, float]:
    per_task = np.array([np.mean(v) for v in scores.values()])
    return {"mean": float(per_task.mean()), "median": float(np.median(per_task)),
            "iqm": iqm(np.concatenate([np.asarray(v, dtype=float) for v in scores.values()]))}


def bootstrap(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, list[float]]:
    """95% intervals of each aggregate: every task's runs resampled with replacement."""
    rng = np.random.default_rng(seed)
    arrays = {k: np.asarray(v, dtype=float) for k, v in scores.items()}
    samples: dict[str, list[float]] = {k: [] for k in ("mean", "median", "iqm")}
    for _ in range(reps):
        resampled = {k: v[rng.integers(0, len(v), len(v))] for k, v in arrays.items()}
        for key, value in aggregates(resampled).items():
            samples[key].append(value)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
            for k, v in samples.items()}
