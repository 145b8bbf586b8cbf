"""`wmtool imagine`: train behaviour purely inside a run's frozen world model."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import (
    JsonOpt,
    QuietOpt,
    SetOpt,
    command,
    eval_lines,
    finish,
    run_with_progress,
)
from wmtool.errors import WmtoolError

HELP = ("Train behaviour purely inside a run's frozen world model, from real start states "
        "(the run's replay or --data), with no env steps; evaluates in the real env at the end.")
EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 600 --set train.prefill=300 --set train.train_ratio=32 --run-dir runs/im --quiet

  wmtool imagine --run runs/im --steps 50 --run-dir runs/im-behaviour --eval-episodes 3 --json

  wmtool imagine --run runs/im --steps 50 --from-scratch --run-dir runs/im-scratch --set actor.lr=1e-4 --quiet

  wmtool imagine --run runs/wm --steps 3 --set mdnrnn.temperature=1.15 --set controller.popsize=8 --set controller.rollouts=2 --set controller.horizon=50 --eval-episodes 1 --run-dir runs/wm-dream
"""


@command
def imagine(
    run: Annotated[Path, typer.Option(help="run whose world model to use (made by `wmtool train`)")],
    steps: Annotated[int, typer.Option(min=1, help="behaviour updates (CMA-ES: generations)")] = 1000,
    run_dir: Annotated[Optional[Path], typer.Option(help="new run directory (default RUN-imagine)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="start states from this HDF5 dataset")] = None,
    env: Annotated[Optional[str], typer.Option(help="env to evaluate in (default: the run's)")] = None,
    eval_every: Annotated[int, typer.Option(min=0, help="updates between evaluations (0: only at the end)")] = 0,
    eval_episodes: Annotated[int, typer.Option(min=0, help="episodes per evaluation (0: none)")] = 10,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="start the behaviour from fresh weights")] = False,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool.engine.session import TrainSession
    from wmtool.envs.vector import VecEnv

    if steps < 1 or eval_every < 0 or eval_episodes < 0:
        raise WmtoolError("--steps must be >= 1, --eval-every and --eval-episodes >= 0")
    session = TrainSession.imagine(run, run_dir, data, env, list(set_ or ()), steps,
                                   eval_every, eval_episodes, from_scratch, quiet)
    env_steps_before = VecEnv.steps_taken
    result = run_with_progress(session, "imagine", quiet)
    eval_steps = session.eval_vec.steps_taken_here if session.eval_vec is not None else 0
    result["env_steps_training"] = VecEnv.steps_taken - env_steps_before - eval_steps
    result["env_steps_evaluation"] = eval_steps
    result["imagined_steps"] = result["updates"] * session.agent.behavior.imagined_per_update()
    result["imagined_steps_per_s"] = round(result["imagined_steps"] / max(result["seconds"], 1e-9))
    result["source"] = str(run)
    return finish(result, json_, quiet, lambda r: [
        f"done: {r['updates']} behaviour updates, {r['imagined_steps']:,} imagined steps "
        f"({r['imagined_steps_per_s']:,}/s), {r['env_steps_training']} env steps for training; "
        f"run directory {r['run_dir']}", *eval_lines(r)])
