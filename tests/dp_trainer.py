"""A torchrun worker for tests/test_distributed.py: one online training run built the way
`wmtool train` builds it (config.compose, distributed.join_if_launched, TrainSession.create,
distributed.leaving, session.run), with observers attached from outside the engine. Every
rank writes what it actually did to OUT/rank<R>.npz:

- `replay`: its replay's rows at the end (one float64 row per replay row: every column,
  flattened), `episode_lengths` (rows per episode, oldest first; nothing is evicted at this
  capacity);
- `env_steps`: the transitions its envs stepped (a reset step is none), counted at
  `vec.step`;
- `windows`: every batch an update trained on, in the replay's row layout, with
  `update_clock` (the run's agent steps) and `update_replay` (the replay's rows) at each;
- `counters` (agent_steps, updates, episodes), `rank_episodes`, `weights` (all parameters,
  flat) and `result` (session.run()'s dict; rank 0's is the run's).

    torchrun --standalone --nproc-per-node N tests/dp_trainer.py OUT [--set KEY=VALUE ...]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from wmtool import config
from wmtool.engine import distributed
from wmtool.engine.session import TrainSession

ENV = "gym:CartPole-v1"
ALGO = "dreamerv3"
KEYS = ("agent_steps", "updates", "episodes")


def flat_rows(columns: dict, lead: int) -> np.ndarray:
    """The columns side by side as float64, sorted by name; `lead` leading axes are rows."""
    parts = [np.asarray(columns[k]).astype(np.float64) for k in sorted(columns)]
    return np.concatenate([p.reshape(*p.shape[:lead], -1) for p in parts], axis=-1)


def main(out: Path, sets: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = config.compose({"env": {"id": ENV}}, algo=ALGO, size="debug", sets=sets)
    world = distributed.join_if_launched(cfg.runtime.device)
    session = TrainSession.create(ALGO, cfg, out / "run", None, True, quiet=True)
    trainer, agent = session.trainer, session.agent
    facts = {"env_steps": 0, "windows": [], "update_clock": [], "update_replay": []}

    step = session.vec.step

    def counted_step(actions):
        obs = step(actions)
        facts["env_steps"] += int((~np.asarray(obs["is_first"], bool)).sum())
        return obs

    session.vec.step = counted_step
    train_step = agent.train_step

    def observed_train_step(rows, *args, **kwargs):
        facts["windows"].append(flat_rows(rows, 2))
        facts["update_clock"].append(trainer.counters["agent_steps"])
        facts["update_replay"].append(len(trainer.replay))
        return train_step(rows, *args, **kwargs)

    agent.train_step = observed_train_step
    try:
        with distributed.leaving():
            result = session.run()
    finally:
        session.close()
    replay = trainer.replay
    np.savez(out / f"rank{world.rank}.npz",
             replay=flat_rows(replay.state(), 1),
             episode_lengths=np.array(replay.episode_lengths),
             env_steps=facts["env_steps"],
             windows=np.stack(facts["windows"]),
             update_clock=np.array(facts["update_clock"]),
             update_replay=np.array(facts["update_replay"]),
             counters=np.array([trainer.counters[k] for k in KEYS]),
             rank_episodes=trainer.rank_episodes,
             weights=torch.cat([p.detach().reshape(-1) for p in agent.parameters()]).numpy(),
             result=json.dumps(result))


if __name__ == "__main__":
    args = sys.argv[2:]
    if len(args) % 2 or any(flag != "--set" for flag in args[::2]):
        sys.exit("usage: dp_trainer.py OUT [--set KEY=VALUE ...]")
    main(Path(sys.argv[1]), args[1::2])
