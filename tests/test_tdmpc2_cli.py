"""TD-MPC2 through every command that applies: train online and from a dataset, resume,
eval (planning or the prior alone), dream (reward/value traces: no decoder), export of the
prior with parity, imagine (prior fine-tuning), collect with the trained agent."""
import json

import numpy as np
import pytest
import torch

from wmtool import rundir
from wmtool.data.store import EpisodeReader

ENV = "dmc:cartpole-balance"
TINY = ["--size", "debug", "--set", "runtime.threads=1", "--set", "train.batch=8",
        "--set", "train.prefill_updates=20",
        "--set", "train.train_ratio=32", "--set", "train.eval_episodes=1",
        "--set", "train.eval_every=200", "--set", "env.time_limit=100",
        "--set", "train.eval_mode=prior", "--set", "train.final_eval_mode=greedy",
        "--set", "train.log_every=50", "--set", "train.checkpoint_every=150"]


def ok(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from typer.testing import CliRunner

    from wmtool.cli import app

    run = tmp_path_factory.mktemp("tdmpc2") / "run"
    res = CliRunner().invoke(app, ["train", "--algo", "tdmpc2", "--env", ENV, "--steps", "200",
                                   "--set", "train.prefill=100", *TINY, "--run-dir", str(run),
                                   "--quiet", "--json"], catch_exceptions=False)
    return run, ok(res)


def test_online_training_counts_agent_and_env_steps(trained):
    run, out = trained
    # 20 updates on the prefill at once, then one per agent step: 32 / (batch 8 x length 4)
    assert out["agent_steps"] == 200 and out["env_steps"] == 400  # DMC repeats actions twice
    assert out["updates"] == 20 + 100
    assert out["eval"]["plan/ms_per_action"] > 0
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    # evaluations while training act with the prior; the final one plans, and says so
    evals = [r for r in rows if "eval/return_mean" in r]
    assert [r.get("eval/final") for r in evals] == [None] * (len(evals) - 1) + [1.0]
    assert all("eval/plan/ms_per_action" not in r for r in evals[:-1])
    assert evals[-1]["eval/plan/ms_per_action"] > 0
    logged = [r for r in rows if "train/wm/loss_consistency" in r]
    assert logged and all(np.isfinite(r["train/wm/loss_value"]) for r in logged)
    assert any(r.get("plan/ms_per_action", 0) > 0 for r in rows)  # while collecting too
    last = [r for r in rows if "counters/env_steps" in r][-1]
    assert last["counters/env_steps"] == 2 * last["counters/agent_steps"]
    # 100-step episodes: gamma = (100/5 - 1) / (100/5) = 0.95
    assert logged[-1]["train/wm/discount"] == pytest.approx(0.95)


def test_resume_eval_modes_and_dream_traces(trained, cli, tmp_path):
    run, _ = trained
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(run, copy)
    (copy / "checkpoints" / "step_000000150.pt").replace(copy / "checkpoints" / "latest.pt")
    out = ok(cli("train", "--resume", copy, "--quiet", "--json"))
    assert out["agent_steps"] == 200 and out["updates"] == 120  # no second burst

    planned = ok(cli("eval", "--run", run, "--episodes", "1", "--json"))
    prior = ok(cli("eval", "--run", run, "--episodes", "1", "--mode", "prior", "--json"))
    assert planned["plan/ms_per_action"] > 0 and "plan/ms_per_action" not in prior
    assert planned["checkpoint_env_steps"] == 2 * planned["checkpoint_agent_steps"] == 400
    res = cli("eval", "--run", run, "--mode", "dream")
    assert res.exit_code == 1 and "use one of greedy, sample, prior" in res.stderr

    res = cli("dream", "--run", run, "--render", tmp_path / "d.gif", "--plot",
              tmp_path / "d.png", "--context", "4", "--horizon", "6", "--sequences", "2",
              "--json")
    out = ok(res)
    assert "no decoder" in res.stderr and np.isfinite(out["value_pred_mean"])
    assert len(out["error"]["reward"]) == 6  # reward error per predicted step
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "d.gif").shape[0] == 10 and (tmp_path / "d.png").stat().st_size


def test_exported_prior_acts_like_eval_mode_prior(trained, cli, tmp_path):
    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.loading import load_run
    from wmtool.engine.loops import run_episodes
    from wmtool.envs.factory import make_vec

    run, _ = trained
    path = tmp_path / "prior.pt"
    meta = ok(cli("export", "--run", run, "--format", "torchscript", "--out", path,
                  "--json"))["metadata"]
    assert meta["outputs"] == ["action"] and meta["carry_shapes"] == {}
    module = torch.jit.load(str(path))
    loaded = load_run(run)
    vec = make_vec(loaded.env_config().env, 1)
    policy, seen = AgentPolicy(loaded.agent, "prior"), []
    act = policy.act
    policy.act = lambda obs: seen.append((obs, act(obs))) or seen[-1][1]
    run_episodes(vec, policy, episodes=1, seed=3)
    vec.close()
    keys = loaded.agent.wm.input_keys
    for obs, action in seen[:20]:
        inputs = [torch.as_tensor(obs[k]) for k in keys]
        theirs = module(*inputs, torch.as_tensor(obs["is_first"]))[0].numpy()
        np.testing.assert_allclose(theirs, action, atol=1e-5)


def test_imagine_collect_and_offline_training(trained, cli, tmp_path):
    run, _ = trained
    out = ok(cli("imagine", "--run", run, "--steps", "3", "--eval-episodes", "0",
                 "--run-dir", tmp_path / "im", "--quiet", "--json"))
    assert out["updates"] == 3 and out["env_steps_training"] == 0
    rows = [json.loads(line) for line in open(tmp_path / "im" / "metrics.jsonl")]
    assert any("train/prior/loss" in r for r in rows)
    assert not any("train/wm/loss" in r for r in rows)  # the model stays frozen

    data = tmp_path / "agent.h5"
    ok(cli("collect", "--env", ENV, "--policy", f"run:{run}", "--episodes", "1",
           "--set", "env.time_limit=60", "--out", data, "--quiet"))
    with EpisodeReader(data) as reader:
        assert len(reader) == 1 and "run:" in reader.policy

    out = ok(cli("train", "--algo", "tdmpc2", "--data", data, "--steps", "4", *TINY,
                 "--run-dir", tmp_path / "off", "--quiet", "--json"))
    assert out["updates"] == 4 and out["agent_steps"] == 0
    assert rundir.read_meta(tmp_path / "off")["algo"] == "tdmpc2"
    # held-out losses beside an untrained model's, on the same windows
    report = ok(cli("eval", "--run", run, "--data", data, "--batches", "2", "--json"))
    joint = report["phases"]["joint"]
    assert set(joint["trained"]) >= {"loss_consistency", "loss_reward", "loss_value"}
    assert joint["trained"]["loss_reward"] != joint["untrained"]["loss_reward"]


def test_an_evaluation_mode_the_algorithm_lacks_is_refused_before_training(cli, tmp_path):
    res = cli("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--size", "debug",
              "--steps", "10", "--set", "train.final_eval_mode=prior", "--run-dir",
              tmp_path / "r", "--quiet")
    assert res.exit_code == 1
    assert "train.final_eval_mode=prior: dreamerv3 does not act that way" in res.stderr
    assert "use one of greedy, sample" in res.stderr
