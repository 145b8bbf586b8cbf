"""`wmtool runs` (a table of runs) and `wmtool compare` (curves over seeds)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import JsonOpt, QuietOpt, command, emit_json, finish
from wmtool.errors import WmtoolError
from wmtool.progress import results

RUNS_HELP = "Table of the runs under a directory: algo, env, steps, last eval return, status."
RUNS_EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 400 --set train.prefill=200 --set train.train_ratio=32 --set train.eval_every=200 --set train.eval_episodes=2 --run-dir runs/table/a --quiet

  wmtool runs runs/table

  wmtool runs runs/table --json
"""
COMPARE_HELP = ("Plot a metric (default greedy eval return) against agent steps for several runs; "
                "runs that differ only in seed are averaged, with their spread shaded.")
COMPARE_EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 400 --seed 1 --set train.prefill=200 --set train.train_ratio=32 --set train.eval_every=200 --set train.eval_episodes=2 --run-dir runs/table/b --quiet

  wmtool compare runs/table/a runs/table/b --plot plots/curves.png --json
"""


@command
def runs(root: Annotated[Path, typer.Argument(help="directory searched for runs")] = Path("runs"),
         json_: JsonOpt = False):
    from rich.table import Table

    from wmtool.runs import find_runs, summary

    rows = [summary(p) for p in find_runs(root)]
    if json_:
        for row in rows:  # one line per run: easy to filter in shell sweeps
            emit_json(row)
        return rows
    table = Table(title=f"runs under {root}")
    numbers = ("agent/env steps", "updates", "last eval")
    for column in ("run", "algo", "env", *numbers, "status"):  # mode: in --json
        # the run's name folds rather than being cut with "…": it must stay readable
        table.add_column(column, justify="right" if column in numbers else "left",
                         overflow="fold" if column == "run" else "ellipsis")
    fmt = lambda v, spec="": "-" if v is None else format(v, spec)
    for r in rows:
        table.add_row(str(Path(r["run"]).relative_to(root)) if Path(r["run"]) != root else ".",
                      fmt(r["algo"]), fmt(r["env"]),
                      f"{fmt(r['agent_steps'], ',')}/{fmt(r['env_steps'], ',')}",
                      fmt(r["updates"], ","), fmt(r["last_eval"], ".1f"), fmt(r["status"]))
    results.print(table)
    return rows


@command
def compare(run_dirs: Annotated[list[Path], typer.Argument(help="run directories")],
            plot: Annotated[Optional[Path], typer.Option(help="picture to write (.png/.pdf/.svg)")] = None,
            metric: Annotated[str, typer.Option(help="metric from metrics.jsonl")] = "eval/return_mean",
            json_: JsonOpt = False, quiet: QuietOpt = False):
    from wmtool import rundir
    from wmtool.runs import compare as gather
    from wmtool.runs import plot as draw

    for run in run_dirs:
        rundir.read_meta(run)  # a clear error for a path that is not a run
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise WmtoolError(f"--plot {plot}: unknown format", "use .png, .pdf or .svg")
    groups = gather(run_dirs, metric)
    if not groups:
        raise WmtoolError(f"no run logged {metric}", "try --metric episode/return")
    if plot is not None:
        draw(groups, metric, plot)
    result = {"metric": metric, "groups": groups, "plot": str(plot) if plot else None}
    return finish(result, json_, quiet, lambda r: [
        *(f"{g['label']}: {len(g['runs'])} runs, final {metric} {g['mean'][-1]:.1f} "
          f"± {g['std'][-1]:.1f} at step {g['steps'][-1]:,}" for g in groups),
        *([f"wrote {plot}"] if plot is not None else [])])
