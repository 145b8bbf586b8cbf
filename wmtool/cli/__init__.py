"""The `wmtool` command line: thin Typer commands over the engine (docs/commands.md).

Exit codes: 0 success, 1 runtime failure (one line with the cause and a fix), 2 usage error,
3 a data-parallel rank that lost contact with the others (one of them failed first).
`--json` prints one object on stdout; progress and messages go to stderr.
"""
from __future__ import annotations

import signal
import sys

import typer
from typer import rich_utils
from typer._click.exceptions import UsageError

from wmtool import rundir
from wmtool.cli import (
    bench,
    collect,
    data,
    dream,
    envs,
    eval,
    export,
    imagine,
    play,
    recipes,
    runs,
    sweep,
    train,
)
from wmtool.cli.common import DEBUG
from wmtool.engine import distributed
from wmtool.errors import Terminated


def _usage_error_in_one_line(error) -> None:
    """Typer draws a usage error (a bad or missing option) as a boxed panel of several lines;
    every other error of wmtool's is one line naming the cause and the fix, so these are too
    (exit 2, as before). Other click errors keep Typer's rendering."""
    if isinstance(error, UsageError):
        where = error.ctx.command_path if error.ctx else "wmtool"
        sys.stderr.write(f"error: {error.format_message().rstrip('.')}; see `{where} --help`\n")
    else:
        _typer_error(error)


_typer_error = rich_utils.rich_format_error
rich_utils.rich_format_error = _usage_error_in_one_line  # typer looks it up at each error

app = typer.Typer(
    name="wmtool", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="World-model reinforcement learning from the command line. "
         "Add --debug to any command for full tracebacks, --trust-run to let a run directory "
         "import the python modules its env names.")
app.command("collect", help=collect.HELP, epilog=collect.EXAMPLES)(collect.collect)
app.command("train", help=train.HELP, epilog=train.EXAMPLES)(train.train)
app.command("eval", help=eval.HELP, epilog=eval.EXAMPLES)(eval.eval_)
app.command("dream", help=dream.HELP, epilog=dream.EXAMPLES)(dream.dream)
app.command("imagine", help=imagine.HELP, epilog=imagine.EXAMPLES)(imagine.imagine)
app.command("export", help=export.HELP, epilog=export.EXAMPLES)(export.export)
app.command("play", help=play.HELP, epilog=play.EXAMPLES)(play.play)
app.command("runs", help=runs.RUNS_HELP, epilog=runs.RUNS_EXAMPLES)(runs.runs)
app.command("compare", help=runs.COMPARE_HELP, epilog=runs.COMPARE_EXAMPLES)(runs.compare)
app.command("bench", help=bench.HELP, epilog=bench.EXAMPLES)(bench.bench)
app.command("sweep", help=sweep.HELP, epilog=sweep.EXAMPLES)(sweep.sweep)
app.add_typer(envs.app, name="envs")
app.add_typer(data.app, name="data")
app.add_typer(recipes.app, name="recipes")


def _terminate(signum, frame) -> None:
    """The first SIGTERM stops the command as Ctrl-C does (checkpoint, store closed, status
    "interrupted"); a second one kills at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    argv = sys.argv[1:]
    if "--debug" in argv:
        DEBUG["on"] = True
        argv = [a for a in argv if a != "--debug"]
    if "--trust-run" in argv:  # let run directories import their env's modules
        rundir.TRUST["on"] = True
        argv = [a for a in argv if a != "--trust-run"]
    if not distributed.in_a_group():
        app(args=argv, prog_name="wmtool")
        return
    try:
        app(args=argv, prog_name="wmtool")
    except SystemExit as done:
        distributed.end_rank(done.code)
    distributed.end_rank(0)
