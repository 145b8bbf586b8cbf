"""Progress on stderr: plain lines when stderr is not a terminal (a pipe, a log file, a
sweep's per-run log), an ETA from the recent rate, and the evaluations named."""
import json

from conftest import run_wmtool

from wmtool import progress


def test_eta_follows_the_recent_rate_not_the_fast_start(monkeypatch):
    """1,000 steps in the first 10 s (a random prefill), then 10 steps/s for two minutes:
    at 2,200 of 10,000 the ETA is 7,800 / 10 = 780 s, not the average rate's 7,800 / 16.9."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    tracker = progress.Tracker("train", 10_000, quiet=True)
    clock[0] = 10.0
    tracker.update(1_000)
    for second in range(1, 121):
        clock[0] = 10.0 + second
        tracker.update(1_000 + 10 * second)
    assert tracker.done == 2_200 and tracker.eta() == "0:13:00"


def test_a_piped_train_prints_progress_lines_and_names_its_evaluations(tmp_path):
    res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--size",
                     "debug", "--steps", 300, "--set", "train.prefill=200", "--set",
                     "train.train_ratio=32", "--set", "train.eval_every=150", "--set",
                     "train.eval_episodes=2", "--run-dir", tmp_path / "run", "--json",
                     env={"WMTOOL_PROGRESS_EVERY": "0"})
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    ticks = [line for line in lines if line.startswith("train ") and " ETA " in line]
    assert len(ticks) >= 3 and ticks[-1].startswith("train 300/300 (100%)")
    assert "train: evaluating (2 episodes)" in lines
    assert "train: final evaluation (2 episodes)" in lines
    assert json.loads(res.stdout)["agent_steps"] == 300  # the result alone on stdout
