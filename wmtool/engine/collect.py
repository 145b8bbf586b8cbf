"""Collection: a policy plays an env and every finished episode is appended to an HDF5
store (`wmtool collect`). The CLI shows progress through `on_step`."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

from wmtool.errors import WmtoolError
from wmtool.registry import load_target

POLICIES = {"random": "wmtool.behavior.random:RandomPolicy",
            "brownian": "wmtool.behavior.brownian:BrownianPolicy"}
RUN_PREFIX = "run:"


def make_policy(name: str, vec, seed: int, noise: float = 0.0):
    """The acting policy for `vec`'s envs: a named one, or `run:DIR`, a trained run's agent
    (greedy), with optional exploration noise."""
    from wmtool.behavior.noisy import NoisyPolicy

    if name.startswith(RUN_PREFIX):
        policy = _run_policy(Path(name[len(RUN_PREFIX):]), vec)
    elif name in POLICIES:
        policy = load_target(POLICIES[name])(vec.act_space, seed)
    else:
        raise WmtoolError(f"unknown --policy '{name}'",
                          f"valid: {', '.join(POLICIES)} or {RUN_PREFIX}RUN_DIR")
    # a separate stream from the policy's own, so adding noise leaves its choices unchanged
    return NoisyPolicy(policy, vec.act_space, noise, seed + 7919) if noise else policy


def _run_policy(run: Path, vec):
    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.loading import load_run

    loaded = load_run(run, optimizers=False)
    loaded.check_spaces(vec.obs_space, vec.act_space, vec.env_id)
    return AgentPolicy(loaded.agent, "greedy")


def first_seed(out: Path, seed: int) -> int:
    """`seed`, or past the seeds `out`'s episodes already used: collecting again into the
    same file continues the seed sequence instead of appending copies."""
    from wmtool.data.store import EpisodeReader, next_seed

    if not out.exists() or out.stat().st_size == 0:
        return seed
    with EpisodeReader(out) as reader:
        return max(seed, next_seed(reader.index))


class Collection:
    """The envs, the policy and the open store of one `wmtool collect`: made on entry (so a
    bad env or policy fails before any progress is shown), closed on exit."""

    def __init__(self, cfg, out: Path, policy: str, noise: float,
                 say: Callable[[str], None] = lambda line: None):
        self.cfg, self.out, self.policy, self.noise, self.say = cfg, out, policy, noise, say
        self.label = policy + (f"+noise{noise:g}" if noise else "")

    def __enter__(self):
        from wmtool.data.background import BackgroundWriter
        from wmtool.data.store import describe_spaces
        from wmtool.data.writer import EpisodeWriter
        from wmtool.envs.factory import make_env
        from wmtool.envs.vector import VecEnv

        cfg, out = self.cfg, self.out
        self.seed = first_seed(out, cfg.seed)
        self.vec = VecEnv([functools.partial(make_env, cfg.env, None)
                           for _ in range(cfg.collect.workers)])
        try:
            self.act = make_policy(self.policy, self.vec, self.seed, self.noise)
            store = EpisodeWriter(out, self.vec.env_id, self.vec.obs_space, self.vec.act_space,
                                  policy=self.label, image_chunk=cfg.collect.image_chunk)
            self.writer = BackgroundWriter(store)
        except BaseException:
            self.vec.close()
            raise
        spaces = describe_spaces(self.vec.obs_space, self.vec.act_space)
        self.say(f"collect {self.vec.env_id} -> {out} ({spaces}; {cfg.collect.workers} "
                 f"worker(s); {self.writer.num_episodes} episodes already in file; seeds from "
                 f"{self.seed})")
        if store.recovered_rows:
            self.say(f"recovered {out} after an unclean stop: dropped {store.recovered_rows} "
                     "rows of an unfinished episode")
        return self

    def run(self, episodes: int | None, steps: int | None, on_step: Callable | None = None):
        """Play `episodes` episodes or `steps` agent steps; the JSON result of the command."""
        from wmtool.engine.loops import run_episodes

        stats = run_episodes(self.vec, self.act, episodes=episodes, steps=steps, seed=self.seed,
                             on_episode=self.writer.add, on_step=on_step)
        self.writer.flush()
        return {"out": str(self.out), "env": self.vec.env_id, "policy": self.label,
                "seed": self.seed, "workers": self.cfg.collect.workers,
                "file_episodes": self.writer.num_episodes, **stats.summary()}

    def __exit__(self, *exc):
        try:
            self.writer.close()
        finally:
            self.vec.close()
