"""Issue "See and ship what a world model learned": dream, imagine, export, runs, compare."""
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from conftest import file_digest, run_wmtool

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--algo", "dreamerv3", "--size", "debug", "--quiet"]


def train(cli, run_dir, *extra):
    res = cli("train", *TRAIN, "--run-dir", run_dir, *extra, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real runs shared by the tests here: a trained and an untrained CartPole (vector,
    discrete) model, a dataset both can be judged on, and a pixel DMC run (continuous)."""
    from typer.testing import CliRunner

    from wmtool.cli import app

    runner = CliRunner()
    cli = lambda *a: runner.invoke(app, [str(x) for x in a], catch_exceptions=False)
    root = tmp_path_factory.mktemp("runs")
    cartpole = ["--env", "gym:CartPole-v1", "--set", "train.length=16"]
    train(cli, root / "trained", *cartpole, "--steps", "900", "--set", "train.prefill=300",
          "--set", "train.train_ratio=128", "--set", "train.eval_every=300",
          "--set", "train.eval_episodes=2", "--set", "dream.every=300",
          "--set", "dream.context=4", "--set", "dream.horizon=4")
    train(cli, root / "untrained", *cartpole, "--steps", "300", "--set", "train.prefill=300")
    res = cli("collect", "--env", "gym:CartPole-v1", "--episodes", "20", "--seed", "99",
              "--out", root / "cartpole.h5", "--quiet")
    assert res.exit_code == 0, res.output
    train(cli, root / "pixels", "--env", "dmc:cartpole-balance", "--obs", "pixels", "--steps",
          "120", "--set", "train.prefill=80", "--set", "train.length=8",
          "--set", "train.train_ratio=64", "--set", "env.time_limit=60",
          "--set", "train.eval_episodes=0")
    return root


def test_open_loop_video_plot_and_errors_per_step(cli, runs, tmp_path):
    video, still = tmp_path / "ol.mp4", tmp_path / "ol.png"
    res = cli("dream", "--run", runs / "trained", "--data", runs / "cartpole.h5", "--context",
              4, "--horizon", 6, "--sequences", 3, "--render", video, "--plot", still, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["error"]["vector"]) == 6 and len(out["error"]["reward"]) == 6
    frames = imageio.mimread(video)
    assert len(frames) == 10 == out["video_frames"]  # context + horizon
    assert list(frames[0].shape[:2]) == [-(-s // 16) * 16 for s in out["video_size"]]
    assert frames[0].std() > 0  # curves were drawn
    picture = imageio.imread(still)
    assert picture.ndim == 3 and picture.shape[0] > 100


def test_trained_model_predicts_better_than_untrained_on_the_same_data(cli, runs):
    def error(run):
        res = cli("dream", "--run", runs / run, "--data", runs / "cartpole.h5", "--context", 4,
                  "--horizon", 6, "--sequences", 32, "--seed", 3, "--json")
        assert res.exit_code == 0, res.output
        return np.mean(json.loads(res.stdout)["error"]["vector"])

    trained, untrained = error("trained"), error("untrained")
    assert trained < 0.5 * untrained, (trained, untrained)


def test_dream_errors_are_logged_during_training(runs):
    rows = [json.loads(l) for l in (runs / "trained" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "dream/vector/error_h1" in r]
    assert logged and {"dream/vector/error_h4", "dream/reward/error_mean"} <= set(logged[-1])


def test_pixel_open_loop_and_free_dream_videos(cli, runs, tmp_path):
    res = cli("dream", "--run", runs / "pixels", "--context", 5, "--horizon", 5, "--sequences",
              2, "--scale", 1, "--render", tmp_path / "ol.gif", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    frames = imageio.mimread(tmp_path / "ol.gif")
    # 2 columns of 64px tiles (+2px borders), 3 rows (truth/prediction/error) + a label strip
    assert len(frames) == 10 and frames[0].shape[:2] == (3 * 68 + 14, 2 * 68)
    assert len(out["error"]["image"]) == 5
    res = cli("dream", "--run", runs / "pixels", "--free", "--context", 5, "--horizon", 7,
              "--sequences", 2, "--scale", 1, "--render", tmp_path / "free.mp4", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["video_frames"] == 12
    assert len(imageio.mimread(tmp_path / "free.mp4")) == 12


def test_imagine_takes_no_env_steps_and_writes_a_new_checkpoint(cli, runs, tmp_path):
    from wmtool.envs.vector import VecEnv

    source_ckpt = runs / "trained" / "checkpoints" / "latest.pt"
    before_digest, before_steps = file_digest(source_ckpt), VecEnv.steps_taken
    res = cli("imagine", "--run", runs / "trained", "--steps", 6, "--eval-episodes", 0,
              "--run-dir", tmp_path / "im", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert VecEnv.steps_taken == before_steps  # counted at the env itself
    assert out["env_steps_training"] == 0 and out["updates"] == 6
    assert out["imagined_steps"] == 6 * 16 * 16 * 15
    assert file_digest(source_ckpt) == before_digest
    from wmtool import ckpt

    a, b = ckpt.load(source_ckpt), ckpt.load(tmp_path / "im" / "checkpoints" / "latest.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"] if k.startswith("wm."))
    changed = [k for k in a["model"] if k.startswith("behavior.actor")
               and not torch.equal(a["model"][k], b["model"][k])]
    assert changed, "the actor did not learn"
    # with evaluation: only the evaluation steps the env
    res = cli("imagine", "--run", runs / "trained", "--steps", 3, "--eval-episodes", 1,
              "--from-scratch", "--run-dir", tmp_path / "im2", "--json")
    out = json.loads(res.stdout)
    assert out["env_steps_training"] == 0 and out["env_steps_evaluation"] > 0
    assert out["eval"]["episodes"] == 1


def _exported_actions(fmt, path, keys, observations):
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map["wmtool.json"])
        step = lambda inputs: session.run(None, dict(zip(meta["inputs"], inputs)))
    else:
        files = {"wmtool.json": ""}
        module = torch.jit.load(str(path), _extra_files=files)
        meta = json.loads(files["wmtool.json"])
        step = lambda inputs: [o.numpy() for o in module(*map(torch.from_numpy, inputs))]
    carry = [np.zeros((1, *s), np.float32) for s in meta["carry_shapes"].values()]
    actions = []
    for obs in observations:
        inputs = [np.asarray(obs[k])[None] for k in keys]
        action, *carry = step([*inputs, *carry, np.asarray([bool(obs["is_first"])])])
        actions.append(action[0])
    return np.asarray(actions, np.float64)


@pytest.mark.parametrize("run,fmt", [("trained", "torchscript"), ("trained", "onnx"),
                                     ("pixels", "torchscript"), ("pixels", "onnx")])
def test_export_parity_with_in_tool_greedy_actions(cli, runs, tmp_path, run, fmt):
    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.loading import load_run
    from wmtool.engine.loops import run_episodes
    from wmtool.envs.factory import make_vec

    out = tmp_path / f"policy.{'onnx' if fmt == 'onnx' else 'pt'}"
    res = cli("export", "--run", runs / run, "--format", fmt, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    loaded = load_run(runs / run)
    vec = make_vec(loaded.env_config().env, 1)
    policy = AgentPolicy(loaded.agent, "greedy")
    observations, actions = [], []
    act = policy.act

    def recording(obs):
        observations.append({k: v[0] for k, v in obs.items()})
        actions.append(act(obs)[0])
        return actions[-1][None]

    policy.act = recording
    run_episodes(vec, policy, steps=40, seed=5)  # episode starts included, however it plays
    vec.close()
    theirs = _exported_actions(fmt, out, loaded.agent.wm.input_keys, observations)
    ours = np.asarray(actions, np.float64)
    assert len(ours) >= 40 and theirs.shape == ours.shape
    assert sum(bool(o["is_first"]) for o in observations) >= 1
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_exported_policy_runs_without_wmtool(cli, runs, tmp_path):
    out = tmp_path / "policy.pt"
    assert cli("export", "--run", runs / "trained", "--format", "torchscript", "--out",
               out).exit_code == 0
    before = out.read_bytes()
    res = cli("export", "--run", runs / "trained", "--format", "onnx", "--out", out)
    assert res.exit_code == 1 and f"--out {out} exists" in res.stderr  # never overwritten
    assert out.read_bytes() == before
    assert cli("export", "--run", runs / "trained", "--format", "torchscript", "--out", out,
               "--force").exit_code == 0
    blocker = tmp_path / "blocked" / "wmtool"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('wmtool must not be needed')\n")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "run_exported.py"), str(out),
                          "CartPole-v1", "--episodes", "1", "--seed", "21"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(blocker.parent)})
    assert res.returncode == 0, res.stderr
    standalone = json.loads(res.stdout.splitlines()[0])["return"]
    before = torch.get_num_threads()
    res = cli("eval", "--run", runs / "trained", "--episodes", 1, "--seed", 21, "--threads", 1,
              "--json")
    assert standalone == pytest.approx(json.loads(res.stdout)["return_mean"])
    assert json.loads(res.stdout)["threads"] == 1 and torch.get_num_threads() == 1  # in-process
    torch.set_num_threads(before)


def test_safetensors_export_round_trips_weights(cli, runs, tmp_path):
    from wmtool.engine.export import load_safetensors
    from wmtool.engine.loading import load_run

    out = tmp_path / "weights.safetensors"
    res = cli("export", "--run", runs / "pixels", "--format", "safetensors", "--out", out,
              "--json")
    assert res.exit_code == 0, res.output
    agent, meta = load_safetensors(out)
    ours = load_run(runs / "pixels").agent.state_dict()
    assert meta["algo"] == "dreamerv3" and meta["obs_space"]["image"]["shape"] == [64, 64, 3]
    assert set(agent.state_dict()) == set(ours)
    assert all(torch.equal(agent.state_dict()[k], ours[k]) for k in ours)


def test_runs_table_and_compare_curves(cli, runs, tmp_path):
    res = cli("runs", runs, "--json")
    assert res.exit_code == 0, res.output
    rows = {Path(r["run"]).name: r for r in map(json.loads, res.stdout.splitlines())}
    assert {"trained", "untrained", "pixels"} <= set(rows)
    trained = rows["trained"]
    assert trained["agent_steps"] == trained["env_steps"] == 900
    assert trained["status"] == "finished"
    assert rows["trained"]["last_eval"] is not None
    table = cli("runs", runs)
    assert table.exit_code == 0 and "trained" in table.stdout and "gym:CartPole-v1" in table.stdout
    # a second seed of the trained recipe groups with the first
    train(cli, tmp_path / "seed1", "--env", "gym:CartPole-v1", "--set", "train.length=16",
          "--steps", "600", "--seed", "1", "--set", "train.prefill=300", "--set",
          "train.train_ratio=128", "--set", "train.eval_every=300", "--set",
          "train.eval_episodes=2", "--set", "dream.every=300", "--set", "dream.context=4",
          "--set", "dream.horizon=4")
    plot = tmp_path / "curves.png"
    res = cli("compare", runs / "trained", tmp_path / "seed1", runs / "untrained",
              "--plot", plot, "--json")
    assert res.exit_code == 0, res.output
    groups = json.loads(res.stdout)["groups"]
    by_runs = sorted(len(g["runs"]) for g in groups)
    assert by_runs == [1, 2]
    two = next(g for g in groups if len(g["runs"]) == 2)
    assert two["count"][0] == 2 and len(two["steps"]) == len(two["mean"]) == len(two["std"])
    assert imageio.imread(plot).shape[0] > 100


@pytest.mark.parametrize("args,needle,code", [
    (["dream", "--run", "nope"], "not a wmtool run directory", 1),
    (["export", "--run", "RUN", "--format", "pickle", "--out", "x"], "--format pickle: unknown",
     2),  # a usage error
    (["export", "--run", "RUN", "--format", "onnx", "--out", "x", "--checkpoint", "BAD"],
     "not a loadable checkpoint", 1),
    (["imagine", "--run", "nope"], "not a wmtool run directory", 1),
    (["compare", "nope"], "not a wmtool run directory", 1),
    (["dream", "--run", "RUN", "--render", "x.avi"], "unknown format", 1),
    (["dream", "--run", "RUN", "--data", "DATA", "--context", "400"], "no episode has", 1),
])
def test_bad_inputs_give_one_line_errors(runs, tmp_path, args, needle, code):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    subs = {"RUN": runs / "trained", "BAD": bad, "DATA": runs / "cartpole.h5"}
    res = run_wmtool(*[subs.get(a, a) for a in args], cwd=tmp_path)
    assert res.returncode == code, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr


def test_models_without_a_decoder_get_a_clear_error():
    from wmtool import config
    from wmtool.engine.agent import Agent
    from wmtool.engine.dream import open_loop
    from wmtool.errors import WmtoolError
    from wmtool.spaces import Space

    cfg = config.compose({"env": {"id": "dmc:cartpole-balance"}}, algo="tdmpc2", size="debug")
    agent = Agent("tdmpc2", {"vector": Space((5,), "float32")}, Space((1,), "float32", -1, 1),
                  cfg)  # TD-MPC2 has no decoder: its model is not `Decodes`
    batch = {"prev_action": np.zeros((1, 4, 1), np.float32)}
    with pytest.raises(WmtoolError, match="has no decoder"):
        open_loop(agent, batch, context=2)


def test_dream_windows_never_cross_an_episode_start():
    from wmtool import spaces
    from wmtool.data.episode import Episode
    from wmtool.data.replay import Replay

    obs_space, act_space = {"vector": spaces.vector(1)}, spaces.discrete(2)
    replay = Replay(obs_space, act_space, 10_000)
    for length in (3, 40, 5, 60, 2):
        replay.add(Episode({"vector": np.arange(length + 1, dtype=np.float32)[:, None]},
                           np.zeros(length, np.int64), np.ones(length, np.float32),
                           np.zeros(length, bool), np.zeros(length, bool)))
    rng = np.random.default_rng(0)
    batch = replay.sample_within_episodes(64, 20, rng)
    assert batch is not None and not batch["is_first"][:, 1:].any()
    # consecutive rows of one episode: the observation counts up by one
    assert (np.diff(batch["vector"][..., 0], axis=1) == 1).all()
    assert replay.sample_within_episodes(4, 80, rng) is None  # no episode is that long
