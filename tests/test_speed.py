"""train.compile, the measured thread policy, bf16 only where native, and `wmtool bench`."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_evidence import bench_module

from wmtool import config, rundir, runtime
from wmtool.behavior.random import RandomPolicy
from wmtool.data.replay import Replay
from wmtool.engine import compiling
from wmtool.engine.agent import Agent
from wmtool.engine.loops import run_episodes
from wmtool.engine.session import TrainSession
from wmtool.engine.train import window
from wmtool.envs.factory import make_env
from wmtool.envs.vector import VecEnv
from wmtool.errors import WmtoolError
from wmtool.launch.threads import BUSY_CORES

SETTINGS = {"dreamerv3": "gym:CartPole-v1", "tdmpc2": "gym:Pendulum-v1"}


def setting(algo: str, sets=()):
    cfg = config.compose({"env": {"id": SETTINGS[algo]}}, algo=algo, size="debug",
                         sets=["train.batch=4", "train.length=8", *sets])
    vec = VecEnv([lambda: make_env(cfg.env, None)])
    replay = Replay(vec.obs_space, vec.act_space, 10_000)
    try:
        run_episodes(vec, RandomPolicy(vec.act_space, 0), steps=400, seed=0,
                     on_episode=replay.add)
    finally:
        vec.close()
    return cfg, vec.obs_space, vec.act_space, replay


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(SETTINGS))
def test_compiled_and_eager_updates_agree(algo):
    """One update on a fixed batch and seed: the same losses, gradient norms and weights
    after the step (float reassociation only: 1e-4 relative, 1e-5 absolute on weights)."""
    cfg, obs_space, act_space, replay = setting(algo)
    rows = replay.sample(4, 8)  # no history rows for vector observations
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        agent = Agent(algo, obs_space, act_space, cfg)
        if compiled:
            agent.compile_mode = "default"
            assert agent.compile_hot_paths()
        torch.manual_seed(1)
        # inductor draws its own random numbers unless told to call torch's
        with torch._inductor.config.patch(fallback_random=True):
            metrics = agent.train_step(rows)
        results.append(({k: float(v) for k, v in metrics.items()},
                        [p.detach().clone() for p in agent.parameters()]))
    (eager, eager_params), (comp, comp_params) = results
    assert eager.keys() == comp.keys()
    for key in eager:
        assert comp[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(eager_params, comp_params):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(SETTINGS))
def test_no_recompilation_after_warmup(algo):
    """Static shapes: once the updates and acting have run, nothing compiles again."""
    cfg, obs_space, act_space, replay = setting(algo, ["train.compile=on"])
    torch.manual_seed(0)
    agent = Agent(algo, obs_space, act_space, cfg)
    assert agent.compile_hot_paths()
    obs = {k: v[:, 0] for k, v in replay.sample(1, 1).items()}

    def work():
        agent.train_step(replay.sample(4, window(agent.wm, 8)))
        carry = None
        for _ in range(2):
            _, carry = agent.policy_step(obs, carry, "sample")

    for _ in range(2):
        work()
    warm = compiling.compiled_graphs()
    assert warm > 0
    for _ in range(3):
        work()
    assert compiling.compiled_graphs() == warm


def test_compile_setting_resolves_per_device():
    assert compiling.resolve("off", "cuda") == (None, "train.compile=off")
    assert compiling.resolve("on", "cpu")[0] == "default"
    assert compiling.resolve("on", "cuda:1")[0] == "reduce-overhead"
    assert compiling.resolve("auto", "cpu")[0] is None  # measured: not worth it on CPU
    assert compiling.resolve("auto", "cuda")[0] == "reduce-overhead"
    with pytest.raises(WmtoolError, match="train.compile"):
        compiling.resolve("fast", "cpu")
    # YAML 1.1 reads on/off as booleans; the string key takes them back
    cfg = config.compose({"env": {"id": "gym:CartPole-v1"}}, algo="dreamerv3",
                         sets=["train.compile=on"])
    assert cfg.train.compile == "on"


def test_bf16_is_refused_where_it_would_be_emulated(monkeypatch, tmp_path):
    cfg, obs_space, act_space, _ = setting("dreamerv3", ["train.amp=true"])
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert runtime.native_bf16("cpu") is None
    with pytest.raises(WmtoolError, match="no native bf16"):
        Agent("dreamerv3", obs_space, act_space, cfg)
    # a run (a sweep's, say) refused for it leaves no run directory behind
    run = tmp_path / "run"
    with pytest.raises(WmtoolError, match="no native bf16"):
        TrainSession.create("dreamerv3", cfg, run, None, True, True)
    assert not run.exists()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert Agent("dreamerv3", obs_space, act_space, cfg).amp


def test_the_thread_choice_is_measured_and_recorded(tmp_path):
    """runtime.threads=0: the trainer times its own updates at each candidate count, keeps
    the fastest and writes the rates to run.json; a pinned count is recorded as pinned. When
    another process held a core meanwhile (a parallel test), the probe must say it chose by
    update time instead (tests/test_threads.py tests that choice itself)."""
    for threads, run in ((0, tmp_path / "measured"), (1, tmp_path / "pinned")):
        subprocess.run([sys.executable, "-m", "wmtool", "train", "--algo", "dreamerv3",
                        "--env", "gym:CartPole-v1", "--size", "debug", "--steps", "300",
                        "--set", "train.prefill=100", "--set", "train.train_ratio=32",
                        "--set", "train.batch=4", "--set", "train.length=8",
                        "--set", f"runtime.threads={threads}", "--set", "train.eval_every=0",
                        "--set", "train.eval_episodes=0", "--run-dir", str(run), "--quiet"],
                       check=True)
    measured = rundir.read_meta(tmp_path / "measured")["runtime"]
    pinned = rundir.read_meta(tmp_path / "pinned")["runtime"]
    assert pinned["threads"] == 1 and pinned["thread_policy"] == "runtime.threads"
    assert measured["compile"] == "off" and measured["precision"] == "fp32"
    if runtime.choose_threads(0) == 1:
        assert measured["thread_policy"].startswith("all cores")
        return
    rates = measured["updates_per_s_by_threads"]
    if measured.get("probe_other_cores", 0) >= BUSY_CORES:  # another test (xdist) held a core
        assert measured["thread_policy"].startswith("by update time")
        return
    assert measured["thread_policy"] == "measured" and len(rates) >= 2
    assert measured["threads"] == int(max(rates, key=rates.get))


def test_bench_reports_speed_against_the_machines_own_peak():
    out = subprocess.run([sys.executable, "-m", "wmtool", "bench", "--algo", "dreamerv3",
                          "--size", "debug", "--runs", "2", "--updates", "1", "--act-steps", "3",
                          "--random-steps", "300", "--set", "train.length=16", "--json"],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    for key in ("updates_per_s", "ms_per_update", "replayed_steps_per_s",
                "imagined_state_steps_per_s", "achieved_gflops", "matmul_gflops_fp32",
                "matmul_gflops_bf16", "gflop_per_update", "act_ms_per_step", "peak_memory_mb"):
        assert r[key] > 0, key
    assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert r["ms_per_update"] == pytest.approx(1000 / r["updates_per_s"], rel=0.01)
    assert r["replayed_steps_per_s"] == pytest.approx(r["updates_per_s"] * 16 * 16, rel=0.01)
    assert r["percent_of_fp32_matmul"] == pytest.approx(
        100 * r["achieved_gflops"] / r["matmul_gflops_fp32"], abs=0.5)
    assert r["compile"] == "off" and r["graphs_compiled"] == 0
    assert np.isfinite(r["warmup_s"]) and r["compile_s"] >= 0
    # kept as a record, the result gets a row of the generated tables; so does a speed record
    tables = bench_module("tables")
    bench = {"kind": "bench", "_record": "bench-x", "machine": {"cpu": "CPU"}, "results": [r]}
    median = {"updates_per_s": 2.0, "act_ms_per_step": 1.0, "percent_of_fp32_matmul": 50.0}
    speed = {"kind": "speed", "_record": "speed-x", "commit": "b" * 40, "baseline_commit": "a" * 40,
             "machine": {"cpu": "CPU", "cpu_capability": "AVX2"}, "protocol": "3 rounds",
             "results": [{"setting": "demo", "median": {
                 "baseline": {**median, "updates_per_s": 1.0},
                 "current": median}, "update_speedup": 2.0, "act_speedup": 1.0}]}
    text = tables.markdown([bench, speed], {})
    assert f"{r['updates_per_s']:.3g} (" in next(line for line in text.splitlines()
                                                 if line.startswith("| `bench-x`"))
    assert "| demo | aaaaaaa -> bbbbbbb | 1 -> 2 | 2.00x |" in text


def test_replay_on_the_device_gives_the_same_batches():
    """train.replay_on_device: the columns' copy on the device follows every add, eviction
    and derived column, and sampling from it gives exactly the host batches."""
    cfg, obs_space, act_space, _ = setting("dreamerv3")
    episodes = []
    vec = VecEnv([lambda: make_env(cfg.env, None)])
    try:
        run_episodes(vec, RandomPolicy(vec.act_space, 1), steps=600, seed=1,
                     on_episode=episodes.append)
    finally:
        vec.close()
    host = Replay(obs_space, act_space, 300, seed=3)
    dev = Replay(obs_space, act_space, 300, seed=3, device="cpu")
    for ep in episodes:  # grows past the first allocation, then evicts past 300 rows
        host.add(ep)
        dev.add(ep)
        if len(host) >= 8:
            np.testing.assert_array_equal(dev.sample(2, 8)["vector"].numpy(),
                                          host.sample(2, 8)["vector"])
    assert len(host) == len(dev) < sum(ep.length + 1 for ep in episodes)
    for replay in (host, dev):
        replay.derive({"double": lambda rows: rows["reward"] * 2})
    for _ in range(3):
        a, b = host.sample(4, 8), dev.sample(4, 8)
        assert a.keys() == b.keys() and "double" in b
        for k in a:
            assert isinstance(b[k], torch.Tensor) and b[k].device.type == "cpu"
            np.testing.assert_array_equal(b[k].numpy(), a[k])


def test_profile_ranks_the_operators_of_an_update(tmp_path):
    script = Path(__file__).parents[1] / "recipes" / "bench" / "profile_update.py"
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, str(script), "--algo", "dreamerv3", "--size", "debug",
                    "--updates", "1", "--acting", "2", "--top", "5", "--set", "train.length=16",
                    "--out", str(out)], check=True, capture_output=True, text=True)
    r = json.loads(out.read_text())
    shares = [row["share"] for row in r["update_ops"]]
    assert len(shares) == 5 and shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
    assert any(row["op"] == "aten::mm" for row in r["update_ops"] + r["acting_ops"])
    assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
