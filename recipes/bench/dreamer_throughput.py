"""Update throughput of the RSSM family on this CPU (issue "DreamerV3 end to end").

`--algo planet|dreamerv1|dreamerv2|tdmpc2 --env dmc:cartpole-balance --recipe NAME` measures
the others on any env and recipe (no size preset unless --size is given).

Setting of the reference figure (sheeprl 0.8.4 XS, ~0.45 updates/s here): vector CartPole,
batch 16 x 64, imagination horizon 15 from all 1024 posterior states, dense 256 / GRU 256 /
32x32 latents (`--size xs`, 3.16M parameters). Prints updates/s (median of --runs timed
blocks), imagined state-steps/s, FLOPs per update (torch's FlopCounterMode) and the achieved
GFLOP/s next to a plain matmul's on the same threads. Run alone on an idle machine.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch

from wmtool import config
from wmtool.behavior.random import RandomPolicy
from wmtool.data.replay import Replay
from wmtool.engine.agent import Agent
from wmtool.engine.loops import run_episodes
from wmtool.engine.train import window
from wmtool.envs.factory import make_env
from wmtool.envs.vector import VecEnv


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """A plain n x n matmul's GFLOP/s; falls back to a 512 probe where the dtype is emulated
    (bf16 without AVX512-BF16 runs at ~1 GFLOP/s, and 2048^3 would take minutes)."""
    def timed(size: int, count: int) -> float:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(count):
            a @ b
        return 2 * size**3 * count / (time.perf_counter() - start) / 1e9

    probe = timed(512, 2)
    return timed(n, reps) if probe > 20 else probe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", default="dreamerv3")
    parser.add_argument("--env", default="gym:CartPole-v1")
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--size", default=None, help="size preset (default: xs for dreamerv3 "
                        "without a recipe, else none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--updates", type=int, default=5, help="updates per timed block")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.size is None and args.algo == "dreamerv3" and not args.recipe:
        args.size = "xs"  # the reference figure's setting
    cfg = config.compose({"env": {"id": args.env}}, args.recipe, algo=args.algo, size=args.size,
                         sets=[f"train.amp={str(args.amp).lower()}"])
    vec = VecEnv([functools.partial(make_env, cfg.env, None)])
    replay = Replay(vec.obs_space, vec.act_space, 100_000)
    run_episodes(vec, RandomPolicy(vec.act_space, 0), steps=5000, seed=0, on_episode=replay.add)
    vec.close()
    agent = Agent(args.algo, vec.obs_space, vec.act_space, cfg)
    batch, length = cfg.train.batch, cfg.train.length
    rows = window(agent.wm, length)  # plus rows a model only reads (TD-MPC2's frame stack)
    for _ in range(2):  # warm-up
        agent.train_step(replay.sample(batch, rows))
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        agent.train_step(replay.sample(batch, rows))
    flops = counter.get_total_flops()
    rates = []
    for _ in range(args.runs):
        start = time.perf_counter()
        for _ in range(args.updates):
            agent.train_step(replay.sample(batch, rows))
        rates.append(args.updates / (time.perf_counter() - start))
    ups = statistics.median(rates)
    result = {
        "algo": args.algo, "env": args.env, "recipe": args.recipe,
        "size": args.size, "threads": args.threads, "amp_bf16": args.amp,
        "parameters": agent.parameter_counts()["total"],
        "batch": batch, "length": length,
        "updates_per_s": round(ups, 3), "updates_per_s_range": [round(min(rates), 3),
                                                                round(max(rates), 3)],
        "imagined_state_steps_per_s": round(ups * agent.behavior.imagined_per_update()),
        "gflop_per_update": round(flops / 1e9, 2),
        "achieved_gflops": round(flops / 1e9 * ups, 1),
        "matmul_gflops_fp32": round(matmul_gflops(torch.float32), 1),
        "matmul_gflops_bf16": round(matmul_gflops(torch.bfloat16), 1),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
