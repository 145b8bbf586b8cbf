"""Rich progress and messages on stderr, silenced by --quiet; a command's result on stdout
(`results`: its summary lines and tables, or one JSON object with --json), so that
`wmtool runs > file` and `wmtool recipes list | grep x` get the result and nothing else."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
# wide when stdout is a file or a pipe: a table is not cut to 80 columns there
results = Console(width=None if Console().is_terminal else 1000)


def make_progress(quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=console, disable=quiet, transient=False,
        refresh_per_second=4)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message, highlight=False, soft_wrap=True)  # greppable: one line each


def throttled(fn, interval: float):
    """Call `fn` at most once per `interval` seconds: redraws must not slow hot loops."""
    last = [float("-inf")]

    def call(*args):
        now = time.perf_counter()
        if now - last[0] >= interval:
            last[0] = now
            fn(*args)

    return call
