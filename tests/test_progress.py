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
    """Plain progress lines, each evaluation named, and the updates made on the prefill
    before acting on named too (the env steps stand still meanwhile)."""
    res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--size",
                     "debug", "--steps", 300, "--set", "train.prefill=200", "--set",
                     "train.prefill_updates=3", "--set", "train.train_ratio=32", "--set",
                     "train.eval_every=150", "--set", "train.eval_episodes=2", "--run-dir",
                     tmp_path / "run", "--json",
                     env={"WMTOOL_PROGRESS_EVERY": "0"})
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    ticks = [line for line in lines if line.startswith("train ") and " ETA " in line]
    assert len(ticks) >= 3 and ticks[-1].startswith("train 300/300 (100%)")
    assert "train: 3 updates before acting on" in lines
    assert "train: evaluating (2 episodes)" in lines
    assert "train: final evaluation (2 episodes)" in lines
    assert json.loads(res.stdout)["agent_steps"] == 300  # the result alone on stdout


def test_the_runs_table_fits_80_columns_without_cutting_names():
    """At 80 columns every line fits, statuses and env ids are whole (they used to end in
    `gym:Car…`), and a long run name folds onto a second line instead of vanishing."""
    from rich.console import Console

    from wmtool.cli.runs import runs_table

    cells = [["sweeps/lr-3e-4/seed-100/dreamerv3-walker", "dreamerv3", "dmc:walker-walk",
              "24,000/48,000", "6,000", "512.3", "interrupted"],
             ["r2", "tdmpc2", "gym:CartPole-v1", "1,268/1,268", "49", "-", "finished"]]
    console = Console(width=80, record=True)
    console.print(runs_table("runs under runs", cells, 80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for whole in ("dmc:walker-walk", "gym:CartPole-v1", "interrupted", "24,000/48,000"):
        assert whole in text
    assert "…" not in text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.split()[:1] == ["sweeps"])
    last = next(i for i, line in enumerate(lines) if line.split()[:1] == ["r2"])
    folded = "".join(line.split()[0] for line in lines[first:last])
    assert folded == "sweeps/lr-3e-4/seed-100/dreamerv3-walker"
