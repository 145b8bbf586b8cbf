"""The environment loop: policy -> envs -> finished episodes (docs/architecture.md).

Every command that steps a real environment (collect now; train, eval later) runs this loop
so episode bookkeeping, truncation handling and storage live in one place.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from wmtool.data.episode import Episode, EpisodeBuilder


@dataclass
class LoopStats:
    steps: int = 0
    episodes: int = 0
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    seconds: float = 0.0
    env_seconds: float = 0.0  # inside vec.reset/vec.step; the rest is policy, bookkeeping, I/O

    @property
    def fps(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        r = np.asarray(self.returns, np.float64)
        return {"episodes": self.episodes, "steps": self.steps, "seconds": round(self.seconds, 3),
                "env_steps_per_s": round(self.fps, 1),
                "env_time_fraction": round(self.env_seconds / self.seconds, 4)
                if self.seconds > 0 else None,
                "return_mean": float(r.mean()) if len(r) else None,
                "return_std": float(r.std()) if len(r) else None,
                "return_min": float(r.min()) if len(r) else None,
                "return_max": float(r.max()) if len(r) else None}


def run_episodes(vec, policy, *, episodes: int | None = None, steps: int | None = None,
                 seed: int | None = None, on_episode: Callable[[Episode], None] | None = None,
                 on_step: Callable[[LoopStats], None] | None = None,
                 until: Callable[[], bool] | None = None, cut_at_stop: bool = False) -> LoopStats:
    """Step `vec` with `policy` until `episodes` finish, `steps` env steps are taken, or
    `until()` says so (then unfinished episodes are dropped, unless `cut_at_stop`).

    With `steps` (or `until` and `cut_at_stop`), episodes still running at the end are kept,
    marked truncated (cut short, not terminal). With `episodes`, exactly that many finished
    episodes are reported.
    """
    if sum(x is not None for x in (episodes, steps, until)) != 1:
        raise ValueError("give exactly one of episodes, steps or until")
    keys = list(vec.obs_space)
    stats = LoopStats()
    start = time.perf_counter()
    obs = vec.reset(seed)
    stats.env_seconds = time.perf_counter() - start
    builders: list[EpisodeBuilder | None] = [
        EpisodeBuilder(keys, -1 if seed is None else seed + i) for i in range(vec.num_envs)]
    for i, b in enumerate(builders):
        b.start({k: obs[k][i] for k in keys})

    def finish(i: int, cut: bool = False) -> None:
        episode = builders[i].finish(cut=cut)
        episode.slot = i
        builders[i] = None  # the next step's is_first row starts this env's next episode
        stats.episodes += 1
        stats.returns.append(episode.ret)
        stats.lengths.append(episode.length)
        if on_episode:
            on_episode(episode)

    while True:
        actions = policy.act(obs)
        tick = time.perf_counter()
        obs = vec.step(actions)
        stats.env_seconds += time.perf_counter() - tick
        first, last, terminal = obs["is_first"], obs["is_last"], obs["is_terminal"]
        reward = obs["reward"]
        for i in range(vec.num_envs):
            row = {k: obs[k][i] for k in keys}
            if first[i]:  # this env was reset instead of stepped; its action was ignored
                builders[i] = EpisodeBuilder(keys, -1)
                builders[i].start(row)
                continue
            builders[i].add(actions[i], row, reward[i], last[i], terminal[i])
            stats.steps += 1
            if last[i]:
                finish(i)
                if episodes is not None and stats.episodes >= episodes:
                    break
        stats.seconds = time.perf_counter() - start
        if on_step:
            on_step(stats)
        if episodes is not None and stats.episodes >= episodes:
            break
        if (until is not None and until()) or (steps is not None and stats.steps >= steps):
            if steps is not None or cut_at_stop:
                for i, b in enumerate(builders):
                    if b is not None and len(b):
                        finish(i, cut=True)
            break
    stats.seconds = time.perf_counter() - start
    return stats
