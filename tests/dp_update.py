"""A torchrun worker for tests/test_distributed.py: K updates of an agent on fixed global
batches, this rank taking its share of each, through the engine's own data-parallel path
(parallel.join, Agent._step's gradient average, parallel.training_step). Rank 0 writes the
gradients each optimiser step used, the metrics and the final weights to OUT.

    torchrun --nproc-per-node N tests/dp_update.py ALGO GLOBAL_BATCH UPDATES OUT
"""
import sys

import numpy as np
import torch

from wmtool import config, parallel
from wmtool.behavior.actor_critic import ReturnNorm
from wmtool.behavior.mppi import RunningScale
from wmtool.behavior.random import RandomPolicy
from wmtool.data.replay import Replay
from wmtool.engine.agent import Agent
from wmtool.engine.distributed import join_if_launched
from wmtool.engine.loops import run_episodes
from wmtool.envs.factory import make_env
from wmtool.envs.vector import VecEnv

ENVS = {"dreamerv3": "gym:CartPole-v1", "tdmpc2": "gym:Pendulum-v1"}


def main(algo: str, batch: int, updates: int, out: str) -> None:
    world = join_if_launched("cpu")
    torch.set_num_threads(1)
    # short Pendulum episodes: TD-MPC2's windows cross episode starts (its masked means)
    cfg = config.compose({"env": {"id": ENVS[algo], "time_limit": 12}}, algo=algo,
                         size="debug", sets=["train.length=8", "train.batch=4"])
    vec = VecEnv([lambda: make_env(cfg.env, None)])
    replay = Replay(vec.obs_space, vec.act_space, 10_000, seed=5)  # alike on every rank
    try:
        run_episodes(vec, RandomPolicy(vec.act_space, 0), steps=300, seed=0,
                     on_episode=replay.add)
    finally:
        vec.close()
    torch.manual_seed(0)
    agent = Agent(algo, vec.obs_space, vec.act_space, cfg)
    for module in agent.modules():  # each batch's percentile range alone sets the scales
        if isinstance(module, ReturnNorm):
            module.limit, module.decay = 1e-6, 0.0
        if isinstance(module, RunningScale):
            module.floor, module.rate = 1e-6, 1.0
    seen: dict[str, list[np.ndarray]] = {}
    for name, optim in agent.optims.items():
        def record(opt, args, kwargs, name=name):
            grads = [p.grad.reshape(-1) for p in agent.params[name] if p.grad is not None]
            seen.setdefault(name, []).append(torch.cat(grads).numpy().copy())
        optim.register_step_pre_hook(record)
    share = batch // world.size
    metrics = []
    for update in range(updates):
        rows = replay.sample(batch, 8 + agent.wm.history)  # the whole batch, alike everywhere
        mine = {k: v[world.rank * share:(world.rank + 1) * share] for k, v in rows.items()}
        with parallel.training_step(cfg.seed, update):
            metrics.append({k: float(v) for k, v in agent.train_step(mine).items()})
    if world.main:
        weights = torch.cat([p.detach().reshape(-1) for p in agent.parameters()]).numpy()
        np.savez(out, weights=weights, metrics=np.array([sorted(m.items()) for m in metrics],
                                                         dtype=object),
                 **{f"grad_{name}_{i}": g for name, gs in seen.items() for i, g in enumerate(gs)})
    parallel.leave()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
