"""Runs under faults (issue 25): kills, signals, damaged run files, hostile run directories,
bad numbers. Each test reproduces the fault with real `wmtool` processes and real files."""
import json
import os
import signal
import subprocess
import textwrap
import time

import pytest
from conftest import BIN, episode_digest, run_wmtool

from wmtool.data.store import EpisodeReader

TINY = ["--size", "debug", "--set", "train.batch=4", "--set", "train.length=16",
        "--set", "train.train_ratio=16", "--set", "train.eval_episodes=1",
        "--set", "train.log_every=50"]


def start(*args, **kwargs):
    """A real `wmtool` process in its own process group, with Ctrl-C deliverable (a
    background shell job would otherwise inherit SIGINT ignored)."""
    return subprocess.Popen([str(BIN), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **kwargs)


def stored(path):
    with EpisodeReader(path) as reader:
        return [episode_digest(e) for e in reader], reader.num_steps, reader.index["seed"]


def count(path):
    """Episodes in a store (cheap enough to poll while a writer runs)."""
    with EpisodeReader(path) as reader:
        return len(reader)


def wait_until(check, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - the file may not exist yet
            pass
        time.sleep(0.05)
    raise AssertionError("condition never held")


def metric_steps_strictly_increase(run):
    """No step logged twice for the same metric (a resume must not log redone work again)."""
    seen: dict[str, int] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key in row:
            if key not in ("step", "time"):
                assert row["step"] > seen.get(key, -1), (key, row["step"], seen.get(key))
                seen[key] = row["step"]


def test_kill_before_first_checkpoint_resumes_afresh_without_replaying_seeds(tmp_path):
    """Killed during prefill (no checkpoint yet): --resume starts afresh from the saved
    config, keeps every stored episode, continues the seed sequence (no episode twice),
    checkpoints the end of prefill, and its counters agree with the store."""
    run = tmp_path / "run"
    store = run / "replay" / "episodes.h5"
    proc = start("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--steps", 40100,
                 "--set", "train.prefill=40000", "--set", "train.checkpoint_every=100000",
                 *TINY, "--run-dir", run, "--quiet")
    wait_until(lambda: count(store) >= 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before, _, _ = stored(store)
    assert not (run / "checkpoints" / "latest.pt").exists()
    res = run_wmtool("train", "--resume", run, "--json")
    assert res.returncode == 0, res.stderr
    assert "no checkpoint yet: starting afresh" in res.stderr
    after, steps, seeds = stored(store)
    assert after[:len(before)] == before  # nothing lost
    assert len(set(after)) == len(after)  # nothing collected twice
    positive = seeds[seeds >= 0]
    assert len(set(positive.tolist())) == len(positive)
    out = json.loads(res.stdout)
    assert out["agent_steps"] == 40100 == steps  # the counters agree with the store
    assert (run / "checkpoints" / "step_000040000.pt").exists()  # end of prefill
    assert json.loads((run / "run.json").read_text())["counters"]["agent_steps"] == 40100


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_agrees_with_the_store(tmp_path):
    run = tmp_path / "run"
    store = run / "replay" / "episodes.h5"
    proc = start("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--steps", 100000,
                 "--set", "train.prefill=200", "--set", "train.checkpoint_every=100000",
                 *TINY, "--run-dir", run)
    wait_until(lambda: stored(store)[1] > 500, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "interrupted by SIGTERM: finished work is saved"
    assert "Traceback" not in err
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted"
    _, steps, _ = stored(store)
    assert meta["counters"]["agent_steps"] == steps  # the episodes under way were dropped
    # a kill -9 after more steps: the resume counts what the store holds, logs nothing twice
    proc = start("train", "--resume", run, "--quiet")
    wait_until(lambda: stored(store)[1] > steps + 400, proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, killed_at, _ = stored(store)
    proc = start("train", "--resume", run, "--quiet")
    wait_until(lambda: stored(store)[1] > killed_at + 200, proc)  # running again
    resumed = json.loads((run / "run.json").read_text())["counters"]
    assert resumed["agent_steps"] == killed_at  # resumed at what the store held
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted by Ctrl-C" in err
    assert json.loads((run / "run.json").read_text())["counters"]["agent_steps"] == \
        stored(store)[1]
    metric_steps_strictly_increase(run)


@pytest.mark.parametrize("obs", ["state", "both"])
def test_ctrl_c_with_workers_prints_one_line(tmp_path, obs):
    """With rendering workers too (`--obs both`: pygame's SDL would turn the SIGTERM that
    stops a worker into a quit event, and the worker printed a BrokenPipe traceback)."""
    out = tmp_path / "w.h5"
    for sig, code, name in ((signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")):
        proc = start("collect", "--env", "gym:CartPole-v1", "--obs", obs, "--steps", 10**7,
                     "--workers", 2, "--out", out, "--quiet")
        before = count(out) if out.exists() else 0
        wait_until(lambda: count(out) > before + 5, proc)
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C does: the whole process group
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code
        assert err.strip().splitlines() == [f"interrupted by {name}: finished work is saved"]
        stored(out)  # closed cleanly: readable, and appendable by the next round


def test_second_resume_is_refused_and_leaves_the_live_run_alone(tmp_path):
    run = tmp_path / "run"
    proc = start("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--steps", 100000,
                 "--set", "train.prefill=200", *TINY, "--run-dir", run, "--quiet")
    try:
        wait_until(lambda: (run / "replay" / "episodes.h5").exists(), proc)
        res = run_wmtool("train", "--resume", run)
        assert res.returncode == 1
        assert res.stderr.strip() == (f"error: {run} is being trained by another process; wait "
                                      "for it to finish or stop it; nothing was changed")
        assert json.loads((run / "run.json").read_text())["status"] == "running"
        res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1",
                         "--run-dir", run)  # a new run into it: refused the same way
        assert res.returncode == 1 and "being trained by another process" in res.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_damaged_config_can_be_restarted_and_names_the_fix(tmp_path):
    """config.yaml cut short (a full disk, on an older wmtool) and no checkpoint: neither
    a dead end for --resume (one line naming the fix) nor for a restart."""
    run = tmp_path / "run"
    args = ["train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--steps", 150,
            "--set", "train.prefill=100", *TINY, "--run-dir", run, "--quiet"]
    assert run_wmtool(*args).returncode == 0
    for pt in (run / "checkpoints").glob("*.pt"):
        pt.unlink()
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text[:len(text) // 3] + "\n  [")
    res = run_wmtool("train", "--resume", run)
    assert res.returncode == 1 and "config.yaml is damaged" in res.stderr
    assert "no checkpoint to restore it from" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run_wmtool(*args)  # the same command again starts over; stored episodes stay
    assert res.returncode == 0, res.stderr
    assert (run / "checkpoints" / "latest.pt").exists()


def test_damaged_config_of_a_run_with_checkpoints_is_restored_from_them(tmp_path):
    """Its checkpoints carry the run's config: eval and --resume use it, config.yaml is
    rewritten from it and the damaged file kept beside it, and the run goes on."""
    run = tmp_path / "run"
    assert run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--steps",
                      150, "--set", "train.prefill=100", *TINY, "--run-dir", run,
                      "--quiet").returncode == 0
    good = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(good[:len(good) // 3] + "\n  [")
    res = run_wmtool("eval", "--run", run, "--episodes", "1", "--json")
    assert res.returncode == 0, res.stderr
    assert "restored from the run's newest checkpoint" in res.stderr
    assert (run / "config.yaml").read_text() == good
    assert (run / "config.yaml.damaged").read_text().endswith("\n  [")
    res = run_wmtool("train", "--resume", run, "--steps", 200, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["agent_steps"] == 200, res.stderr


def test_resume_with_more_steps_extends_a_finished_run(tmp_path):
    """--resume --steps N continues a finished run to N agent steps (config.yaml says so
    afterwards); fewer steps than its budget is refused, changing nothing."""
    run = tmp_path / "run"
    args = ["--set", "train.prefill=100", *TINY, "--quiet", "--json"]
    first = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--steps",
                       150, "--run-dir", run, *args)
    assert json.loads(first.stdout)["agent_steps"] == 150
    res = run_wmtool("train", "--resume", run, "--steps", 120)
    assert res.returncode == 2 and "can only be extended" in res.stderr
    assert "steps: 150" in (run / "config.yaml").read_text()
    res = run_wmtool("train", "--resume", run, "--steps", 250, "--quiet", "--json")
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["agent_steps"] == 250
    assert out["updates"] > json.loads(first.stdout)["updates"]
    assert "steps: 250" in (run / "config.yaml").read_text()
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_truncated_latest_checkpoint_falls_back_to_the_newest_step(tmp_path):
    run = tmp_path / "run"
    res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--steps", 300,
                     "--set", "train.prefill=100", "--set", "train.checkpoint_every=100",
                     *TINY, "--run-dir", run, "--quiet")
    assert res.returncode == 0, res.stderr
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    res = run_wmtool("eval", "--run", run, "--episodes", 1, "--json")
    assert res.returncode == 0, res.stderr
    assert "skipped damaged latest.pt" in res.stderr and "using step_000000300.pt" in res.stderr


def test_run_directory_that_imports_code_needs_trust(tmp_path):
    """env.imports in config.yaml are code: eval, dream and resume import them only with
    --trust-run (or, for resume, --env-import naming them)."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "planted.py").write_text(textwrap.dedent("""
        import os, pathlib
        pathlib.Path(os.environ["PLANTED_MARK"]).write_text("imported")
        import gymnasium
        gymnasium.register("Planted-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv",
                           max_episode_steps=50)
    """))
    mark = tmp_path / "imported"
    path = os.pathsep.join(filter(None, [str(tmp_path / "mods"), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "PLANTED_MARK": str(mark)}
    run = tmp_path / "run"
    res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:Planted-v0", "--env-import",
                     "planted", "--steps", 120, "--set", "train.prefill=100", *TINY,
                     "--run-dir", run, "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    mark.unlink()
    for args in (["eval", "--run", run, "--episodes", 1],
                 ["dream", "--run", run, "--render", tmp_path / "d.gif"],
                 ["train", "--resume", run]):
        res = run_wmtool(*args, env=env)
        assert res.returncode == 1, res.stderr
        assert "imports python code when it is made (planted)" in res.stderr
        assert "--trust-run" in res.stderr and not mark.exists()
    res = run_wmtool("eval", "--run", run, "--episodes", 1, "--trust-run", env=env)
    assert res.returncode == 0, res.stderr
    assert mark.exists()


def test_collecting_again_continues_the_seed_sequence(tmp_path):
    out = tmp_path / "c.h5"
    for _ in range(2):
        res = run_wmtool("collect", "--env", "gym:CartPole-v1", "--episodes", 6, "--workers", 2,
                         "--out", out, "--quiet")
        assert res.returncode == 0, res.stderr
    digests, _, seeds = stored(out)
    assert len(digests) == 12 and len(set(digests)) == 12
    assert sorted(seeds[seeds >= 0].tolist()) == [0, 1, 2, 3]


def test_paths_in_run_json_are_absolute(tmp_path):
    (tmp_path / "a").mkdir()
    res = run_wmtool("collect", "--env", "gym:CartPole-v1", "--episodes", 5, "--out", "d.h5",
                     "--quiet", cwd=tmp_path / "a")
    assert res.returncode == 0, res.stderr
    res = run_wmtool("train", "--algo", "dreamerv3", "--data", "d.h5", "--steps", 4, *TINY,
                     "--run-dir", tmp_path / "run", "--quiet", cwd=tmp_path / "a")
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["data"] == str(tmp_path / "a" / "d.h5")
    res = run_wmtool("train", "--resume", tmp_path / "run", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("args, code, needle", [
    (["--steps", "0"], 2, "--steps"),
    (["--steps", "-5"], 2, "--steps"),
    (["--set", "train.batch=0"], 2, "train.batch=0 is out of range: it must be at least 1"),
    (["--set", "train.train_ratio=0"], 2, "train.train_ratio=0.0 is out of range"),
    (["--set", "env.action_repeat=0"], 2, "env.action_repeat=0 is out of range"),
    (["--set", "train.train_ratio=.inf"], 2, "train.train_ratio=inf is not a finite number"),
    (["--set", "wm.lr=-.inf"], 2, "wm.lr=-inf is not a finite number"),
    (["--set", "train.batch=1000000000000"], 2, "makes less than one update in 100,000"),
    (["--set", "train.length=2000000", "--set", "train.replay_capacity=1000"], 2,
     "no sequence fits in replay"),
])
def test_bad_numbers_are_refused_before_anything_runs(tmp_path, args, code, needle):
    res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", *args,
                     "--run-dir", tmp_path / "run")
    assert res.returncode == code and needle in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()
    if "--set" in args:  # ours: one line (the option parser's own errors are a box)
        assert len(res.stderr.strip().splitlines()) == 1


def test_online_run_without_steps_is_refused_and_its_directory_reusable(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", *TINY, "--set",
            "train.prefill=100", "--run-dir", run, "--quiet"]
    res = run_wmtool(*args, "--set", "train.steps=0")
    assert res.returncode == 1
    assert res.stderr.strip() == ("error: train.steps=0: an online run needs at least one "
                                  "agent step; pass --steps N (N >= 1)")
    res = run_wmtool(*args, "--steps", 120)  # not a dead end: the same --run-dir works
    assert res.returncode == 0, res.stderr


def test_runs_table_marks_a_corrupt_run_json(cli, tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text('{"algo": "dreamerv3", "sta')
    res = cli("runs", tmp_path, "--json")
    assert res.exit_code == 0
    row = json.loads(res.stdout)
    assert row["status"] == "corrupt" and "run.json is damaged" in row["error"]


def test_failed_checkpoint_write_leaves_no_temp_file(tmp_path):
    """A full disk while saving: one WmtoolError naming it, no .tmp file, nothing replaced."""
    from wmtool import ckpt, config
    from wmtool.engine.agent import Agent
    from wmtool.envs.factory import make_env
    from wmtool.errors import WmtoolError

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        cfg = config.compose({"env": {"id": "gym:CartPole-v1"}}, algo="dreamerv3", size="debug")
        env = make_env(cfg.env)
        agent = Agent("dreamerv3", env.obs_space, env.act_space, cfg, "cpu")
        env.close()
        (small / "latest.pt").write_bytes(b"previous")
        with pytest.raises(WmtoolError, match="disk full while writing"):
            ckpt.save(small / "latest.pt", agent, {"agent_steps": 0})
        assert sorted(p.name for p in small.iterdir()) == ["latest.pt"]
        assert (small / "latest.pt").read_bytes() == b"previous"
    finally:
        subprocess.run(["umount", str(small)], check=False)


@pytest.mark.slow
def test_every_reader_of_a_truncated_crashed_store_fails_in_seconds(tmp_path):
    """kill -9 a collect, cut its file short (a partial copy): `eval --data`, `dream --data`
    and `train --data` answer with one line in seconds (they used to hang >10 min)."""
    from test_store_faults import kill_collect_after, one_error_line

    run = tmp_path / "run"
    res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--obs",
                     "both", "--steps", 120, "--set", "train.prefill=100", *TINY,
                     "--run-dir", run, "--quiet")
    assert res.returncode == 0, res.stderr
    store = tmp_path / "c.h5"
    kill_collect_after(store, 100)
    os.truncate(store, store.stat().st_size // 2)
    for args in (["eval", "--run", run, "--data", store],
                 ["dream", "--run", run, "--data", store, "--plot", tmp_path / "p.png"],
                 ["train", "--algo", "dreamerv3", "--data", store, "--steps", 2,
                  "--run-dir", tmp_path / "offline"]):
        started = time.time()
        res = run_wmtool(*args, timeout=120)
        assert res.returncode == 1
        assert "truncated" in one_error_line(res.stderr)
        assert time.time() - started < 30
