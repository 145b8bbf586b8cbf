"""Run directories (DESIGN.md §6): config.yaml, run.json, metrics.jsonl, checkpoints/, replay/."""
from __future__ import annotations

import datetime
import json
from pathlib import Path

from wmtool import config
from wmtool.errors import WmtoolError


def create(path: Path, cfg, meta: dict) -> Path:
    if (path / "config.yaml").exists():
        raise WmtoolError(f"{path} already holds a run", f"continue it with --resume {path}, "
                          "or choose another --run-dir")
    path.mkdir(parents=True, exist_ok=True)
    cfg.save(path / "config.yaml")
    write_meta(path, {**meta, "created": datetime.datetime.now().isoformat(timespec="seconds"),
                      "status": "running"})
    return path


def write_meta(path: Path, meta: dict) -> None:
    tmp = path / ".run.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(path / "run.json")


def update_meta(path: Path, **changes) -> None:
    write_meta(path, {**read_meta(path), **changes})


def read_meta(path: Path) -> dict:
    file = Path(path) / "run.json"
    if not file.exists():
        raise WmtoolError(f"{path} is not a wmtool run directory (no run.json)",
                          "pass a directory made by `wmtool train`")
    return json.loads(file.read_text())


def load_config(path: Path) -> config.Config:
    read_meta(path)
    saved = config.without_retired(config.read_yaml(path / "config.yaml"))
    return config.load([(str(path / "config.yaml"), saved)])


def latest_checkpoint(path: Path) -> Path:
    file = Path(path) / "checkpoints" / "latest.pt"
    if not file.exists():
        raise WmtoolError(f"{path} has no checkpoint yet (checkpoints/latest.pt)",
                          "wait for the first checkpoint or lower train.checkpoint_every")
    return file


def step_counts(counters: dict, action_repeat: int) -> dict[str, int]:
    """Both clocks, spelled out: agent steps (policy decisions, the unit of train.steps and
    every *_every) and env steps (simulator steps: agent steps x env.action_repeat, the
    unit papers report for DMC). Atari's frame skip is inside one env step, as in papers."""
    agent = int(counters.get("agent_steps", 0))
    return {"agent_steps": agent, "env_steps": agent * max(int(action_repeat), 1)}


def migrate_counters(counters: dict) -> dict:
    """Counters saved before agent and env steps were told apart called agent steps
    `env_steps`; read them as agent steps."""
    counters = dict(counters)
    if "agent_steps" not in counters:
        counters["agent_steps"] = counters.pop("env_steps", 0)
    counters.pop("env_steps", None)
    return counters
