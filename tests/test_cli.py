"""The CLI end to end: Typer's runner in-process and the installed script as a subprocess."""
import json
import os
import re

import h5py
import numpy as np
import pytest
from conftest import file_digest, run_wmtool

from wmtool.data.store import EpisodeReader


def one_error_line(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_collect_episodes_json_and_data_info(cli, tmp_path):
    out = tmp_path / "cp.h5"
    res = cli("collect", "--env", "gym:CartPole-v1", "--episodes", 5, "--out", out, "--json",
              "--seed", 3)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["episodes"] == 5 and summary["file_episodes"] == 5
    info = json.loads(cli("data", "info", out, "--json").stdout)
    assert info["episodes"] == 5 and info["steps"] == summary["steps"]
    assert info["return"]["mean"] == pytest.approx(summary["return_mean"])  # CartPole: +1/step
    assert info["has_action"] and info["act_space"]["n"] == 2
    human = cli("data", "info", out)  # the result on stdout, nothing on stderr
    assert "episodes" in human.stdout and "discrete(2)" in human.stdout and not human.stderr


def test_collect_steps_appends_and_cuts_last_episode_as_truncated(cli, tmp_path):
    out = tmp_path / "pend.h5"
    assert cli("collect", "--env", "gym:Pendulum-v1", "--steps", 250, "--out", out,
               "--quiet").exit_code == 0
    assert cli("collect", "--env", "gym:Pendulum-v1", "--steps", 50, "--out", out,
               "--quiet", "--seed", 1).exit_code == 0
    with EpisodeReader(out) as r:
        lengths = [int(x) for x in r.index["length"]]
        assert lengths == [200, 50, 50]  # a full episode, the cut rest, then the appended run
        last = r.episode(2)
        assert last.truncated[-1] and not last.terminated.any()
        assert last.action.dtype == np.float32 and np.abs(last.action).max() <= 1.0


def test_collect_parallel_workers_pixels(tmp_path):
    out = tmp_path / "swingup.h5"
    res = run_wmtool("collect", "--env", "dmc:cartpole-swingup", "--obs", "pixels", "--steps",
                     400, "--workers", 2, "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["workers"] == 2 and summary["steps"] == 400
    with EpisodeReader(out) as r:
        assert r.num_steps == 400 and len(r) == 2  # two 200-step cuts, one per worker
        a, b = r.episode(0), r.episode(1)
        assert a.obs["image"].shape == (201, 64, 64, 3)
        assert not np.array_equal(a.obs["image"], b.obs["image"])  # workers differ
        moved = np.abs(np.diff(a.obs["image"].astype(int), axis=0)).sum(axis=(1, 2, 3)) > 0
        assert moved.mean() > 0.5  # each stored frame is its own render, not a reused buffer


@pytest.mark.parametrize("args,needle", [
    (["--env", "mujoco:walker"], "unknown env suite 'mujoco'; valid: atari, dmc, gym"),
    (["--env", "gym:CartPol-v1"], "did you mean gym:CartPole-v1"),
    (["--env", "dmc:cartpole-swingp"], "did you mean dmc:cartpole-swingup"),
    (["--env", "gym:CartPole-v1", "--set", "env.action_repaet=2"], "env.action_repeat"),
    (["--env", "gym:CartPole-v1", "--obs", "depth"], "env.obs='depth' is not one of"),
    (["--env", "gym:CartPole-v1", "--episodes", 2], "exactly one of --episodes"),
])
def test_collect_usage_errors_are_one_line_exit_2(cli, tmp_path, args, needle):
    res = cli("collect", "--steps", 5, "--out", tmp_path / "x.h5", *args)
    assert res.exit_code == 2
    assert needle in one_error_line(res.stderr)
    assert not (tmp_path / "x.h5").exists()


def test_missing_render_backend_names_the_fix(tmp_path):
    res = run_wmtool("collect", "--env", "dmc:cartpole-swingup", "--obs", "pixels",
                     "--steps", 5, "--out", tmp_path / "x.h5", env={"MUJOCO_GL": "bogus"})
    assert res.returncode == 1
    line = one_error_line(res.stderr)
    assert "MUJOCO_GL=bogus" in line and "MUJOCO_GL=egl" in line and "libosmesa6" in line


def test_append_mismatch_leaves_file_untouched(cli, tmp_path):
    out = tmp_path / "cp.h5"
    cli("collect", "--env", "gym:CartPole-v1", "--episodes", 2, "--out", out, "--quiet")
    before = file_digest(out)
    res = cli("collect", "--env", "gym:CartPole-v1", "--obs", "both", "--episodes", 2,
              "--out", out)
    assert res.exit_code == 1 and "observation space" in one_error_line(res.stderr)
    res = cli("collect", "--env", "gym:Acrobot-v1", "--episodes", 1, "--out", out)
    assert res.exit_code == 1 and "holds episodes of gym:CartPole-v1" in res.stderr
    assert file_digest(out) == before


@pytest.mark.parametrize("kind,needle", [
    ("text", "is not an HDF5 file"), ("foreign", "not a wmtool episode store"),
    ("missing", "no such file"),
])
def test_data_info_bad_files(cli, tmp_path, kind, needle):
    path = tmp_path / "f.h5"
    if kind == "text":
        path.write_text("hello\n" * 100)
    elif kind == "foreign":
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3)
    res = cli("data", "info", path)
    assert res.exit_code == 1 and needle in one_error_line(res.stderr)
    assert str(path) in res.stderr


def test_usage_error_exit_2_and_debug_traceback(tmp_path):
    res = run_wmtool("collect", "--env", "gym:CartPole-v1", "--episodes", 1)  # no --out
    assert res.returncode == 2 and "--out" in res.stderr
    plain = run_wmtool("data", "info", tmp_path / "nope.h5")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = run_wmtool("data", "info", tmp_path / "nope.h5", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_envs_and_recipes(cli):
    suites = json.loads(cli("envs", "--json").stdout)
    assert set(suites) == {"gym", "dmc", "atari"} and "gym:CartPole-v1" in suites["gym"]["examples"]
    tasks = json.loads(cli("envs", "--suite", "dmc", "--json").stdout)["tasks"]
    assert "dmc:cartpole-swingup" in tasks and "dmc:walker-walk" in tasks
    assert "atari:pong" in json.loads(cli("envs", "--suite", "atari", "--json").stdout)["tasks"]
    names = json.loads(cli("recipes", "list", "--json").stdout)
    assert "defaults" in names and "suite/dmc" in names
    assert "action_repeat: 2" in cli("recipes", "show", "suite/dmc").stdout
    assert cli("recipes", "show", "nope").exit_code == 1


def help_examples():
    from typer.main import get_command

    from wmtool.cli import app

    group = get_command(app)
    found = []

    def visit(cmd, prefix):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                visit(sub, prefix + [name])
        else:
            found.extend(re.findall(r"^\s*(wmtool .+)$", cmd.epilog or "", re.M))

    visit(group, [])
    return found


@pytest.mark.slow
def test_every_help_example_runs(tmp_path):
    examples = help_examples()
    assert len(examples) >= 6
    for line in examples:
        args = line.split()[1:]
        if args[0] == "play":  # a server: it must come up, serve its page and stop on Ctrl-C
            serve_until_ctrl_c(args, tmp_path)
            continue
        res = run_wmtool(*args, cwd=tmp_path)
        assert res.returncode == 0, f"{line}\n{res.stderr}"


def serve_until_ctrl_c(args, cwd):
    import signal
    import subprocess
    import urllib.request

    from conftest import BIN

    proc = subprocess.Popen([str(BIN), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    url = proc.stdout.readline().strip()
    try:
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        assert b"<canvas" in urllib.request.urlopen(url, timeout=30).read()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()


def test_a_run_that_cannot_start_leaves_no_directory_or_says_it_failed(tmp_path):
    """Unknown --algo or --size are usage errors (exit 2) and a missing --data file fails
    (exit 1), all before a run directory exists; a run that fails while it is being built
    is marked failed, and `eval` says so instead of advising to wait."""
    for i, (args, code) in enumerate([
            (["--algo", "nosuch", "--env", "gym:CartPole-v1"], 2),
            (["--algo", "dreamerv3", "--size", "huge", "--env", "gym:CartPole-v1"], 2),
            (["--algo", "dreamerv3", "--data", str(tmp_path / "nope.h5")], 1)]):
        res = run_wmtool("train", *args, "--run-dir", tmp_path / f"r{i}", "--steps", 10)
        assert res.returncode == code and res.stderr.startswith("error: "), res.stderr
        assert not (tmp_path / f"r{i}").exists()
    run = tmp_path / "bad-env"
    res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:NoSuchEnv-v0",
                     "--run-dir", run, "--steps", 10)
    assert res.returncode == 2 and "NoSuchEnv-v0" in res.stderr  # a usage error, found late
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    res = run_wmtool("eval", "--run", run)
    assert res.returncode == 1 and "failed before its first checkpoint" in res.stderr
