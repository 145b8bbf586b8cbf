"""Env steps/s of `wmtool collect` (wrappers + HDF5 storage) against a bare loop.

The bare loop steps the same underlying env with random actions and nothing else: plain
gymnasium for gym and Atari (same ALE settings and AtariPreprocessing), and dm_control's
own API with the same 64x64 render settings and a reused camera for dmc. Prints one JSON
line per env and a table.
Run alone on an idle machine: python recipes/bench/collect_throughput.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wmtool.benchmarks.record import add_record_options, keep

os.environ.setdefault("MUJOCO_GL", "egl")
WMTOOL = str(Path(sys.executable).parent / "wmtool")

CASES = [  # (label, env id, extra collect args, steps)
    ("gym CartPole-v1 (state)", "gym:CartPole-v1", [], 20_000),
    ("dmc cartpole-swingup (pixels 64x64)", "dmc:cartpole-swingup",
     ["--obs", "pixels", "--set", "env.action_repeat=1"], 3_000),
    ("atari Pong (64x64)", "atari:pong", [], 5_000),
]


def bare_gym(env, steps: int) -> float:
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def bare_cartpole(steps: int) -> float:
    import gymnasium

    return bare_gym(gymnasium.make("CartPole-v1"), steps)


def bare_pong(steps: int) -> float:
    import ale_py
    import gymnasium
    from gymnasium.wrappers import AtariPreprocessing

    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.25,
                         full_action_space=False, max_num_frames_per_episode=108_000)
    env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=64,
                             grayscale_obs=False, grayscale_newaxis=True)
    return bare_gym(env, steps)


def bare_dmc(steps: int) -> float:
    from dm_control import suite
    from dm_control.mujoco import Camera

    env = suite.load("cartpole", "swingup", task_kwargs={"random": 0})
    model = env.physics.model
    model.vis.global_.offwidth = model.vis.global_.offheight = 64
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    spec = env.action_spec()
    rng = np.random.default_rng(0)
    env.reset()
    camera = Camera(env.physics, 64, 64, 0)  # built once, as wmtool does
    camera.render()
    start = time.perf_counter()
    for _ in range(steps):
        ts = env.step(rng.uniform(spec.minimum, spec.maximum))
        camera.render()
        if ts.last():
            env.reset()
    return steps / (time.perf_counter() - start)


BARE = {"gym:CartPole-v1": bare_cartpole, "dmc:cartpole-swingup": bare_dmc,
        "atari:pong": bare_pong}


def wmtool_collect(env_id: str, extra: list[str], steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([WMTOOL, "collect", "--env", env_id, "--steps", str(steps),
                              "--out", f"{tmp}/bench.h5", "--json", "--quiet", *extra],
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    add_record_options(parser)
    args = parser.parse_args()
    rows = []
    for label, env_id, extra, steps in CASES:
        bares, ours_runs, loop_shares = [], [], []
        for _ in range(args.runs):  # alternate, so drifts in machine speed hit both alike
            bares.append(BARE[env_id](steps))
            summary = wmtool_collect(env_id, extra, steps)
            ours_runs.append(summary["env_steps_per_s"])
            loop_shares.append(1 - summary["env_time_fraction"])
        bare, ours = statistics.median(bares), statistics.median(ours_runs)
        row = {"env": label, "steps": steps, "runs": args.runs, "bare_steps_per_s": round(bare, 1),
               "wmtool_steps_per_s": round(ours, 1),
               "overhead_pct": round(100 * (1 - ours / bare), 1),
               # time outside env.step within the same run: immune to machine-speed drift
               "outside_env_pct": round(100 * statistics.median(loop_shares), 1),
               "bare_range": [round(min(bares)), round(max(bares))],
               "wmtool_range": [round(min(ours_runs)), round(max(ours_runs))]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'env':38} {'bare/s':>9} {'wmtool/s':>9} {'overhead':>9} {'outside env':>12}")
    for r in rows:
        print(f"{r['env']:38} {r['bare_steps_per_s']:>9,.0f} {r['wmtool_steps_per_s']:>9,.0f} "
              f"{r['overhead_pct']:>8.1f}% {r['outside_env_pct']:>11.1f}%")
    keep("collect", __file__, sys.argv[1:], {"rows": rows}, args, peak=False)


if __name__ == "__main__":
    main()
