"""kill -9 a real `wmtool collect` at random points: finished episodes survive, byte for byte."""
import random
import signal
import subprocess
import time

import pytest
from conftest import BIN, episode_digest, run_wmtool

from wmtool.data.store import EpisodeReader
from wmtool.errors import WmtoolError


def read_digests(path):
    with EpisodeReader(path) as reader:
        return [episode_digest(e) for e in reader]


def wait_for_episodes(path, at_least, proc, timeout=60):
    """Read the file while the writer appends (SWMR) until it holds `at_least` episodes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            digests = read_digests(path)
            if len(digests) >= at_least:
                return digests
        except (WmtoolError, OSError):
            pass  # not created yet
        time.sleep(0.05)
    raise AssertionError(f"no {at_least} episodes after {timeout}s")


@pytest.mark.slow
def test_sigkill_keeps_every_finished_episode_and_collection_resumes(tmp_path):
    path = tmp_path / "crash.h5"
    rng = random.Random(1234)
    committed: list[str] = []
    for trial in range(8):
        proc = subprocess.Popen(
            [str(BIN), "collect", "--env", "gym:CartPole-v1", "--obs", "both", "--steps",
             "1000000", "--out", str(path), "--seed", str(trial), "--quiet", "--debug"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = wait_for_episodes(path, len(committed) + 3, proc)
        assert seen[:len(committed)] == committed  # earlier survivors untouched by appends
        time.sleep(rng.uniform(0.0, 0.4))  # land anywhere: mid-step, mid-write, mid-flush
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = read_digests(path)
        # every episode a reader saw finished before the kill is still there, identical
        assert after[:len(seen)] == seen
        committed = after
    done = run_wmtool("collect", "--env", "gym:CartPole-v1", "--obs", "both", "--episodes",
                      "3", "--out", path, "--seed", "99", "--json")
    assert done.returncode == 0, done.stderr
    final = read_digests(path)
    assert final[:len(committed)] == committed and len(final) == len(committed) + 3
