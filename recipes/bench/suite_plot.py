"""The held-out suite's learning curves as one picture (part of `make tables`), drawn from the
run records, never from run directories: one panel per task (the tuning task's labelled as
such), per algorithm the mean ± std over seeds of every seeded evaluation against env steps,
TD-MPC2's final-weights planning score as a marker, the authors' published curves
(benchmarks/reference/dmc_proprio.json; dashed, a different protocol each) and a random
policy's return (dotted).
"""
from __future__ import annotations

import sys
from pathlib import Path

from wmtool.runs import average, draw_mean_std

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipes/bench: suite_table.py
from suite_table import ALGOS, HELD_OUT_FROM, SUITE, TUNING, groups  # noqa: E402

COLOURS = {"dreamerv3": "tab:blue", "tdmpc2": "tab:orange"}


def _panel(ax, env: str, members: dict, reference: dict, random: dict | None) -> None:
    right = 0
    for algo, records in sorted(members.items()):
        curves = [([e["env_steps"] for e in r["evaluations"]],
                   [e["return_mean"] for e in r["evaluations"]]) for r in records]
        mode = records[0]["final"]["mode"]
        draw_mean_std(ax, average(curves), f"{algo} (n={len(records)}, {mode})",
                      color=COLOURS[algo])
        planned = [r["final_weights_eval"]["return_mean"] for r in records
                   if r.get("final_weights_eval")]
        if planned:
            ax.plot([records[0]["budget"]["env_steps"]], [sum(planned) / len(planned)], "*",
                    color=COLOURS[algo], markersize=10, label=f"{algo} final weights, planning")
        right = max(right, max(r["budget"]["env_steps"] for r in records))
    right = int(right * 1.05) or 50_000
    for algo in ALGOS:
        curve = reference.get(algo, {}).get("tasks", {}).get(env, {}).get("curve", [])
        if curve:
            ax.plot([p[0] for p in curve], [p[1] for p in curve], "--", color=COLOURS[algo],
                    alpha=0.6, label=f"published {algo}")
    if random:
        ax.axhline(random["return_mean"], color="grey", linestyle=":", label="random policy")
    ax.set_xlim(0, right)
    ax.set_ylim(0, 1000)
    ax.grid(alpha=0.3)
    tuning = " (tuning task, seeds 0-2: not a result)" if env == TUNING else ""
    ax.set_title(f"{env}{tuning}", fontsize=9)
    ax.set_xlabel("env steps", fontsize=8)
    ax.set_ylabel("return", fontsize=8)
    ax.legend(fontsize=6, loc="upper left")


def plot(records: list[dict], reference: dict, path: Path) -> Path | None:
    """Writes the picture; None (and nothing written) when no record is in the suite."""
    held = groups(records, SUITE, lambda seed: seed >= HELD_OUT_FROM)
    tuning = groups(records, (TUNING,), lambda seed: seed < HELD_OUT_FROM)
    if not held and not tuning:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task: dict = {env: {} for env in (TUNING, *SUITE)}
    for (env, algo, _), members in {**tuning, **held}.items():
        by_task[env].setdefault(algo, []).extend(members)
    randoms = {r["env"]: r for r in records if r.get("kind") == "random"}
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), dpi=90)
    for ax, (env, members) in zip(axes.flat, by_task.items()):
        _panel(ax, env, members, reference, randoms.get(env))
    fig.suptitle("Held-out suite: final recipe, mean ± std over seeds (published curves use "
                 "their authors' protocols, see benchmarks/reference/README.md)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
