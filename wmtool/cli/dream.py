"""`wmtool dream`: show what a world model believes (open-loop predictions, free dreams)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import JsonOpt, QuietOpt, command, emit_json
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
    run: Annotated[Path, typer.Option(help="run directory made by `wmtool train`")],
    render: Annotated[Optional[Path], typer.Option(help="video to write (.mp4 or .gif)")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="still picture to write (.png)")] = None,
    free: Annotated[bool, typer.Option("--free", help="the policy acts inside the model")] = False,
    data: Annotated[Optional[Path], typer.Option(help="real episodes from this HDF5 file "
                                                 "(default: fresh episodes in the run's env)")] = None,
    env: Annotated[Optional[str], typer.Option(help="env for fresh episodes (default: the run's)")] = None,
    context: Annotated[Optional[int], typer.Option(min=1, help="real steps observed first")] = None,
    horizon: Annotated[Optional[int], typer.Option(min=1, help="steps predicted after the context")] = None,
    sequences: Annotated[Optional[int], typer.Option(min=1, help="sequences side by side")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="checkpoint (default latest)")] = None,
    seed: Annotated[int, typer.Option(help="seed of episodes, windows and model samples")] = 0,
    fps: Annotated[int, typer.Option(min=1, help="video frames per second")] = 8,
    scale: Annotated[int, typer.Option(min=1, help="image upscaling factor in the video")] = 2,
    actions: Annotated[Optional[str], typer.Option(
        help="Genie: drive the model with these latent actions, e.g. 0,3,3,1")] = None,
    interactive: Annotated[bool, typer.Option(
        "--interactive", help="Genie: keys 1..N take latent actions, q quits; the newest "
        "frame refreshes --render (.png) or <render>.png beside a video")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    import time

    import numpy as np
    import torch

    from wmtool.engine.dream import free_dream, latent_traces, open_loop, sample_sequences
    from wmtool.engine.loading import load_run
    from wmtool.render import dream_frames, dream_still
    from wmtool.video import write_video

    driving = actions is not None or interactive
    videos = (".mp4", ".gif") + ((".png",) if interactive else ())
    for name, path, suffixes in (("--render", render, videos), ("--plot", plot, (".png",))):
        if path is not None and path.suffix.lower() not in suffixes:
            raise WmtoolError(f"{name} {path}: unknown format", f"use {' or '.join(suffixes)}")
    loaded = load_run(run, checkpoint, optimizers=False)
    if driving:
        return _drive(loaded, actions, interactive, render, data, env, seed, fps, scale,
                      json_, quiet)
    d = loaded.cfg.dream
    pick = lambda flag, default: default if flag is None else flag
    context, horizon = pick(context, d.context), pick(horizon, d.horizon)
    sequences = pick(sequences, d.sequences)
    if min(context, horizon, sequences, fps, scale) < 1:
        raise WmtoolError("--context, --horizon, --sequences, --fps and --scale must be >= 1")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    length = context + (0 if free else horizon)
    episodes = _episodes(loaded, data, env, sequences * length, seed)
    batch = sample_sequences(episodes, loaded.agent.act_space, sequences, length, rng)
    if getattr(loaded.agent.wm, "can_decode", False):
        result_dream = (free_dream(loaded.agent, batch, context, horizon) if free
                        else open_loop(loaded.agent, batch, context))
    else:
        info(f"{loaded.agent.algo} has no decoder, so it cannot show observations; showing "
             "its predicted reward, value and continuation per step instead", quiet)
        result_dream = latent_traces(loaded.agent, batch, context, horizon, free)
    errors = result_dream.errors()
    result = {"run": str(run), "kind": "free" if free else "open-loop", "context": context,
              "horizon": horizon, "sequences": sequences, "error": errors,
              "reward_pred_mean": float(result_dream.reward_pred[:, context:].mean())}
    if result_dream.value_pred is not None:
        result["value_pred_mean"] = float(np.nanmean(result_dream.value_pred[:, context:]))
    if render is not None:
        frames = dream_frames(result_dream, scale)
        write_video(render, frames, fps=fps)
        result.update(video=str(render), video_frames=len(frames),
                      video_size=[int(frames.shape[1]), int(frames.shape[2])])
    if plot is not None:
        result["plot"] = str(dream_still(result_dream, plot, scale))
    result["seconds"] = round(time.perf_counter() - started, 3)
    if json_:
        emit_json(result)
    else:
        for key, per_step in errors.items():
            info(f"{key}: error 1 step ahead {per_step[0]:.4g}, {len(per_step)} steps ahead "
                 f"{per_step[-1]:.4g}", quiet)
        for key in ("video", "plot"):
            if key in result:
                info(f"wrote {result[key]}", quiet)
    return result


def _episodes(loaded, data: Path | None, env: str | None, steps: int, seed: int,
              needs_actions: bool = True) -> list:
    """Real episodes: from a dataset, or played now in the env with the run's policy."""
    if data is not None:
        from wmtool.data.store import EpisodeReader

        with EpisodeReader(data) as reader:
            if needs_actions and not reader.has_action:
                raise WmtoolError(f"{data} has no actions", "open-loop prediction needs actions")
            loaded.check_spaces(reader.obs_space, reader.act_space if needs_actions
                                else loaded.agent.act_space, str(data))
            return list(reader)
    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.loops import run_episodes
    from wmtool.engine.session import make_vec

    vec = make_vec(loaded.env_config(env).env, 1)
    try:
        loaded.check_spaces(vec.obs_space, vec.act_space, env or loaded.env_id)
        found = []
        run_episodes(vec, AgentPolicy(loaded.agent, "sample"), steps=steps, seed=seed,
                     on_episode=found.append)
        return found
    finally:
        vec.close()


def _drive(loaded, actions, interactive, render, data, env, seed, fps, scale, json_, quiet):
    """Genie: from a real start frame, generate one frame per latent action."""
    import numpy as np

    from wmtool.engine.drive import Driver, drive_interactive, parse_actions, upscale
    from wmtool.video import write_video

    if render is None:
        raise WmtoolError("driving needs --render", "e.g. --render out.mp4 (or .png with "
                          "--interactive, refreshed after every key)")
    data = data or (Path(loaded.meta["data"]) if loaded.meta.get("data") else None)
    if data is None:
        raise WmtoolError("driving starts from a real frame", "pass --data FILE.h5")
    episodes = _episodes(loaded, data, env, 1, seed, needs_actions=False)
    rng = np.random.default_rng(seed)
    episode = episodes[int(rng.integers(len(episodes)))]
    key = loaded.agent.wm.input_keys[0]
    first = episode.obs[key][int(rng.integers(len(episode.obs[key])))]
    driver = Driver(loaded.agent.wm, first)
    if interactive:
        live = render if render.suffix.lower() == ".png" else render.with_suffix(".png")
        taken = drive_interactive(driver, live, scale, say=lambda m: info(m, quiet))
    else:
        taken = parse_actions(actions, driver.actions)
        for action in taken:
            driver.step(action)
    result = {"run": str(loaded.path), "actions": taken, "frames": len(driver.frames)}
    if render.suffix.lower() != ".png":
        write_video(render, [upscale(f, scale) for f in driver.frames], fps=fps)
        result["video"] = str(render)
    if json_:
        emit_json(result)
    else:
        info(f"{len(taken)} latent actions -> {len(driver.frames)} frames: {render}", quiet)
    return result
