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
    from wmtool.runs import find_runs, summary

    rows = [summary(p) for p in find_runs(root)]
    if json_:
        for row in rows:  # one line per run: easy to filter in shell sweeps
            emit_json(row)
        return rows
    fmt = lambda v, spec="": "-" if v is None else format(v, spec)
    cells = [[str(Path(r["run"]).relative_to(root)) if Path(r["run"]) != root else ".",
              fmt(r["algo"]), fmt(r["env"]),
              f"{fmt(r['agent_steps'], ',')}/{fmt(r['env_steps'], ',')}",
              fmt(r["updates"], ","), fmt(r["last_eval"], ".1f"), fmt(r["status"])]
             for r in rows]
    results.print(runs_table(f"runs under {root}", cells, results.width))
    return rows


def runs_table(title: str, cells: list[list[str]], width: int):
    """The runs as a table `width` columns wide: no vertical rules, short columns whole,
    and the run's name and env folding onto more lines rather than cut with "…" (`gym:Car…`
    named nothing): they share what the others leave, the env first."""
    from rich import box
    from rich.table import Table

    heads = ["run", "algo", "env", "agent/env\nsteps", "updates", "last\neval", "status"]
    widest = [max([len(line) for line in head.split("\n")] + [len(row[i]) for row in cells])
              for i, head in enumerate(heads)]
    left = width - sum(widest[1:2] + widest[3:]) - 2 * len(heads)  # rules: 2 a column
    env = max(8, min(widest[2], left - 6))
    run = max(6, left - env)
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, head in enumerate(heads):
        folds = i in (0, 2)
        table.add_column(head, justify="right" if i in (3, 4, 5) else "left", no_wrap=not folds,
                         overflow="fold", max_width=(run, None, env)[i] if folds else None)
    for row in cells:
        table.add_row(*row)
    return table


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
