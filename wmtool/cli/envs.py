"""`wmtool envs`: the environment suites, with examples or every task of one suite."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from wmtool.cli.common import JsonOpt, command, finish
from wmtool.registry import SUITES, lookup

HELP = "List environment suites with example ids, or every task of one suite."
EXAMPLES = "Examples:\n\n  wmtool envs\n\n  wmtool envs --suite dmc --json"


@command
def envs(suite: Annotated[Optional[str], typer.Option(help="list every task of this suite")] = None,
         json_: JsonOpt = False):
    if suite:
        entry = lookup(SUITES, suite, "env suite")
        tasks = [f"{suite}:{t}" for t in entry.load(entry.tasks)()]
        finish({"suite": suite, "tasks": tasks}, json_, False, lambda r: r["tasks"])
        return
    finish({name: {"summary": e.summary, "examples": list(e.examples)}
            for name, e in SUITES.items()}, json_, False, lambda suites: [_table(suites)])


def _table(suites: dict) -> Table:
    table = Table(title="environment suites (--env SUITE:TASK)")
    for column in ("suite", "what", "examples"):
        table.add_column(column)
    for name, entry in suites.items():
        table.add_row(name, entry["summary"], ", ".join(entry["examples"]))
    return table
