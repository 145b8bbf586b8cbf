"""`wmtool eval`: a loaded run scored in the real env on seeded episodes, or its world model
graded on held-out episodes (its own report where the model writes one, e.g. Genie's)."""
from __future__ import annotations

from pathlib import Path

from wmtool.errors import WmtoolError
from wmtool.models.base import ReportsOnData


def play(loaded, episodes: int, mode: str, env: str | None, seed: int,
         video: Path | None = None, on_episode=None) -> dict:
    """Mean/std/min/max return of `episodes` seeded episodes acting in `mode`, with the
    checkpoint's counters; `video` records what the agent saw; `on_episode` hears how many
    episodes have finished."""
    from wmtool.engine.train import evaluate
    from wmtool.envs.factory import make_vec
    from wmtool.rundir import migrate_counters, step_counts
    from wmtool.video import write_video

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
                          on_frame=(lambda obs: frames.append(obs["image"][0])) if video else None,
                          on_episode=on_episode)
    finally:
        vec.close()
    payload = loaded.payload
    counters = step_counts(migrate_counters(payload["counters"]), loaded.cfg.env.action_repeat)
    result.update({"run": str(loaded.path), "env": env_id, "mode": mode,
                   **{f"checkpoint_{k}": v for k, v in counters.items()},
                   "checkpoint_updates": payload["counters"].get("updates")})
    if video:
        write_video(video, frames, fps=20)
        result.update(video=str(video), video_frames=len(frames))
    return result


def on_data(loaded, data: Path, batches: int, seed: int) -> dict:
    """The world model on held-out episodes: its own report, or every phase's losses next
    to an untrained model's (engine/heldout.py)."""
    from wmtool.data.store import EpisodeReader
    from wmtool.engine.heldout import heldout_report

    if batches < 1:
        raise WmtoolError("--batches must be at least 1")
    with EpisodeReader(data) as reader:
        if isinstance(loaded.agent.wm, ReportsOnData):  # e.g. Genie's controllability
            loaded.check_spaces(reader.obs_space, loaded.agent.act_space, str(data))
            return {"run": str(loaded.path), "data": str(data),
                    **loaded.agent.wm.data_report(list(reader), batches, seed)}
        loaded.check_spaces(reader.obs_space, reader.act_space, str(data))
    return {"run": str(loaded.path), "data": str(data),
            **heldout_report(loaded.agent, data, batches, seed)}
