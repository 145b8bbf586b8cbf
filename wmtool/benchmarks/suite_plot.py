"""The held-out suite's learning curves as one picture (part of `make tables`), drawn from the
run records, never from run directories: one panel per task (the tuning tasks' labelled as
such). Per algorithm: the mean ± std over seeds of every seeded evaluation during training
against env steps (a line: measured at each point), the final evaluation as a star, and the
runs' training-episode returns binned as the authors bin theirs (open circles); the authors'
published points as filled markers, never joined (benchmarks/reference/dmc_proprio.json:
DreamerV3's are training-episode returns every 10,000 env steps, TD-MPC2's planning
evaluations every 100,000), and a random policy's return (dotted).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wmtool.benchmarks.curves import authors_bins
from wmtool.benchmarks.suite_table import STATE, Suite, final_evaluation, held_and_tuning
from wmtool.runs import average, draw_mean_std

COLOURS = {"dreamerv3": "tab:blue", "tdmpc2": "tab:orange", "dreamerv2": "tab:green",
           "dreamerv1": "tab:red", "planet": "tab:purple"}
TRAINING_BIN = 10_000  # the authors' DreamerV3 bins, for every algorithm's training returns


def training_curve(records: list[dict]) -> tuple[list[int], list[float]]:
    """The seeds' mean of their binned training-episode returns, at bins every seed has."""
    per_seed = [{edge: mean for edge, mean, _ in
                 authors_bins(r["training_episodes"], TRAINING_BIN, r["budget"]["env_steps"])}
                for r in records if r.get("training_episodes")]
    if not per_seed or len(per_seed) < len(records):
        return [], []
    edges = sorted(set.intersection(*(set(s) for s in per_seed)))
    return edges, [float(np.mean([s[e] for s in per_seed])) for e in edges]


def _panel(ax, env: str, members: dict, reference: dict, random: dict | None,
           suite: Suite = STATE) -> None:
    right = 0
    for algo, records in sorted(members.items()):
        colour = COLOURS[algo]
        curves = [([e["env_steps"] for e in r["evaluations"] if not e.get("final")],
                   [e["return_mean"] for e in r["evaluations"] if not e.get("final")])
                  for r in records]
        first = records[0]["evaluations"][:1]
        mode = first[0].get("mode", "?") if first else "?"
        averaged = average(curves)
        if averaged:
            draw_mean_std(ax, averaged, f"{algo} evaluations ({mode}, n={len(records)})",
                          color=colour)
        finals = [final_evaluation(r) for r in records]
        ax.plot([records[0]["budget"]["env_steps"]], [np.mean([v for v, _ in finals])], "*",
                color=colour, markersize=11, label=f"{algo} final ({finals[0][1]})")
        edges, means = training_curve(records)
        if edges:
            ax.plot(edges, means, "o", mfc="none", color=colour, markersize=5,
                    label=f"{algo} training episodes, {TRAINING_BIN // 1000}k bins")
        right = max(right, max(r["budget"]["env_steps"] for r in records))
    right = int(right * 1.1) or 50_000
    for algo in suite.algos:
        curve = reference.get(algo, {}).get("tasks", {}).get(env, {}).get("curve", [])
        shown = [(x, y) for x, y in curve if x <= right]
        if shown:
            ax.plot([p[0] for p in shown], [p[1] for p in shown], "s", color=COLOURS[algo],
                    alpha=0.6, markersize=5, linestyle="none", label=f"published {algo}")
    if random:
        ax.axhline(random["return_mean"], color="grey", linestyle=":", label="random policy")
    ax.set_xlim(0, right)
    ax.set_ylim(0, 1000)
    ax.grid(alpha=0.3)
    tuning = " (tuning task, seeds 0-2: not a result)" if env in suite.tuning else ""
    ax.set_title(f"{env}{tuning}", fontsize=9)
    ax.set_xlabel("env steps", fontsize=8)
    ax.set_ylabel("return", fontsize=8)
    ax.legend(fontsize=5.5, loc="upper left")


def plot(records: list[dict], reference: dict, path: Path, suite: Suite = STATE) -> Path | None:
    """Writes the picture; None (and nothing written) when no record is in the suite."""
    held, tuning = held_and_tuning(records, suite)
    if not held and not tuning:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task: dict = {env: {} for env in (*suite.tuning, *suite.tasks)}
    for (env, algo, _), members in {**tuning, **held}.items():
        by_task[env].setdefault(algo, []).extend(members)
    by_task = {env: members for env, members in by_task.items() if members}
    randoms = {r["env"]: r for r in records if r.get("kind") == "random"}
    columns = 3
    rows = -(-len(by_task) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(13, 3.8 * rows), dpi=90, squeeze=False)
    for ax, (env, members) in zip(axes.flat, by_task.items()):
        _panel(ax, env, members, reference, randoms.get(env), suite)
    for ax in list(axes.flat)[len(by_task):]:
        ax.axis("off")
    fig.suptitle(f"Held-out suite, {suite.name}: frozen recipe, mean ± std over seeds; "
                 "published points are the authors' measurements under their own protocols "
                 "(benchmarks/reference/README.md)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
