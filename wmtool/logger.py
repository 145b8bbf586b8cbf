"""Metrics outputs: jsonl always, wandb and TensorBoard when asked; each may be off.

Metric names follow `<phase>/<component>/<name>` (e.g. `train/wm/loss_kl`,
`episode/return`, `fps/env`); see README "Metrics". Turning an output off never changes
training or checkpointing: outputs only receive copies of the numbers. TensorBoard and wandb
also show media (`Logger.media`): videos as animated GIFs, pictures as images.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MEDIA_FPS = 8


def gif_bytes(frames: np.ndarray, fps: int = MEDIA_FPS) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", np.asarray(frames, np.uint8), extension=".gif",
                       duration=1000 / fps, loop=0)


class JsonlOutput:
    shows_media = False

    def __init__(self, path: Path):
        self._fh = open(path, "a", buffering=1)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, "time": round(time.time(), 3)}
        row.update({k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()})
        self._fh.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self._fh.close()


class WandbOutput:
    """Offline unless the user is logged in (WANDB_API_KEY or ~/.netrc); never blocks."""

    shows_media = True

    def __init__(self, run_dir: Path, project: str, config: dict):
        import wandb

        logged_in = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = os.environ.get("WANDB_MODE") or ("online" if logged_in else "offline")
        self._run = wandb.init(project=project, dir=str(run_dir), config=config, mode=mode,
                               name=run_dir.name, reinit="finish_previous")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def write_media(self, step: int, name: str, kind: str, array: np.ndarray) -> None:
        import wandb

        if kind == "image":
            self._run.log({name: wandb.Image(array)}, step=step)
            return
        with tempfile.NamedTemporaryFile(suffix=".gif", delete=False) as fh:
            fh.write(gif_bytes(array))  # a file: wandb encodes arrays only through moviepy
        try:
            self._run.log({name: wandb.Video(fh.name, format="gif")}, step=step)
        finally:
            os.unlink(fh.name)

    def close(self) -> None:
        self._run.finish()


class TensorBoardOutput:
    shows_media = True

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(run_dir / "tb"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

    def write_media(self, step: int, name: str, kind: str, array: np.ndarray) -> None:
        if kind == "image":
            self._writer.add_image(name, array, step, dataformats="HWC")
            return
        # an animated GIF in an image summary, as TensorBoard shows videos (add_video would
        # need moviepy to make the same GIF)
        from tensorboard.compat.proto.summary_pb2 import Summary

        t, h, w = array.shape[:3]
        image = Summary.Image(height=h, width=w, colorspace=3,
                              encoded_image_string=gif_bytes(array))
        self._writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=name, image=image)]), step)

    def close(self) -> None:
        self._writer.close()


def _netrc_has_wandb() -> bool:
    path = Path.home() / ".netrc"
    return path.exists() and "api.wandb.ai" in path.read_text(errors="ignore")


class Logger:
    def __init__(self, run_dir: str | Path, cfg=None, config_dict: dict | None = None,
                 enabled: bool = True):
        """`enabled` False: a logger that writes nowhere (data-parallel ranks other than 0)."""
        run_dir = Path(run_dir)
        self.outputs: list[Any] = []
        if not enabled:
            return
        if cfg is None or cfg.jsonl:
            self.outputs.append(JsonlOutput(run_dir / "metrics.jsonl"))
        if cfg is not None and cfg.wandb:
            self.outputs.append(WandbOutput(run_dir, cfg.wandb_project, config_dict or {}))
        if cfg is not None and cfg.tensorboard:
            self.outputs.append(TensorBoardOutput(run_dir))

    @property
    def shows_media(self) -> bool:
        return any(out.shows_media for out in self.outputs)

    def media(self, step: int, items: dict[str, tuple[str, np.ndarray]]) -> None:
        """name -> ("video", frames THWC uint8) or ("image", HWC uint8), to the outputs
        that show media."""
        for out in self.outputs:
            if out.shows_media:
                for name, (kind, array) in items.items():
                    out.write_media(step, name, kind, array)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        for out in self.outputs:
            out.write(step, clean)

    def close(self) -> None:
        for out in self.outputs:
            out.close()
        self.outputs = []
