"""Summaries across run directories: a table of runs and return-vs-step curves over seeds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wmtool import config, rundir
from wmtool.errors import WmtoolError


def find_runs(root: Path) -> list[Path]:
    root = Path(root)
    if not root.exists():
        raise WmtoolError(f"{root}: no such directory", "pass the directory holding your runs")
    return sorted(p.parent for p in root.rglob("run.json"))


def read_metrics(run: Path) -> list[dict]:
    """metrics.jsonl rows; a torn last line (killed run) is skipped."""
    rows = []
    file = Path(run) / "metrics.jsonl"
    if file.exists():
        for line in file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def curve(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric; when a resumed run logged a step twice, the later wins."""
    points = {int(r["step"]): float(r[metric]) for r in rows
              if isinstance(r.get(metric), (int, float))}
    steps = np.array(sorted(points), dtype=np.int64)
    return steps, np.array([points[s] for s in steps], dtype=np.float64)


def summary(run: Path) -> dict:
    """One row of `wmtool runs`; a run whose files are damaged is a row saying so."""
    try:
        return _summary(run)
    except WmtoolError as exc:
        return {"run": str(run), "algo": None, "env": None, "mode": None,
                "status": "corrupt", "error": exc.message, "created": None,
                "agent_steps": None, "env_steps": None, "updates": None, "last_eval": None}


def _summary(run: Path) -> dict:
    meta = rundir.read_meta(run)
    rows = read_metrics(run)
    counters = rundir.migrate_counters(meta.get("counters", {}))  # at the last checkpoint
    for row in rows:  # a killed run may have logged past its last checkpoint
        for key, value in row.items():
            name = key.partition("/")[2]
            if key.startswith("counters/") and name != "env_steps":  # derived, below
                counters[name] = max(int(value), counters.get(name, 0))
    counters.update(rundir.step_counts(counters, rundir.load_config(run).env.action_repeat))
    _, evals = curve(rows, "eval/return_mean")
    last_eval = meta.get("last_eval")
    if last_eval is None and len(evals):
        last_eval = float(evals[-1])
    return {"run": str(run), "algo": meta.get("algo"), "env": meta.get("env") or meta.get("data"),
            "mode": meta.get("mode"), "status": meta.get("status"), "created": meta.get("created"),
            "agent_steps": counters.get("agent_steps"),
            "env_steps": counters.get("env_steps"), "updates": counters.get("updates"),
            "last_eval": last_eval}


def group_key(run: Path) -> str:
    """Runs that differ only in seed, length or where they live form one group."""
    meta = rundir.read_meta(run)
    flat = config.flatten(rundir.load_config(run).to_dict())
    for key in ("seed", "train.steps"):
        flat.pop(key, None)
    return json.dumps({"algo": meta.get("algo"), "env": meta.get("env"), "mode": meta.get("mode"),
                       "config": flat}, sort_keys=True, default=str)


def compare(runs: list[Path], metric: str) -> list[dict]:
    """Per group: the union of logged steps, mean and std over runs (each run interpolated
    linearly inside its own logged range), and which runs it holds."""
    groups: dict[str, list[Path]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(Path(run))
    out = []
    for key, members in groups.items():
        curves = [curve(read_metrics(r), metric) for r in members]
        averaged = average(curves)
        if averaged is None:
            continue
        info = json.loads(key)
        out.append({"label": f"{info['algo']} {info['env'] or info['mode']}",
                    "runs": [str(r) for r in members], **averaged, "_config": info["config"]})
    _disambiguate(out)
    return out


def average(curves: list[tuple]) -> dict | None:
    """Mean and std over several (steps, values) curves on the union of their steps, each
    curve interpolated linearly inside its own range (seeds evaluate at slightly different
    steps); `count` says how many curves cover each step. None when every curve is empty."""
    curves = [(np.asarray(s), np.asarray(v)) for s, v in curves if len(s)]
    if not curves:
        return None
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    table = np.full((len(curves), len(grid)), np.nan)
    for i, (s, v) in enumerate(curves):
        inside = (grid >= s[0]) & (grid <= s[-1])
        table[i, inside] = np.interp(grid[inside], s, v)
    return {"steps": grid.tolist(), "mean": np.nanmean(table, 0).tolist(),
            "std": np.nanstd(table, 0).tolist(), "count": (~np.isnan(table)).sum(0).tolist()}


def _disambiguate(groups: list[dict]) -> None:
    """Groups with the same algo/env get the config keys that tell them apart in the label."""
    for g in groups:
        twins = [o for o in groups if o["label"] == g["label"] and o is not g]
        differing = sorted({k for o in twins for k in g["_config"]
                            if o["_config"].get(k) != g["_config"][k]})
        if differing:
            g["label_suffix"] = ", ".join(f"{k}={g['_config'][k]}" for k in differing[:3])
    for g in groups:
        if "label_suffix" in g:
            g["label"] += f" ({g.pop('label_suffix')})"
        g.pop("_config")


def plot(groups: list[dict], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for g in groups:
        draw_mean_std(ax, g, f"{g['label']} (n={len(g['runs'])})")
    ax.set_xlabel("env steps (offline runs: updates)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_mean_std(ax, group: dict, label: str, **style) -> None:
    """One averaged curve (`average`'s output) on matplotlib axes, its std shaded."""
    steps, mean, std = (np.array(group[k]) for k in ("steps", "mean", "std"))
    line, = ax.plot(steps, mean, label=label, **style)
    ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
