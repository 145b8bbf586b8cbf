import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

BIN = Path(sys.executable).parent / "wmtool"


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs one worker per core) each worker owns one core:
    wmtool's thread choice (one per available core) then gives every test and its
    subprocesses one torch thread, and no two workers fight over a core (torch's threads
    collapse when they share one)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


@pytest.fixture
def cli():
    """Invoke the real Typer app in-process; returns click's Result (stdout/stderr split)."""
    from typer.testing import CliRunner

    from wmtool.cli import app

    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def run_wmtool(*args, timeout=300, env=None, **kwargs):
    """Run the installed `wmtool` console script as a real subprocess."""
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **kwargs)


def episode_digest(episode) -> str:
    return episode.digest()


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
