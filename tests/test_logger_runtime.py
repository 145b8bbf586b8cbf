import json
import os

import pytest

from wmtool import config
from wmtool.logger import Logger
from wmtool.runtime import choose_threads, default_run_dir, setup_torch


def test_jsonl_always_and_outputs_off(tmp_path):
    cfg = config.compose(sets=["logger.wandb=false"]).logger
    log = Logger(tmp_path, cfg)
    log.log(10, {"episode/return": 5.0, "fps/env": 123})
    log.log(20, {"train/wm/loss": float("nan")})
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 10 and rows[0]["episode/return"] == 5.0
    assert rows[1]["train/wm/loss"] == "nan"  # non-finite values stay valid JSON
    off = Logger(tmp_path / "x", config.compose(sets=["logger.jsonl=false"]).logger)
    assert off.outputs == []


def test_wandb_offline_and_tensorboard_write_real_files(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = config.compose(sets=["logger.wandb=true", "logger.tensorboard=true"]).logger
    log = Logger(tmp_path, cfg, {"seed": 0})
    for step in range(3):
        log.log(step, {"episode/return": float(step)})
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("episode/return")] == [0.0, 1.0, 2.0]


def test_threads_are_chosen_deliberately():
    assert choose_threads(3) == 3
    assert 1 <= choose_threads(0) <= len(os.sched_getaffinity(0))
    device, threads = setup_torch(1, "cpu")
    import torch

    assert device == "cpu" and threads == 1 and torch.get_num_threads() == 1


def test_default_run_dir_shape():
    path = default_run_dir("dreamerv3", "dmc:walker-walk", 3)
    assert path.parts[:3] == ("runs", "dreamerv3", "dmc-walker-walk")
    assert path.name.startswith("3-")


def test_wall_time_shares_add_up_and_time_what_they_name():
    import time

    from wmtool.engine.walltime import WallTime

    wall = WallTime()
    with wall.part("updates"):
        time.sleep(0.2)
    time.sleep(0.1)
    shares = wall.shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert 0.5 < shares["time/updates"] < 0.7 and shares["time/evaluation"] == 0
    assert 0.3 < shares["time/acting_and_other"] < 0.5
