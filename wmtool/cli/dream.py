"""`wmtool dream`: show what a world model believes (open-loop predictions, free dreams)."""
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
)
from wmtool.errors import WmtoolError
from wmtool.progress import info

HELP = ("Show what a world model believes: observe real steps, then predict with the real "
        "actions (open loop: truth / prediction / error) or let the policy act inside the "
        "model (--free).")
EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 600 --set train.prefill=300 --set train.train_ratio=32 --run-dir runs/dr --quiet

  wmtool dream --run runs/dr --render videos/dr.mp4 --plot videos/dr.png --context 8 --horizon 8 --json

  wmtool dream --run runs/dr --free --render videos/dr_free.gif --context 8 --horizon 12 --sequences 2
"""


@command
def dream(
    run: RunOpt,
    render: Annotated[Optional[Path], typer.Option(help="video to write (.mp4 or .gif)")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="still picture to write (.png)")] = None,
    free: Annotated[bool, typer.Option("--free", help="the policy acts inside the model")] = False,
    data: Annotated[Optional[Path], typer.Option(help="real episodes from this HDF5 file "
                                                 "(default: fresh episodes in the run's env)")] = None,
    env: Annotated[Optional[str], typer.Option(help="env for fresh episodes (default: the run's)")] = None,
    context: Annotated[Optional[int], typer.Option(min=1, help="real steps observed first")] = None,
    horizon: Annotated[Optional[int], typer.Option(min=1, help="steps predicted after the context")] = None,
    sequences: Annotated[Optional[int], typer.Option(min=1, help="sequences side by side")] = None,
    checkpoint: CheckpointOpt = None,
    seed: Annotated[int, typer.Option(help="seed of episodes, windows and model samples")] = 0,
    fps: Annotated[int, typer.Option(min=1, help="video frames per second")] = 8,
    scale: Annotated[int, typer.Option(min=1, help="image upscaling factor in the video")] = 2,
    actions: Annotated[Optional[str], typer.Option(
        help="Genie: drive the model with these latent actions, e.g. 0,3,3,1")] = None,
    interactive: Annotated[bool, typer.Option(
        "--interactive", help="Genie: keys 1..N take latent actions, q quits; the newest "
        "frame refreshes --render (.png) or <render>.png beside a video")] = False,
    threads: ThreadsOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    import time

    from wmtool.engine.dream import dream_run
    from wmtool.engine.drive import drive_run
    from wmtool.engine.loading import load_run
    from wmtool.render import dream_frames, dream_still
    from wmtool.video import write_video

    driving = actions is not None or interactive
    videos = (".mp4", ".gif") + ((".png",) if interactive else ())
    for name, path, suffixes in (("--render", render, videos), ("--plot", plot, (".png",))):
        if path is not None and path.suffix.lower() not in suffixes:
            raise WmtoolError(f"{name} {path}: unknown format", f"use {' or '.join(suffixes)}")
    loaded = load_run(run, checkpoint, optimizers=False, threads=threads)
    say = lambda line: info(line, quiet)
    if driving:
        result = drive_run(loaded, actions, interactive, render, data, env, seed, fps, scale,
                           say)
        return finish(result, json_, quiet, lambda r: [
            f"{len(r['actions'])} latent actions -> {r['frames']} frames: {render}"])
    d = loaded.cfg.dream
    pick = lambda flag, default: default if flag is None else flag
    context, horizon = pick(context, d.context), pick(horizon, d.horizon)
    sequences = pick(sequences, d.sequences)
    if min(context, horizon, sequences, fps, scale) < 1:
        raise WmtoolError("--context, --horizon, --sequences, --fps and --scale must be >= 1")
    started = time.perf_counter()
    dreamt, result = dream_run(loaded, context, horizon, sequences, free, data, env, seed, say)
    if render is not None:
        frames = dream_frames(dreamt, scale)
        write_video(render, frames, fps=fps)
        result.update(video=str(render), video_frames=len(frames),
                      video_size=[int(frames.shape[1]), int(frames.shape[2])])
    if plot is not None:
        result["plot"] = str(dream_still(dreamt, plot, scale))
    result["seconds"] = round(time.perf_counter() - started, 3)
    return finish(result, json_, quiet, lambda r: [
        *(f"{key}: error 1 step ahead {per_step[0]:.4g}, {len(per_step)} steps ahead "
          f"{per_step[-1]:.4g}" for key, per_step in r["error"].items()),
        *(f"wrote {r[key]}" for key in ("video", "plot") if key in r)])
