"""Dreams while training, every `dream.every` agent steps (offline: updates).

Every output gets the open-loop prediction error at 1, H/2 and H steps ahead and its mean
over 1..H, per observation key and reward. Outputs that show media (TensorBoard, wandb) also
get the dream itself, drawn as `wmtool dream` draws it: an open-loop video (truth /
prediction / error tiles for images, truth-vs-prediction curves for vectors) for models that
decode, and the predicted-vs-real reward, value and continuation plot for models without a
decoder (TD-MPC2). Replay windows are sampled with the dream's own generator and the model's
samples inside a forked torch generator, so training's random streams never move.
"""
from __future__ import annotations

import numpy as np
import torch

from wmtool.engine.dream import latent_traces, open_loop
from wmtool.models.base import Decodes, LatentTraces


def error_row(errors: dict[str, list[float]]) -> dict[str, float]:
    row = {}
    for key, per_step in errors.items():
        for h in sorted({1, (len(per_step) + 1) // 2, len(per_step)}):
            row[f"dream/{key}/error_h{h}"] = per_step[h - 1]
        row[f"dream/{key}/error_mean"] = float(np.mean(per_step))
    return row


def dream_report(agent, replay, cfg, rng: np.random.Generator,
                 media: bool) -> tuple[dict[str, float], dict[str, tuple[str, np.ndarray]]]:
    """(error row, media): media maps a name to ("video", frames THWC) or ("image", HWC)."""
    from wmtool.render import CurveFigure, dream_frames

    wm, d = agent.wm, cfg
    decodes = isinstance(wm, Decodes)
    if not decodes and not (media and isinstance(wm, LatentTraces)):
        return {}, {}
    batch = replay.sample_within_episodes(d.sequences, d.context + d.horizon, rng)
    if batch is None:
        return {}, {}
    with torch.random.fork_rng(devices=[torch.cuda.current_device()]
                               if torch.cuda.is_initialized() else []):
        dream = open_loop(agent, batch, d.context) if decodes else \
            latent_traces(agent, batch, d.context)
    if not media:
        return error_row(dream.errors()), {}
    if decodes:
        return error_row(dream.errors()), {"dream/open_loop": ("video", dream_frames(dream))}
    figure = CurveFigure(dream)
    try:
        return {}, {"dream/latent_traces": ("image", figure.draw(dream.length))}
    finally:
        figure.close()
