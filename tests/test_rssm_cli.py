"""PlaNet, Dreamer V1 and DreamerV2 through every command that applies to them."""
import json

import numpy as np
import pytest

from wmtool import rundir

# PlaNet plans continuous actions (DMC); V1 and V2 take CartPole's discrete ones, so the
# straight-through (V1) and REINFORCE (V2) actor paths run end to end here as well
CASES = {"planet": "dmc:cartpole-balance", "dreamerv1": "gym:CartPole-v1",
         "dreamerv2": "gym:CartPole-v1"}
TINY = ["--size", "debug", "--set", "runtime.threads=1", "--set", "train.batch=4",
        "--set", "train.length=16", "--set", "train.train_ratio=64",
        "--set", "planner.candidates=64", "--set", "planner.top=8",
        "--set", "planner.iterations=3", "--set", "planner.horizon=6",
        "--set", "train.eval_episodes=1", "--set", "train.eval_every=200",
        "--set", "env.time_limit=100", "--set", "train.log_every=50",
        "--set", "train.checkpoint_every=150"]


def ok(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else None


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(CASES))
def test_train_resume_eval_dream_export_imagine(algo, cli, tmp_path):
    env, run = CASES[algo], tmp_path / algo
    out = ok(cli("train", "--algo", algo, "--env", env, "--steps", "200", "--set",
                 "train.prefill=100", *TINY, "--run-dir", run, "--quiet", "--json"))
    # updates = (agent steps - prefill) x train_ratio / (batch x length)
    assert out["agent_steps"] == 200 and out["updates"] == (200 - 100) * 64 // (4 * 16)
    repeat = 8 if algo == "planet" else 1  # PlaNet's cartpole action repeat (the paper's)
    assert out["env_steps"] == 200 * repeat
    assert ("plan/ms_per_action" in out["eval"]) == (algo == "planet")
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert any("train/wm/loss_reward" in row for row in rows)
    if algo == "planet":  # planning time is measured while collecting and in evaluation
        assert any(row.get("plan/ms_per_action", 0) > 0 for row in rows)
    else:
        assert any("train/actor/loss" in row for row in rows)

    # resume from the mid-run checkpoint, as after a crash at step 150
    (run / "checkpoints" / "step_000000150.pt").replace(run / "checkpoints" / "latest.pt")
    out = ok(cli("train", "--resume", run, "--quiet", "--json"))
    assert out["agent_steps"] == 200 and out["updates"] == 100

    out = ok(cli("eval", "--run", run, "--episodes", "1", "--json"))
    assert out["episodes"] == 1 and 0 < out["length_mean"] <= 100
    assert (out.get("plan/ms_per_action", 0) > 0) == (algo == "planet")

    ok(cli("dream", "--run", run, "--render", tmp_path / "open.gif", "--context", "4",
           "--horizon", "4", "--sequences", "2", "--quiet"))
    import imageio.v3 as iio
    assert iio.imread(tmp_path / "open.gif").shape[0] == 8

    exported = tmp_path / "policy.pt"
    res = cli("export", "--run", run, "--format", "torchscript", "--out", exported, "--json")
    assert ok(res)["format"] == "torchscript" and exported.stat().st_size > 0

    res = cli("imagine", "--run", run, "--steps", "3", "--eval-episodes", "0", "--run-dir",
              tmp_path / "im", "--quiet", "--json")
    if algo == "planet":
        assert res.exit_code == 1 and "no behaviour to train" in res.stderr
        assert not (tmp_path / "im").exists()  # refused before anything was written
    else:
        out = ok(res)
        assert out["updates"] == 3 and out["env_steps_training"] == 0


@pytest.mark.parametrize("algo", sorted(CASES))
def test_offline_training_from_a_dataset(algo, cli, tmp_path):
    data = tmp_path / "d.h5"
    ok(cli("collect", "--env", CASES[algo], "--steps", "120", "--set", "env.time_limit=60",
           "--out", data, "--quiet"))
    out = ok(cli("train", "--algo", algo, "--data", data, "--steps", "4", *TINY,
                 "--run-dir", tmp_path / "off", "--quiet", "--json"))
    assert out["updates"] == 4 and out["agent_steps"] == 0
    meta = rundir.read_meta(tmp_path / "off")
    assert meta["algo"] == algo
    rows = [json.loads(line) for line in open(tmp_path / "off" / "metrics.jsonl")]
    assert all(np.isfinite(v) for row in rows for v in row.values() if isinstance(v, float))


def test_planet_refuses_discrete_actions(cli, tmp_path):
    res = cli("train", "--algo", "planet", "--env", "gym:CartPole-v1", "--size", "debug",
              "--steps", "10", "--run-dir", tmp_path / "p", "--quiet")
    assert res.exit_code == 1 and "continuous actions only" in res.stderr
