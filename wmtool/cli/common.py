"""What every subcommand shares: option definitions, error formatting, JSON output."""
from __future__ import annotations

import errno
import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Optional

import typer

from wmtool import parallel
from wmtool.errors import STOPPED_BY_CTRL_C, STOPPED_BY_SIGTERM, Terminated, UsageError, WmtoolError
from wmtool.progress import console, results

# Set for the ranks `--nproc` starts: its launcher reports a lost rank, they stay quiet.
LAUNCHED_BY_WMTOOL = "WMTOOL_NPROC_LAUNCHER"
# Set from `--debug` anywhere on the command line (see wmtool.cli.main) or WMTOOL_DEBUG=1.
DEBUG = {"on": bool(os.environ.get("WMTOOL_DEBUG"))}

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="SUITE:TASK, e.g. gym:CartPole-v1, "
                                     "dmc:cartpole-swingup, atari:pong (see `wmtool envs`)")]
ObsOpt = Annotated[Optional[str], typer.Option(
    "--obs", help="state | pixels | both (default: the suite's; pixels are 64x64 RGB)")]
EnvImportOpt = Annotated[Optional[list[str]], typer.Option(
    "--env-import", help="python module to import first so it can register gymnasium envs")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="random seed")]
RecipeOpt = Annotated[Optional[str], typer.Option(
    "--recipe", help="experiment recipe: a YAML path or a name under recipes/exp/")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="override a config key, e.g. --set env.action_repeat=2 (repeatable)")]
RunOpt = Annotated[Path, typer.Option("--run", help="run directory made by `wmtool train`")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    "--checkpoint", help="checkpoint file (default: the run's latest)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", min=0, help="torch CPU threads (default: the run's runtime.threads; 0: "
    "one per available core)")]


# OSErrors a user fixes by choosing another place: named with the path, not as a crash
NOT_WRITABLE = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EROFS: "the file system is read-only"}


def fail_line(exc: BaseException) -> str:
    if isinstance(exc, WmtoolError):
        return f"error: {exc.message}" + (f"; {exc.hint}" if exc.hint else "")
    if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE and exc.filename:
        return (f"error: cannot write {exc.filename}: {NOT_WRITABLE[exc.errno]}; choose a "
                "directory you can write to")
    text = (str(exc).splitlines() or [""])[0]
    return f"error: {type(exc).__name__}: {text}; rerun with --debug for the traceback"


def command(fn):
    """Wrap a subcommand: WmtoolError and unexpected failures become one line + exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: one line, not a traceback
            if DEBUG["on"]:
                traceback.print_exc()
            name = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
            if not parallel.launched():  # a data-parallel rank's launcher speaks for it
                console.print(f"interrupted by {name}: finished work is saved", style="yellow",
                              highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(STOPPED_BY_SIGTERM if isinstance(exc, Terminated)
                             else STOPPED_BY_CTRL_C) from None
        except Exception as exc:  # noqa: BLE001 - the CLI boundary: report, don't crash
            if DEBUG["on"]:
                traceback.print_exc()
            w, lost = parallel.world(), isinstance(exc, parallel.LostRank)
            if not (lost and os.environ.get(LAUNCHED_BY_WMTOOL)):
                console.print((f"rank {w.rank}: " if w.size > 1 else "") + fail_line(exc),
                              style="red", highlight=False, markup=False, soft_wrap=True)
            code = 2 if isinstance(exc, UsageError) else 1
            raise typer.Exit(parallel.LOST_RANK_EXIT if lost else code) from None

    return wrapper


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def finish(result, json_: bool, quiet: bool, lines: Callable[[Any], Iterable]):
    """How a command ends: its result on stdout, as one JSON object (`--json`) or as its
    human summary, one line (or Rich table) at a time; nothing with `--quiet`."""
    if json_:
        emit_json(result)
    elif not quiet:
        for line in lines(result):
            results.print(line, highlight=False, markup=False, soft_wrap=True)
    return result


def env_flags(env: str | None, obs: str | None, env_import: list[str] | None) -> dict:
    """CLI env flags as a config layer (only the ones given)."""
    layer: dict = {}
    if env is not None:
        layer["id"] = env
    if obs is not None:
        layer["obs"] = obs
    if env_import:
        layer["imports"] = list(env_import)
    return {"env": layer} if layer else {}


def run_with_progress(session, label: str, quiet: bool) -> dict:
    """Run a TrainSession with its progress on stderr (steps or updates, rate, ETA, and the
    evaluations as a phase); close it."""
    from wmtool.launch.threads import tune_threads
    from wmtool.progress import Tracker, throttled

    session.trainer.thread_probe = tune_threads  # runtime.threads=0: measured here
    try:
        with Tracker(label, session.total, quiet) as tracker:
            def show(counters):
                tracker.update(session.clock(), session.status())

            session.trainer.on_progress = throttled(show, 0.5)
            session.trainer.on_phase = tracker.phase
            result = session.run()
            show(None)
    finally:
        session.close()
    return result


def eval_lines(result: dict) -> list[str]:
    """The final greedy evaluation of a training-like command, one line (if there was one)."""
    e = result.get("eval")
    return [f"eval ({e['episodes']} episodes, greedy): return {e['return_mean']:.1f} "
            f"± {e['return_std']:.1f}{planning_note(e)}"] if e else []


def planning_note(result: dict) -> str:
    """'; planning N ms per action' for agents that plan (PlaNet), '' for the others."""
    ms = result.get("plan/ms_per_action")
    return f"; planning {ms:.1f} ms per action" if ms is not None else ""
