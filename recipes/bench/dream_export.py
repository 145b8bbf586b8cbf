"""Benchmarks of issue "See and ship what a world model learned", on this CPU.

- time to render a 6-sequence, 16 + 16 step open-loop video (pixels, 64x64) with `wmtool dream`;
- exported-policy latency per action (TorchScript, ONNX Runtime) against the in-tool greedy
  policy step, on the same observations.
Each figure is the median of --runs repetitions. Run alone on an idle machine.

    .venv/bin/python recipes/bench/dream_export.py --run RUN_DIR [--pixel-run RUN_DIR]

Without --pixel-run, a pixel run of the `xs` preset is created (no updates needed: the work
of rendering does not depend on what the weights learned).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wmtool.benchmarks.record import add_record_options, keep

WMTOOL = str(Path(sys.executable).parent / "wmtool")


def sh(*args) -> dict:
    out = subprocess.run([WMTOOL, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def pixel_run(root: Path) -> Path:
    run = root / "pixels"
    sh("train", "--algo", "dreamerv3", "--env", "dmc:cartpole-balance", "--obs", "pixels",
       "--size", "xs", "--steps", 200, "--set", "train.prefill=200", "--set",
       "train.eval_episodes=0", "--run-dir", run, "--quiet", "--json")
    return run


def render_seconds(run: Path, root: Path, runs: int) -> tuple[list[float], list[float]]:
    """Whole command (process start, loading, episodes, model, video) and, from its JSON,
    the part after loading (episodes in the env, model, drawing, encoding)."""
    command, inside = [], []
    for i in range(runs):
        start = time.perf_counter()
        out = sh("dream", "--run", run, "--render", root / f"ol{i}.mp4", "--sequences", 6,
                 "--context", 16, "--horizon", 16, "--quiet", "--json")
        command.append(time.perf_counter() - start)
        inside.append(out["seconds"])
    return command, inside


def latency(run: Path, root: Path, steps: int, runs: int) -> dict:
    import onnxruntime

    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.export import METADATA_KEY
    from wmtool.engine.loading import load_run
    from wmtool.engine.loops import run_episodes
    from wmtool.envs.factory import make_vec

    loaded = load_run(run)
    torch.set_num_threads(1)  # one action at a time: a single thread is the fast setting
    vec = make_vec(loaded.env_config().env, 1)
    observations = []
    policy = AgentPolicy(loaded.agent, "greedy")
    act = policy.act
    policy.act = lambda obs: (observations.append(obs), act(obs))[1]
    run_episodes(vec, policy, steps=steps, seed=0)
    vec.close()
    keys = loaded.agent.wm.input_keys

    def timed(step_fn) -> float:
        rates = []
        for _ in range(runs):
            start = time.perf_counter()
            for obs in observations:
                step_fn(obs)
            rates.append((time.perf_counter() - start) / len(observations) * 1e6)
        return statistics.median(rates)

    in_tool = AgentPolicy(loaded.agent, "greedy")
    result = {"in_tool_us": timed(in_tool.act)}
    for fmt, suffix in (("torchscript", "pt"), ("onnx", "onnx")):
        path = root / f"policy.{suffix}"
        sh("export", "--run", run, "--format", fmt, "--out", path, "--json")
        if fmt == "onnx":
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            meta = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
            forward = lambda inputs: session.run(None, dict(zip(meta["inputs"], inputs)))
        else:
            files = {METADATA_KEY: ""}
            module = torch.jit.load(str(path), _extra_files=files)
            meta = json.loads(files[METADATA_KEY])
            forward = lambda inputs: [o.numpy() for o in module(*map(torch.from_numpy, inputs))]
        carry = {"c": [np.zeros((1, *s), np.float32) for s in meta["carry_shapes"].values()]}

        def step(obs, forward=forward, carry=carry):
            with torch.no_grad():
                out = forward([np.asarray(obs[k]) for k in keys] + carry["c"] +
                              [np.asarray(obs["is_first"])])
            carry["c"] = out[1:]
            return out[0]

        result[f"{fmt}_us"] = timed(step)
    return {k: round(v, 1) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True, help="a trained run (any obs)")
    parser.add_argument("--pixel-run", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="observations for latency")
    add_record_options(parser)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wmtool-bench-"))
    pixels = args.pixel_run or pixel_run(root)
    command, inside = render_seconds(pixels, root, args.runs)
    out = {"render_6x32_open_loop_command_seconds": round(statistics.median(command), 2),
           "render_6x32_open_loop_after_loading_seconds": round(statistics.median(inside), 2),
           "latency_per_action_vector_run": latency(args.run, root, args.steps, args.runs),
           "latency_per_action_pixel_run": latency(pixels, root, args.steps // 3, args.runs)}
    print(json.dumps(out, indent=1))
    keep("dream-export", __file__, sys.argv[1:], out, args, threads=1)


if __name__ == "__main__":
    main()
