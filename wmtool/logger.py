"""Metrics outputs: jsonl always, wandb and TensorBoard when asked; each may be off.

Metric names follow `<phase>/<component>/<name>` (e.g. `train/wm/loss_kl`,
`episode/return`, `fps/env`); see README "Metrics". Turning an output off never changes
training or checkpointing: outputs only receive copies of the numbers.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


class JsonlOutput:
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

    def __init__(self, run_dir: Path, project: str, config: dict):
        import wandb

        logged_in = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = os.environ.get("WANDB_MODE") or ("online" if logged_in else "offline")
        self._run = wandb.init(project=project, dir=str(run_dir), config=config, mode=mode,
                               name=run_dir.name, reinit="finish_previous")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        self._run.finish()


class TensorBoardOutput:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(run_dir / "tb"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

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

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        for out in self.outputs:
            out.write(step, clean)

    def close(self) -> None:
        for out in self.outputs:
            out.close()
        self.outputs = []
