"""`wmtool eval`: score a trained policy in the real environment."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import (
    CheckpointOpt,
    JsonOpt,
    QuietOpt,
    RunOpt,
    ThreadsOpt,
    command,
    finish,
    planning_note,
)
from wmtool.errors import WmtoolError

HELP = ("Score a run's policy in the real environment (mean, std, min, max return), or with "
        "--data its world model's losses on held-out episodes next to an untrained model's.")
EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 400 --set train.prefill=200 --set train.train_ratio=32 --run-dir runs/ev --quiet

  wmtool eval --run runs/ev --episodes 3 --json

  wmtool eval --run runs/ev --episodes 1 --mode sample --video videos/ev.mp4

  wmtool collect --env gym:CartPole-v1 --episodes 3 --seed 99 --out data/heldout.h5 --quiet

  wmtool eval --run runs/ev --data data/heldout.h5 --json
"""


@command
def eval_(
    run: RunOpt,
    checkpoint: CheckpointOpt = None,
    episodes: Annotated[int, typer.Option(min=1, help="episodes to play")] = 10,
    mode: Annotated[str, typer.Option(
        help="greedy | sample | prior (TD-MPC2: the policy prior alone, no planning)")] = "greedy",
    video: Annotated[Optional[Path], typer.Option(help="record what the agent saw (.mp4/.gif)")] = None,
    env: Annotated[Optional[str], typer.Option(help="env for runs trained offline without one")] = None,
    seed: Annotated[int, typer.Option(help="seed of the evaluation episodes")] = 12345,
    data: Annotated[Optional[Path], typer.Option(
        help="held-out HDF5 episodes: report the model's losses on them instead of playing")] = None,
    batches: Annotated[int, typer.Option(min=1, help="--data: batches per phase")] = 8,
    threads: ThreadsOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool.engine import evaluation
    from wmtool.engine.loading import load_run
    from wmtool.progress import Tracker

    if episodes < 1:
        raise WmtoolError("--episodes must be at least 1")
    loaded = load_run(run, checkpoint, optimizers=False, threads=threads)
    if data is not None:
        result = evaluation.on_data(loaded, data, batches, seed)
        return finish(result, json_, quiet, data_lines)
    with Tracker("eval", episodes, quiet) as tracker:
        result = {**evaluation.play(loaded, episodes, mode, env, seed, video, tracker.update),
                  "threads": loaded.threads}
    return finish(result, json_, quiet, lambda r: [
        f"{episodes} episodes ({mode}): return {r['return_mean']:.2f} ± {r['return_std']:.2f} "
        f"(min {r['return_min']:.2f}, max {r['return_max']:.2f})" + planning_note(r)
        + (f"; video {video}" if video else "")])


def data_lines(result: dict) -> list[str]:
    """Per phase, each loss next to the untrained model's; a model's own report flattened,
    one score per line."""
    from wmtool.config import flatten

    if "phases" in result:
        return [f"{phase}: " + ", ".join(
            f"{k} {pair['trained'][k]:.4g} (untrained {pair['untrained'][k]:.4g})"
            for k in pair["trained"]) for phase, pair in result["phases"].items()]
    shown = lambda value: f"{value:.4g}" if isinstance(value, float) else (
        ", ".join(f"{v:.3g}" for v in value) if isinstance(value, (list, tuple)) else value)
    return [f"{key}: {shown(value)}" for key, value in flatten(result).items()]
