"""Does a World Models dream rank controllers as the real env does? Scores each run's
controller inside one model's dream, from the same real episode starts, with the return
CMA-ES optimises there (predicted rewards weighted by the predicted chance of continuing).

Usage: .venv/bin/python recipes/bench/dream_scores.py MODEL_RUN CONTROLLER_RUN... \
           [--temperature 1.0] [--starts 32] [--horizon 400]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from wmtool.benchmarks.record import add_record_options, keep
from wmtool.data.replay import Replay
from wmtool.data.store import EpisodeReader
from wmtool.engine.agent import to_tensors
from wmtool.engine.loading import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("controllers", type=Path, nargs="+")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--starts", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=400)
    add_record_options(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_run(args.model, optimizers=False)
    wm = model.agent.wm
    wm.temperature = args.temperature
    replay = Replay(model.agent.obs_space, model.agent.act_space, 10**9)
    with EpisodeReader(model.meta["data"]) as reader:
        for episode in reader:
            replay.add(episode)
    rows = to_tensors(replay.sample_episode_starts(args.starts), model.agent.device)
    with torch.no_grad():
        post, _ = wm.observe(rows, sample=False)
    start = {k: v[:, 0] for k, v in post.items()}
    print(f"dream of {args.model} at tau {args.temperature}: {args.starts} episode starts, "
          f"{args.horizon} steps")
    scores = {}
    for run in args.controllers:
        controller = load_run(run, optimizers=False).agent.behavior
        params = controller.flat().detach()[None].expand(args.starts, -1)
        torch.manual_seed(1)  # the same dream noise for every controller
        returns = controller.dream_returns(wm, start, params, args.horizon)
        print(f"  {run}: {returns.mean():.1f} ± {returns.std():.1f}")
        scores[str(run)] = {"return_mean": float(returns.mean()),
                            "return_std": float(returns.std())}
    keep("dream-scores", __file__, sys.argv[1:],
         {"model": str(args.model), "temperature": args.temperature, "starts": args.starts,
          "horizon": args.horizon, "controllers": scores}, args, peak=False)


if __name__ == "__main__":
    main()
