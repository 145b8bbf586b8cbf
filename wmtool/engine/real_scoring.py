"""Scoring a population of controllers in the real environment (World Models' CarRacing
protocol, `wmtool imagine --set controller.score_in=real`): each env of a vector env plays
one candidate's rollout at a time and takes the next job when its episode ends, so K env
processes keep K cores busy while one batched forward pass acts for all of them."""
from __future__ import annotations

import numpy as np
import torch

from wmtool.engine.agent import AgentPolicy
from wmtool.engine.loops import run_episodes


class RealScorer:
    def __init__(self, agent, vec, seed: int = 0):
        self.agent, self.vec, self.seed = agent, vec, seed
        self.calls = 0

    def __call__(self, rows: torch.Tensor) -> np.ndarray:
        """Return of one real episode per row of `rows` (J candidates' parameters)."""
        controller, k = self.agent.behavior, self.vec.num_envs
        pending = iter(range(len(rows)))
        slot_job = np.full(k, -1)
        returns = np.full(len(rows), np.nan)
        idle = torch.zeros_like(rows[:1]).expand(k, -1)  # slots with no job left act with 0s
        greedy = AgentPolicy(self.agent, "greedy")

        class Population:
            @staticmethod
            def act(obs):
                for i in np.flatnonzero(obs["is_first"]):
                    slot_job[i] = next(pending, -1)
                jobs = torch.as_tensor(slot_job)
                controller.population = torch.where((jobs >= 0)[:, None],
                                                    rows[jobs.clamp(min=0)], idle)
                return greedy.act(obs)

        def on_episode(episode):
            job = slot_job[episode.slot]
            if job >= 0:
                returns[job] = episode.ret

        try:
            run_episodes(self.vec, Population, seed=self.seed + 7919 * self.calls,
                         on_episode=on_episode, until=lambda: not np.isnan(returns).any())
        finally:
            controller.population = None
        self.calls += 1
        return returns
