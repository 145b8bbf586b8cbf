"""PlaNet's planner: the cross-entropy method over action sequences in the learned model.

At every step, from the current belief: draw `candidates` action sequences of `horizon`
steps from a diagonal Gaussian (mean 0, std 1 at first), roll all of them forward in one
batched imagined rollout, sum the predicted rewards, refit the Gaussian to the `top` best
and repeat `iterations` times; act with the first action of the final mean. Nothing is
learned and nothing is carried between steps (no warm start, as in the paper). The
agent adds exploration noise while collecting (behavior.explore, 0.3 in the paper).
"""
from __future__ import annotations

import torch

from wmtool.behavior.base import Planner
from wmtool.errors import WmtoolError
from wmtool.spaces import Space


class CEMPlanner(Planner):
    def __init__(self, wm, act_space: Space, cfg):
        super().__init__()
        if act_space.discrete:
            raise WmtoolError("planet plans continuous actions only (CEM over action sequences)",
                              "use --algo dreamerv2 or dreamerv3 for discrete action spaces")
        p = cfg.planner
        if not 0 < p.top <= p.candidates or min(p.horizon, p.iterations) < 1:
            raise WmtoolError(f"planner: need 0 < top ({p.top}) <= candidates ({p.candidates}) "
                              f"and horizon, iterations >= 1", "fix the planner.* settings")
        self.cfg, self.act_dim = cfg, int(act_space.shape[0])
        self._wm = [wm]  # a list, not a submodule: the agent owns the model's parameters

    @torch.no_grad()
    def plan(self, feat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, F) features of the current beliefs -> (B, A) first actions of the CEM mean."""
        p, wm = self.cfg.planner, self._wm[0]
        batch, n, h, a = feat.shape[0], p.candidates, p.horizon, self.act_dim
        start = {k: v.repeat_interleave(n, 0) for k, v in wm.state_from_features(feat).items()}
        mean = torch.zeros(batch, 1, h, a, device=feat.device)
        std = torch.ones_like(mean)
        for _ in range(p.iterations):
            noise = torch.randn(batch, n, h, a, device=feat.device, generator=generator)
            actions = (mean + std * noise).clamp(-1.0, 1.0)
            returns = self.returns(wm, start, actions.flatten(0, 1)).view(batch, n)
            best = returns.topk(p.top, dim=1).indices[..., None, None].expand(-1, -1, h, a)
            elite = actions.gather(1, best)
            mean = elite.mean(1, keepdim=True)
            std = elite.std(1, unbiased=False, keepdim=True)
        return mean[:, 0, 0]

    @staticmethod
    def returns(wm, start: dict, actions: torch.Tensor) -> torch.Tensor:
        """Sum of predicted rewards of (N, H, A) action sequences from N start states."""
        plan = actions.transpose(0, 1)
        states, _ = wm.imagine(start, lambda feat, t: plan[t], plan.shape[0])
        feat = wm.features({k: v[1:] for k, v in states.items()})
        return wm.predict_reward(feat).sum(0)

    def act(self, feat: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        with self.timer.plan(feat.shape[0]):
            return self.plan(feat)

    def describe(self) -> str:
        p = self.cfg.planner
        return (f"{p.candidates} candidates x {p.iterations} iterations x horizon {p.horizon} "
                f"(top {p.top})")

    def learn(self, wm, start, start_cont, step, autocast) -> dict:
        return {}  # PlaNet learns only the model; the planner is computation
