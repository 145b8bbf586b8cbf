import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

BIN = Path(sys.executable).parent / "wmtool"


@pytest.fixture
def cli():
    """Invoke the real Typer app in-process; returns click's Result (stdout/stderr split)."""
    from typer.testing import CliRunner

    from wmtool.cli import app

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def run_wmtool(*args, timeout=300, env=None, **kwargs):
    """Run the installed `wmtool` console script as a real subprocess."""
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **kwargs)


def episode_digest(episode) -> str:
    h = hashlib.sha256()
    for key in sorted(episode.obs):
        h.update(np.ascontiguousarray(episode.obs[key]).tobytes())
    for arr in (episode.action, episode.reward, episode.terminated, episode.truncated):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
