"""`wmtool play` in a real browser: Debian's Chromium driven by Playwright (pinned to the
release whose bundled Chromium has the same major version; launched by executable_path, so
no browser is downloaded), through recipes/bench/play_speed.py, which the speed records use
too. The page loads, frames arrive at the rate asked for, from the same start (Restart) one
key or the other gives different frames and the same key the same frame again, and a
screenshot is written."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
FPS = 30


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not "
                    "installed (scripts/setup.sh installs it)")
def test_the_page_plays_in_chromium_at_the_frame_rate(tmp_path):
    pytest.importorskip("playwright")
    from wmtool.cli import app

    run = tmp_path / "demo"
    res = CliRunner().invoke(app, [
        "train", "--algo", "dreamerv3", "--recipe", "dreamerv3__gym_cartpole_demo", "--size",
        "debug", "--steps", "120", "--set", "train.prefill=100", "--set",
        "train.prefill_updates=10", "--set", "runtime.threads=1", "--run-dir", str(run),
        "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    shot = tmp_path / "play.png"
    proc = subprocess.run([sys.executable, str(ROOT / "recipes/bench/play_speed.py"), "--run",
                           str(run), "--seconds", "5", "--real", "--fps", str(FPS),
                           "--screenshot", str(shot)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    result = out["results"][0]
    assert result["fps_median"] >= 0.8 * FPS, result
    assert result["keys_differ"] and result["replays_identically"], result
    assert result["latency_samples"] >= 10 and result["latency_ms_p95"] is not None
    assert shot.stat().st_size > 10_000
    assert out["chromium_major"] == out["playwright_chromium_major"], (
        f"Debian's chromium is {out['chromium_major']} but playwright {out['playwright']} was "
        f"built for {out['playwright_chromium_major']}: pin the playwright release whose "
        "bundled Chromium has Debian's major version in pyproject.toml")
