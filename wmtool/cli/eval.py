"""`wmtool eval`: score a trained policy in the real environment."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import JsonOpt, QuietOpt, command, emit_json
from wmtool.errors import WmtoolError
from wmtool.progress import info

HELP = "Score a run's policy in the real environment: mean, std, min, max return."
EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 400 --set train.prefill=200 --set train.train_ratio=32 --run-dir runs/ev --quiet

  wmtool eval --run runs/ev --episodes 3 --json

  wmtool eval --run runs/ev --episodes 1 --mode sample --video videos/ev.mp4
"""


@command
def eval_(
    run: Annotated[Path, typer.Option(help="run directory made by `wmtool train`")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="checkpoint (default latest)")] = None,
    episodes: Annotated[int, typer.Option(help="episodes to play")] = 10,
    mode: Annotated[str, typer.Option(help="greedy | sample")] = "greedy",
    video: Annotated[Optional[Path], typer.Option(help="record what the agent saw (.mp4/.gif)")] = None,
    env: Annotated[Optional[str], typer.Option(help="env for runs trained offline without one")] = None,
    seed: Annotated[int, typer.Option(help="seed of the evaluation episodes")] = 12345,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool import ckpt, config, rundir
    from wmtool.engine.agent import Agent
    from wmtool.engine.session import make_vec
    from wmtool.engine.train import evaluate
    from wmtool.runtime import setup_torch
    from wmtool.video import write_video

    if mode not in ("greedy", "sample"):
        raise WmtoolError(f"--mode {mode}: unknown", "use greedy or sample")
    if episodes < 1:
        raise WmtoolError("--episodes must be at least 1")
    meta = rundir.read_meta(run)
    cfg = rundir.load_config(run)
    env_id = env or meta.get("env")
    if not env_id:
        raise WmtoolError(f"{run} was trained offline without an env", "pass --env SUITE:TASK")
    payload = ckpt.load(checkpoint or rundir.latest_checkpoint(run))
    device, threads = setup_torch(cfg.runtime.threads, cfg.runtime.device)
    sets = {"env": {"id": env_id}}
    from wmtool import spaces

    record_render = video is not None and "image" not in spaces.loads_obs(payload["obs_space"])
    if record_render:  # vector-observation agent: render frames beside what it observes
        sets["env"]["obs"] = "both"
    eval_cfg = config.load([("run", cfg.to_dict()), ("eval", sets)])
    vec = make_vec(eval_cfg, 1)
    try:
        obs_space = spaces.loads_obs(payload["obs_space"])
        act_space = spaces.loads_act(payload["act_space"])
        if {k: vec.obs_space[k] for k in obs_space if k in vec.obs_space} != obs_space or \
                vec.act_space != act_space:
            raise WmtoolError(f"{env_id} does not match the spaces the agent was trained on",
                              "evaluate in the training env")
        agent = Agent(meta["algo"], obs_space, act_space, cfg, device)
        ckpt.restore_agent(agent, payload)
        agent.eval()
        frames = []
        result = evaluate(agent, vec, episodes, mode, seed,
                          on_frame=(lambda obs: frames.append(obs["image"][0])) if video else None)
    finally:
        vec.close()
    result.update({"run": str(run), "env": env_id, "mode": mode,
                   "checkpoint_env_steps": payload["counters"].get("env_steps"),
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
             f"{result['return_max']:.2f})" + (f"; video {video}" if video else ""), quiet)
    return result
