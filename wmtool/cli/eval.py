"""`wmtool eval`: score a trained policy in the real environment."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import JsonOpt, QuietOpt, command, emit_json, planning_note
from wmtool.errors import WmtoolError
from wmtool.progress import info

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
    run: Annotated[Path, typer.Option(help="run directory made by `wmtool train`")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="checkpoint (default latest)")] = None,
    episodes: Annotated[int, typer.Option(min=1, help="episodes to play")] = 10,
    mode: Annotated[str, typer.Option(
        help="greedy | sample | prior (TD-MPC2: the policy prior alone, no planning)")] = "greedy",
    video: Annotated[Optional[Path], typer.Option(help="record what the agent saw (.mp4/.gif)")] = None,
    env: Annotated[Optional[str], typer.Option(help="env for runs trained offline without one")] = None,
    seed: Annotated[int, typer.Option(help="seed of the evaluation episodes")] = 12345,
    data: Annotated[Optional[Path], typer.Option(
        help="held-out HDF5 episodes: report the model's losses on them instead of playing")] = None,
    batches: Annotated[int, typer.Option(min=1, help="--data: batches per phase")] = 8,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool.engine.loading import load_run
    from wmtool.engine.session import make_vec
    from wmtool.engine.train import evaluate
    from wmtool.rundir import migrate_counters, step_counts
    from wmtool.video import write_video

    if episodes < 1:
        raise WmtoolError("--episodes must be at least 1")
    loaded = load_run(run, checkpoint, optimizers=False)
    if data is not None:
        return _heldout(loaded, data, batches, seed, json_, quiet)
    if not loaded.agent.modes:  # e.g. Genie, which learns from frames alone
        raise WmtoolError(f"{loaded.agent.algo} has no policy for the real env",
                          "score its model with `wmtool eval --run RUN --data FILE.h5`")
    if mode not in loaded.agent.modes:
        raise WmtoolError(f"--mode {mode}: {loaded.agent.algo} does not act that way",
                          f"use one of {', '.join(loaded.agent.modes)}")
    # a vector-observation agent's video: render frames beside what it observes
    record_render = video is not None and "image" not in loaded.agent.obs_space
    eval_cfg = loaded.env_config(env, **({"obs": "both"} if record_render else {}))
    env_id = eval_cfg.env.id
    vec = make_vec(eval_cfg.env, 1)
    try:
        loaded.check_spaces(vec.obs_space, vec.act_space, env_id)
        frames = []
        result = evaluate(loaded.agent, vec, episodes, mode, seed,
                          on_frame=(lambda obs: frames.append(obs["image"][0])) if video else None)
    finally:
        vec.close()
    payload = loaded.payload
    result.update({"run": str(run), "env": env_id, "mode": mode,
                   **{f"checkpoint_{k}": v for k, v in step_counts(
                       migrate_counters(payload["counters"]), loaded.cfg.env.action_repeat).items()},
                   "checkpoint_updates": payload["counters"].get("updates")})
    if video:
        write_video(video, frames, fps=20)
        result["video"] = str(video)
        result["video_frames"] = len(frames)
    if json_:
        emit_json(result)
    else:
        info(f"{episodes} episodes ({mode}): return {result['return_mean']:.2f} ± "
             f"{result['return_std']:.2f} (min {result['return_min']:.2f}, max "
             f"{result['return_max']:.2f})" + planning_note(result)
             + (f"; video {video}" if video else ""), quiet)
    return result


def _heldout(loaded, data: Path, batches: int, seed: int, json_: bool, quiet: bool) -> dict:
    from wmtool.data.store import EpisodeReader
    from wmtool.engine.heldout import heldout_report

    if batches < 1:
        raise WmtoolError("--batches must be at least 1")
    with EpisodeReader(data) as reader:
        own_report = getattr(loaded.agent.wm, "data_report", None)
        if own_report is not None:  # e.g. Genie's controllability and action agreement
            loaded.check_spaces(reader.obs_space, loaded.agent.act_space, str(data))
            result = {"run": str(loaded.path), "data": str(data),
                      **own_report(list(reader), batches, seed)}
            _report(result, json_, quiet)
            return result
        loaded.check_spaces(reader.obs_space, reader.act_space, str(data))
    result = {"run": str(loaded.path), "data": str(data),
              **heldout_report(loaded.agent, data, batches, seed)}
    if json_:
        emit_json(result)
    else:
        for phase, pair in result["phases"].items():
            info(f"{phase}: " + ", ".join(
                f"{k} {pair['trained'][k]:.4g} (untrained {pair['untrained'][k]:.4g})"
                for k in pair["trained"]), quiet)
    return result


def _report(result: dict, json_: bool, quiet: bool) -> None:
    """A model's own scores: JSON, or one line per score (nested ones flattened)."""
    if json_:
        emit_json(result)
        return
    from wmtool.config import flatten

    for key, value in flatten(result).items():
        shown = f"{value:.4g}" if isinstance(value, float) else (
            ", ".join(f"{v:.3g}" for v in value) if isinstance(value, (list, tuple)) else value)
        info(f"{key}: {shown}", quiet)
