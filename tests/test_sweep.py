"""`wmtool sweep`: a grid of real runs, two at a time, stopped with SIGTERM and resumed."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from wmtool import rundir
from wmtool.runtime import choose_threads

BASE = [sys.executable, "-m", "wmtool", "sweep", "--algo", "dreamerv3", "--env",
        "gym:CartPole-v1", "--size", "debug", "--steps", "700", "--seeds", "0,1",
        "--grid", "actor.lr=1e-4,3e-4", "--set", "train.prefill=150",
        "--set", "train.train_ratio=16", "--set", "train.batch=4", "--set", "train.length=8",
        "--set", "train.checkpoint_every=100", "--set", "train.eval_every=0",
        "--set", "train.eval_episodes=1", "--jobs", "2"]


@pytest.mark.slow
def test_a_sweep_runs_two_at_a_time_and_resumes_after_a_stop(tmp_path):
    root = tmp_path / "sweep"
    command = BASE + ["--root", str(root), "--json"]
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # stop it once a run has checkpointed past its prefill
        if any((p / "checkpoints" / "latest.pt").exists() and
               rundir.read_meta(p).get("counters", {}).get("agent_steps", 0) > 150
               for p in root.glob("*") if (p / "run.json").exists()):
            break
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=120) == 143
    index = json.loads((root / "sweep.json").read_text())
    statuses = [r["status"] for r in index["runs"]]
    assert len(statuses) == 4 and "interrupted" in statuses and statuses.count("finished") < 4
    assert statuses.count("interrupted") <= 2  # two at a time: the others had not started
    finished_before = {r["name"] for r in index["runs"] if r["status"] == "finished"}

    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["finished"] == 4
    by_name = {r["name"]: r for r in result["runs"]}
    for name, run in by_name.items():
        meta = rundir.read_meta(root / name)
        assert meta["status"] == "finished" and meta["counters"]["agent_steps"] == 700
        assert meta["runtime"]["threads"] == max(1, choose_threads(0) // 2)  # pinned per slot
        if name in finished_before:
            assert run["resumed"] == 0
    assert sum(r["resumed"] for r in by_name.values()) >= 1
    assert [r["status"] for r in json.loads((root / "sweep.json").read_text())["runs"]] == \
        ["finished"] * 4
    assert len(result["groups"]) == 2  # the two learning rates, two seeds each
    assert all(len(g["runs"]) == 2 for g in result["groups"])

    # the same root with another grid is refused, and nothing in it changes
    other = subprocess.run(BASE[:-4] + ["--seeds", "0,1,2", "--root", str(root)],
                           capture_output=True, text=True)
    assert other.returncode == 1 and "another sweep" in other.stderr

    # a damaged sweep.json: one line naming it and the fix; the fix works, nothing reruns
    (root / "sweep.json").write_text('{"algo": "dreamerv3", "ru')
    damaged = subprocess.run(command, capture_output=True, text=True)
    assert damaged.returncode == 1 and len(damaged.stderr.strip().splitlines()) == 1
    assert f"{root / 'sweep.json'} is damaged" in damaged.stderr
    assert "move it aside" in damaged.stderr
    (root / "sweep.json").rename(root / "sweep.json.damaged")
    again = json.loads(subprocess.run(command, capture_output=True, text=True,
                                      check=True).stdout)
    assert again["finished"] == 4 and all(r["resumed"] == 0 for r in again["runs"])


@pytest.mark.slow
def test_a_sweep_runs_as_tasks_on_a_local_ray_instance(tmp_path):
    """--ray sends the same runs to a real Ray cluster: a local head node started here."""
    ray_bin = Path(sys.executable).parent / "ray"
    port = 6379 + os.getpid() % 1000  # below Ray's worker ports (10002-19999)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # socket paths must stay short
    subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", f"--temp-dir={temp}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    # (never pipes: Ray's daemons inherit them and would hold them open)
    try:
        root = tmp_path / "sweep"
        command = BASE[:-2] + ["--ray", f"127.0.0.1:{port}", "--threads", "1",
                               "--root", str(root), "--json"]
        command[command.index("--steps") + 1] = "300"
        result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True,
                                           env=env).stdout)
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
        shutil.rmtree(temp, ignore_errors=True)
    assert result["finished"] == 4 and len(result["groups"]) == 2
    for run in result["runs"]:
        meta = rundir.read_meta(root / run["name"])
        assert meta["status"] == "finished" and meta["runtime"]["threads"] == 1


def test_a_run_stopped_before_it_wrote_anything_stays_pending(tmp_path):
    from wmtool.launch.sweep import plan

    sweep = plan(tmp_path / "sw", "dreamerv3", "gym:CartPole-v1", [0], [], [None], [])
    run = sweep.runs[0]
    sweep.settle(run, 143)  # SIGTERM before its run directory existed: the next sweep starts it
    assert run.status == "pending"
    sweep.settle(run, 1)  # a crash before it wrote anything
    assert run.status == "failed"
