"""sheeprl's DreamerV3 update on the reference setting, timed the way `wmtool bench` times ours,
so the two can be measured alternately on one machine (issue 45: the reference update at 2x
sheeprl).

    /work/sheeprl-venv/bin/python recipes/bench/sheeprl_reference.py [--threads 2]
        [--runs 5] [--updates 5]

Runs in a separate environment with sheeprl 0.8.4 and the same torch (it never imports
wmtool): `python -m venv V && V/bin/pip install torch==2.13.0 sheeprl==0.8.4`.
Setting: sheeprl's `dreamer_v3_XS` (dense 256, GRU 256, 32x32 latents) on vector CartPole
(observation key `state`, 4 floats; 2 discrete actions), batch 16 x 64, imagination
horizon 15, fp32 on the CPU. Each timed block calls sheeprl's own `train()` (world model,
actor and critic updates) `--updates` times on one fixed random batch, as sheeprl's loop
does once it has sampled (its loop's soft copy into the target critic, a few parameter copies
per update, is left out); prints one JSON object with the median updates/s of `--runs`
blocks after one warm-up update, the machine's cpu capability and thread count.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium
import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_module
from lightning import Fabric
from omegaconf import OmegaConf

OVERRIDES = ["exp=dreamer_v3", "algo=dreamer_v3_XS", "env=gym", "env.id=CartPole-v1",
             "algo.cnn_keys.encoder=[]", "algo.cnn_keys.decoder=[]",
             "algo.mlp_keys.encoder=[state]", "algo.mlp_keys.decoder=[state]",
             "algo.per_rank_batch_size=16", "algo.per_rank_sequence_length=64",
             "fabric.accelerator=cpu", "fabric.devices=1", "metric.log_level=0"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--updates", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sheeprl.algos.dreamer_v3.agent import build_agent
    from sheeprl.algos.dreamer_v3.dreamer_v3 import train
    from sheeprl.algos.dreamer_v3.utils import Moments
    from sheeprl.utils.utils import dotdict

    with initialize_config_module("sheeprl.configs", version_base="1.3"):
        cfg = dotdict(OmegaConf.to_container(compose("config", overrides=OVERRIDES),
                                             resolve=True))
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    obs_space = gymnasium.spaces.Dict(
        {"state": gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)})
    actions_dim = (2,)
    world_model, actor, critic, target_critic, _ = build_agent(fabric, actions_dim, False, cfg,
                                                               obs_space)
    optimizers = [hydra.utils.instantiate(c.optimizer, params=m.parameters(), _convert_="all")
                  for c, m in ((cfg.algo.world_model, world_model), (cfg.algo.actor, actor),
                               (cfg.algo.critic, critic))]
    optimizers = fabric.setup_optimizers(*optimizers)
    m = cfg.algo.actor.moments
    moments = Moments(m.decay, m.max, m.percentile.low, m.percentile.high)

    t, b = cfg.algo.per_rank_sequence_length, cfg.algo.per_rank_batch_size
    gen = torch.Generator().manual_seed(0)
    actions = torch.nn.functional.one_hot(torch.randint(0, 2, (t, b), generator=gen), 2)
    batch = {"state": torch.randn(t, b, 4, generator=gen), "actions": actions.float(),
             "rewards": torch.ones(t, b, 1), "terminated": torch.zeros(t, b, 1),
             "truncated": torch.zeros(t, b, 1), "is_first": torch.zeros(t, b, 1)}

    def update() -> None:
        train(fabric, world_model, actor, critic, target_critic, *optimizers,
              {k: v.clone() for k, v in batch.items()}, None, cfg, False, actions_dim, moments)

    update()  # warm-up
    rates = []
    for _ in range(args.runs):
        start = time.perf_counter()
        for _ in range(args.updates):
            update()
        rates.append(args.updates / (time.perf_counter() - start))
    print(json.dumps({"tool": "sheeprl", "updates_per_s": round(statistics.median(rates), 4),
                      "rates": [round(r, 4) for r in rates], "threads": args.threads,
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      "torch": torch.__version__, "setting": OVERRIDES}))


if __name__ == "__main__":
    main()
