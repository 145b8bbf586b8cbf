"""World Models' controller C: one linear layer on [z, h], trained without gradients.

Continuous actions: a = tanh(W [z, h] + b), in the [-1, 1] range every env here rescales to
its bounds (CarRacing: (32 + 256) x 3 + 3 = 867 parameters). Discrete actions: the argmax of
W [z, h] + b. Learning is evolutionary (behavior/cmaes.py), so no optimiser owns these weights.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wmtool import parallel
from wmtool.behavior.base import Behavior, RealScoring, ScoredInRealEnv
from wmtool.behavior.cmaes import CMAES
from wmtool.config import require_choice
from wmtool.errors import WmtoolError
from wmtool.spaces import Space


class LinearController(Behavior, ScoredInRealEnv):
    checkpoint_each_update = True  # a CMA-ES generation is costly: latest.pt after each

    def __init__(self, feat_dim: int, act_space: Space, cfg):
        super().__init__()
        self.cfg, self.act_space = cfg, act_space
        self.discrete = act_space.discrete
        act_dim = act_space.n if self.discrete else int(act_space.shape[0])
        # parameters (counted and saved like any), but no loss ever reaches them
        self.weight = nn.Parameter(torch.zeros(act_dim, feat_dim))
        self.bias = nn.Parameter(torch.zeros(act_dim))
        c = cfg.controller
        # dream rollouts start where real episodes do (the paper), or anywhere in the data
        require_choice("controller.starts", c.starts, ("episode", "any"))
        self.starts_at_episode_start = c.starts == "episode"
        if c.init_bias:  # where CMA-ES starts searching, e.g. a car with its brake released
            if len(c.init_bias) != act_dim:
                raise WmtoolError(f"controller.init_bias has {len(c.init_bias)} values, but "
                                  f"the controller has {act_dim} outputs",
                                  f"give {act_dim} values, or [] for zeros")
            self.bias.data = torch.tensor(c.init_bias, dtype=torch.float32)
        self.cmaes = CMAES(self.size, c.popsize, c.sigma, cfg.seed)
        self.population: torch.Tensor | None = None  # per-row candidate params while scoring

    @property
    def size(self) -> int:
        return self.weight.numel() + self.bias.numel()

    def flat(self) -> torch.Tensor:
        return torch.cat([self.weight.flatten(), self.bias])

    @torch.no_grad()
    def load_flat(self, params: torch.Tensor) -> None:
        n = self.weight.numel()
        self.weight.copy_(params[:n].reshape(self.weight.shape))
        self.bias.copy_(params[n:])

    def output(self, feat: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """W [z, h] + b; with `params` (N, size), row i of `feat` (N, F) uses candidate i's
        weights: a whole population acts in one batched call."""
        if params is None:
            return feat @ self.weight.T + self.bias
        n = self.weight.numel()
        weight = params[:, :n].reshape(-1, *self.weight.shape)
        return torch.bmm(weight, feat.unsqueeze(-1)).squeeze(-1) + params[:, n:]

    def to_action(self, out: torch.Tensor) -> torch.Tensor:
        """Env-ready actions: indices for discrete spaces, [-1, 1] vectors for continuous."""
        return out.argmax(-1) if self.discrete else torch.tanh(out)

    def act(self, feat: torch.Tensor, mode: str = "greedy") -> torch.Tensor:
        # C is deterministic: `sample` and `greedy` act alike (exploration is CMA-ES's job)
        return self.to_action(self.output(feat, self.population))

    @torch.no_grad()
    def dream_returns(self, wm, start: dict, params: torch.Tensor, horizon: int) -> torch.Tensor:
        """Expected return of row i of `start` acted on by candidate params[i], entirely in
        the model: rewards are summed while the predicted chance of continuing decays."""
        act = lambda feat, t: wm.action_input(self.to_action(self.output(feat, params)))
        state, total = start, torch.zeros(params.shape[0], device=params.device)
        alive = torch.ones_like(total)
        for _ in range(horizon):  # one step at a time: a whole rollout would not fit in memory
            states, _ = wm.imagine(state, act, 1)
            state = {k: v[-1] for k, v in states.items()}
            feat = wm.features(state)
            total += alive * wm.predict_reward(feat)
            alive = alive * wm.predict_cont(feat)
        return total

    def real_scoring(self, cfg) -> RealScoring | None:
        """controller.score_in: `dream` (default) or `real`, the paper's CarRacing protocol:
        each candidate plays controller.workers envs for up to controller.horizon steps."""
        c = cfg.controller
        require_choice("controller.score_in", c.score_in, ("dream", "real"))
        return RealScoring(c.workers, c.horizon) if c.score_in == "real" else None

    def imagined_per_update(self) -> int:
        c = self.cfg.controller
        return 0 if self.real_scorer is not None else (c.popsize + 1) * c.rollouts * c.horizon

    def learn(self, wm, start: dict, start_cont: torch.Tensor, step, autocast) -> dict:
        """One CMA-ES generation scored in the dream (or, with `real_scorer`, in the real
        env): in the dream every candidate plays the same `rollouts` start states (common
        random starts make candidates comparable)."""
        c = self.cfg.controller
        acting = self.flat().detach()
        candidates = self.cmaes.ask(acting.double().cpu().numpy())
        # the acting controller (the search mean) plays alongside the candidates: its score is
        # the learning curve of the policy that `eval` and `export` use
        params = torch.cat([torch.as_tensor(candidates, dtype=torch.float32,
                                            device=self.weight.device), acting[None]])
        rows = params.repeat_interleave(c.rollouts, 0)
        if self.real_scorer is not None:
            returns = torch.as_tensor(self.real_scorer(rows))
        else:
            pick = parallel.alike_randint(start["h"].shape[0], (c.rollouts,), start["h"].device)
            starts = {k: v[pick].repeat(len(params), *([1] * (v.dim() - 1)))
                      for k, v in start.items()}
            with autocast():
                returns = self.dream_returns(wm, starts, rows, c.horizon)
        scores = returns.float().reshape(len(params), c.rollouts).mean(1).cpu().numpy()
        fitness = scores[:-1]
        self.cmaes.tell(candidates, fitness.astype(np.float64))
        self.load_flat(self.cmaes.mean.to(self.weight))  # act with the search distribution's mean
        return {"train/cmaes/acting_score": float(scores[-1]),
                "train/cmaes/fitness_mean": float(fitness.mean()),
                "train/cmaes/fitness_max": float(fitness.max()),
                "train/cmaes/best": self.cmaes.best_fitness,
                "train/cmaes/sigma": float(self.cmaes.sigma),
                "train/cmaes/generation": int(self.cmaes.generation)}
