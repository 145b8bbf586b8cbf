"""Progress and messages on stderr, silenced by --quiet; a command's result on stdout
(`results`: its summary lines and tables, or one JSON object with --json), so that
`wmtool runs > file` and `wmtool recipes list | grep x` get the result and nothing else.

Progress (`Tracker`) is a Rich bar on a terminal and a plain line every PLAIN_EVERY seconds
anywhere else (a pipe, a log file, a sweep's per-run log), so a run's log shows how far it
is; both give an ETA from the recent rate and name a phase such as the final evaluation."""
from __future__ import annotations

import collections
import datetime
import os
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)
# wide when stdout is a file or a pipe: a table is not cut to 80 columns there
results = Console(width=None if Console().is_terminal else 1000)


# seconds between plain progress lines (WMTOOL_PROGRESS_EVERY overrides, e.g. for tests)
PLAIN_EVERY = float(os.environ.get("WMTOOL_PROGRESS_EVERY", 30))
RECENT_S = 60.0  # the ETA's rate: progress over about the last minute


class Tracker:
    """One long task's progress (see the module docstring). `update` as work is done,
    `phase` around a stretch that moves no counter (evaluating); a context manager."""

    def __init__(self, label: str, total: int, quiet: bool = False):
        self.label, self.total, self.quiet = label, max(int(total), 1), quiet
        self.done, self.status, self.what = 0, "", ""
        self.start = time.monotonic()
        self.points: collections.deque = collections.deque([(self.start, 0)])
        self.bar = None
        if not quiet and console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"), console=console, transient=False,
                refresh_per_second=4)
        self.last_line, self.lined = self.start, -1

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, status="", eta="")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif not self.quiet and exc[0] is None and self.lined != self.done:
            self._line()  # where it ended, unless the last line said so already

    def update(self, done: int, status: str = "") -> None:
        now = time.monotonic()
        self.done, self.status = min(int(done), self.total), status
        self.points.append((now, self.done))
        while len(self.points) > 2 and now - self.points[1][0] > RECENT_S:
            self.points.popleft()
        self._show(now)

    def phase(self, what: str) -> None:
        """Name what happens now ("evaluating (10 episodes)"), or "" when it is over."""
        self.what = what
        if what and not self.quiet and self.bar is None:
            console.print(f"{self.label}: {what}", highlight=False, soft_wrap=True)
        self._show(time.monotonic(), force=bool(what))

    def eta(self) -> str:
        """Time left at the rate of about the last minute ('-' before there is one)."""
        (t0, d0), (t1, d1) = self.points[0], self.points[-1]
        if d1 <= d0 or t1 <= t0:
            return "-"
        left = (self.total - self.done) * (t1 - t0) / (d1 - d0)
        return str(datetime.timedelta(seconds=round(left)))

    def _show(self, now: float, force: bool = False) -> None:
        if self.quiet:
            return
        status = " | ".join(part for part in (self.status, self.what) if part)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, status=status,
                            eta=f"ETA {self.eta()}")
        elif now - self.last_line >= PLAIN_EVERY and not force:
            self._line()

    def _line(self) -> None:
        self.last_line, self.lined = time.monotonic(), self.done
        elapsed = datetime.timedelta(seconds=round(self.last_line - self.start))
        status = f"  {self.status}" if self.status else ""
        console.print(f"{self.label} {self.done:,}/{self.total:,} "
                      f"({100 * self.done / self.total:.0f}%) {elapsed} elapsed, ETA "
                      f"{self.eta()}{status}", highlight=False, soft_wrap=True)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message, highlight=False, soft_wrap=True)  # greppable: one line each


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def warn(message: str) -> None:
    """A line the user must see even with --quiet (e.g. data a run leaves out)."""
    console.print(f"warning: {message}", style="yellow", highlight=False, markup=False,
                  soft_wrap=True)


def throttled(fn, interval: float):
    """Call `fn` at most once per `interval` seconds: redraws must not slow hot loops."""
    last = [float("-inf")]

    def call(*args):
        now = time.perf_counter()
        if now - last[0] >= interval:
            last[0] = now
            fn(*args)

    return call
