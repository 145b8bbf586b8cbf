"""The contract between the engine and a behaviour (what acts on a world model's features).

A behaviour subclasses `Behavior` and implements `act(feat, mode)` (env-ready actions:
indices for discrete spaces, [-1, 1] vectors for continuous ones) and `learn(wm, start,
start_cont, step, autocast)` (one update from posterior states; `step(groups, loss)` is the
agent's optimiser step). The defaults cover the rest:

- `modes`: the acting modes it offers (`--mode`); `act_step` carries state between steps
  (a planner's warm start), by default none; `acting_metrics` reports what acting cost;
- `bind(wm)`: called when a fresh behaviour joins a model (`imagine --from-scratch`);
- `starts_at_episode_start`: learn from the first rows of episodes only (World Models'
  dream rollouts); `checkpoint_each_update`: an update is costly enough to save after each;
- `imagined_per_update`: imagined state-steps per update, for the throughput figures;
- `hot_paths`: methods or modules called many times per update or action, compiled under
  `train.compile` (engine/compiling.py).

`Planner` adds what CEM and MPPI share: a timer per plan, reported as
`plan/ms_per_action`, and a one-line `describe()` of the search. `ScoredInRealEnv` marks a
behaviour whose candidates can be scored by playing the real env
(`wmtool imagine --set controller.score_in=real`); `real_scoring(cfg)` says whether and
how a behaviour asks for that, so the engine reads no behaviour's settings itself.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from wmtool.behavior.plan_timer import PlanTimer
from wmtool.config import require_choice
from wmtool.errors import WmtoolError, unfilled


class RealScoring(NamedTuple):
    """How `wmtool imagine` has a behaviour's candidates scored in the real env."""
    workers: int   # env processes playing candidates at once
    horizon: int   # steps a candidate's rollout lasts at most, as in the dream


class Behavior(nn.Module):
    modes: tuple[str, ...] = ("greedy", "sample")
    starts_at_episode_start = False
    checkpoint_each_update = False
    hot_paths: tuple[str, ...] = ()

    def act(self, feat: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        raise unfilled(__name__, "act(feat, mode) -> one action per row of features, greedy or "
                                 "sampled")

    def act_step(self, feat: torch.Tensor, carry, is_first: torch.Tensor, mode: str):
        """One action per env and the carry for the next step (None: nothing carried)."""
        return self.act(feat, mode), carry

    def learn(self, wm, start: dict, start_cont: torch.Tensor, step, autocast) -> dict:
        raise unfilled(__name__, "learn(wm, start, start_cont, step, autocast) -> metrics of one "
                                 "behaviour update from `start` states")

    def bind(self, wm) -> None:
        pass

    def acting_metrics(self) -> dict[str, float]:
        return {}

    def imagined_per_update(self) -> int:
        return 0

    def real_scoring(self, cfg) -> RealScoring | None:
        """Whether `wmtool imagine` scores this behaviour's candidates in the real env, and
        how; None: in the dream. A behaviour that learns by gradients through the model has
        no candidates to score, so asking for it (controller.score_in=real) is an error."""
        require_choice("controller.score_in", cfg.controller.score_in, ("dream", "real"))
        if cfg.controller.score_in == "real":
            raise WmtoolError(f"controller.score_in=real: {type(self).__name__} learns by "
                              "gradients through the model, so it cannot be scored in the "
                              "real env", "score in the dream (controller.score_in=dream)")
        return None


class Planner(Behavior):
    """Searches at every step; time per action is measured around each plan."""

    def __init__(self):
        super().__init__()
        self.timer = PlanTimer()

    def describe(self) -> str:
        raise unfilled(__name__, 'describe() -> the planner and its settings in a few words')

    def acting_metrics(self) -> dict[str, float]:
        return self.timer.metrics()


class ScoredInRealEnv:
    """Candidates are scored, not differentiated, so they can play the real env instead of
    the dream: `real_scorer` (rows -> returns) is set when `controller.score_in` is real."""

    real_scorer = None
