"""TD-MPC2's behaviour: a policy prior, and MPPI planning in the latent model around it.

Acting (`greedy`/`sample`): from the current latent, roll `prior_trajs` action sequences of
`horizon` steps with the prior, and sample the rest from a Gaussian whose mean starts from
the previous step's plan shifted by one (warm start; zero at an episode start) and whose std
starts at `max_std`. Score every sequence by discounted predicted rewards plus the Q value at
the end (the prior's sequences are rolled out once, as they do not change between
iterations; their end values are drawn afresh each iteration like every candidate's). Refit
mean/std to the `elites` best, weighted by exp(temperature x value), `iterations` times.
Act with the first action of one elite drawn by those weights (`greedy` with mppi.greedy:
elite, as the paper evaluates), or with the elites' weighted mean (mppi.greedy: mean: no
draw between elites, so smoother actions); `sample` (collecting) draws an elite and adds
noise of the final std. `prior` acts with the prior's mean alone: no planning, for fast
evaluation.

Learning: the prior maximises Q (mean of two random heads, divided by the running scale of
Q) with an entropy bonus, on the latents the model's rollout visited (weights rho^t). As in
the official code, planning sees the Qs without dropout (eval mode); the prior's Qs keep it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from wmtool import parallel
from wmtool.behavior.actor_critic import frozen
from wmtool.behavior.base import Planner
from wmtool.errors import WmtoolError
from wmtool.models.base import PlansWithValues
from wmtool.nets.normed import evaluating, normed_mlp
from wmtool.spaces import Space


def _interleave(prior: torch.Tensor, sampled: torch.Tensor, batch: int) -> torch.Tensor:
    """(batch * p, ...) and (batch * (n - p), ...) rows -> (batch * n, ...): each plan's
    prior rows, then its sampled rows, as the candidates' action tensor orders them."""
    return torch.cat([prior.view(batch, -1, *prior.shape[1:]),
                      sampled.view(batch, -1, *sampled.shape[1:])], 1).flatten(0, 1)


class PolicyPrior(nn.Module):
    """tanh-squashed Gaussian over actions given z; log std squashed into [min, max]."""

    def __init__(self, latent: int, hidden: int, act_dim: int, log_std_min: float,
                 log_std_max: float):
        super().__init__()
        self.net = normed_mlp(latent, [hidden] * 2, 2 * act_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, z: torch.Tensor):
        """-> (squashed mean, squashed sample, log-probability of the sample)."""
        mean, raw_std = self.net(z).chunk(2, -1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(raw_std) + 1)
        eps = parallel.randn_like(mean)
        pre = mean + eps * log_std.exp()
        log_prob = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        action = torch.tanh(pre)
        log_prob = log_prob - torch.log(torch.relu(1 - action ** 2) + 1e-6).sum(-1)
        return torch.tanh(mean), action, log_prob

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return self(z)[1]

    def mode(self, z: torch.Tensor) -> torch.Tensor:
        return self(z)[0]


class RunningScale(nn.Module):
    """TD-MPC2's Q scale: an EMA (rate tau) of the 5-95% percentile range of Q at the
    rollout's first latents, each batch's range floored at 1 before it enters; starts at 1.
    The floor keeps the scale at 1 while Q carries no signal yet, so the entropy bonus keeps
    its weight relative to Q (a floor of 1e-4 let it fall to ~0.03 before any reward)."""

    def __init__(self, rate: float, low: float = 5.0, high: float = 95.0, floor: float = 1.0):
        super().__init__()
        self.rate, self.floor = rate, floor
        self.register_buffer("q", torch.tensor([low / 100, high / 100]))
        self.register_buffer("value", torch.ones(()))

    def update(self, q: torch.Tensor) -> None:
        values = parallel.gather_rows(q.detach().float().flatten())  # every rank's batch
        lo, hi = torch.quantile(values, self.q.to(q.device))
        self.value.lerp_(torch.clamp(hi - lo, min=self.floor), self.rate)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints from before kept the EMA's ends (lo, hi, count): their range."""
        if prefix + "hi" in state_dict:
            hi, lo = state_dict.pop(prefix + "hi"), state_dict.pop(prefix + "lo")
            state_dict.pop(prefix + "count", None)
            state_dict[prefix + "value"] = torch.clamp(hi - lo, min=self.floor)
            state_dict.setdefault(prefix + "q", self.q)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class MPPIPlanner(Planner):
    modes = ("greedy", "sample", "prior")

    def __init__(self, wm, act_space: Space, cfg):
        super().__init__()
        c, m = cfg.tdmpc2, cfg.mppi
        if not 0 < m.elites <= m.samples or not 0 <= m.prior_trajs < m.samples \
                or m.iterations < 1 or not 0 < m.min_std <= m.max_std \
                or m.greedy not in ("elite", "mean"):
            raise WmtoolError(f"mppi: need 0 < elites ({m.elites}) <= samples ({m.samples}), "
                              f"0 <= prior_trajs ({m.prior_trajs}) < samples, iterations >= 1 "
                              f"and 0 < min_std <= max_std, and greedy elite or mean "
                              f"({m.greedy!r})", "fix the mppi.* settings")
        self.cfg, self.act_dim = cfg, int(act_space.shape[0])
        self.prior = PolicyPrior(c.latent, c.mlp_dim, self.act_dim, c.log_std_min, c.log_std_max)
        self.scale = RunningScale(rate=c.tau)
        self.bind(wm)

    def bind(self, wm) -> None:
        """Use `wm` for planning, and give it this prior for its value targets."""
        if not isinstance(wm, PlansWithValues):
            raise WmtoolError(f"MPPI plans with a PlansWithValues model, not {type(wm).__name__}",
                              "pair --algo's planner with a model that has Q-values "
                              "(models/base.py: PlansWithValues)")
        self._wm = [wm]  # a list, not a submodule: the agent owns the model's parameters
        wm.bind_prior(self.prior)

    # -- acting ----------------------------------------------------------------------------
    def plan(self, z: torch.Tensor, warm: torch.Tensor | None = None):
        """(B, D) latents [+ (B, H, A) previous plan means] -> first actions (B, A), the new
        plan means (B, H, A) and the final std of the first action (B, A)."""
        with torch.no_grad(), evaluating(self._wm[0]):
            return self._plan(z, warm)

    def _plan(self, z: torch.Tensor, warm: torch.Tensor | None):
        m, wm = self.cfg.mppi, self._wm[0]
        batch, n, p, h, a = z.shape[0], m.samples, m.prior_trajs, self.cfg.tdmpc2.horizon, \
            self.act_dim
        prior_actions, prior_rollout = None, None
        if p:
            z_prior = zp = z.repeat_interleave(p, 0)
            steps = []
            for t in range(h):
                steps.append(self.prior.sample(zp))
                if t < h - 1:
                    zp = wm.next(zp, steps[-1])
            prior_actions = torch.stack(steps, 1)
            # the prior's sequences stay the same over the iterations, and so do their
            # rewards and last latents: roll them out once (only the value at the end is
            # drawn afresh each iteration, as for every sequence)
            prior_rollout = wm.rollout_return(z_prior, prior_actions)
            prior_actions = prior_actions.view(batch, p, h, a)
        mean = torch.zeros(batch, h, a, device=z.device)
        if warm is not None:
            mean[:, :-1] = warm[:, 1:]
        std = torch.full_like(mean, m.max_std)
        start = z.repeat_interleave(n - p, 0)
        for _ in range(m.iterations):
            noise = torch.randn(batch, n - p, h, a, device=z.device)
            sampled = (mean[:, None] + std[:, None] * noise).clamp(-1.0, 1.0)
            rollout = wm.rollout_return(start, sampled.flatten(0, 1))
            if p:
                actions = torch.cat([prior_actions, sampled], 1)
                rollout = [_interleave(ours, theirs, batch)
                           for ours, theirs in zip(prior_rollout, rollout)]
            else:
                actions = sampled
            rewards, weight, last = rollout
            value = (rewards + weight * wm.terminal_value(last)).view(batch, n).nan_to_num(0)
            elite_value, index = value.topk(m.elites, dim=1)
            elite = actions.gather(1, index[..., None, None].expand(-1, -1, h, a))
            score = torch.softmax(m.temperature * elite_value, dim=1)[..., None, None]
            mean = (score * elite).sum(1)
            std = ((score * (elite - mean[:, None]) ** 2).sum(1)).sqrt().clamp(m.min_std,
                                                                                m.max_std)
        pick = torch.multinomial(score[..., 0, 0], 1)[:, 0]
        first = elite[torch.arange(batch, device=z.device), pick, 0]
        return first, mean, std[:, 0]

    def act_step(self, feat: torch.Tensor, carry, is_first: torch.Tensor, mode: str):
        """One action per env; carry = the previous plan means (None at the start)."""
        if mode == "prior":
            return self.prior.mode(feat), carry
        if carry is not None:  # an episode start plans from scratch
            carry = torch.where(is_first.bool().view(-1, 1, 1), torch.zeros_like(carry), carry)
        with self.timer.plan(feat.shape[0]):
            action, carry, std = self.plan(feat, carry)
            if mode == "greedy" and self.cfg.mppi.greedy == "mean":
                action = carry[:, 0]
            elif mode == "sample":
                action = action + std * torch.randn_like(action)
        return action.clamp(-1.0, 1.0), carry

    def act(self, feat: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        """Stateless acting (no warm start), e.g. for callers without a carry."""
        first = torch.ones(feat.shape[0], dtype=torch.bool, device=feat.device)
        return self.act_step(feat, None, first, mode)[0]

    def describe(self) -> str:
        m = self.cfg.mppi
        return (f"{m.samples} samples ({m.prior_trajs} from the prior) x {m.iterations} "
                f"iterations x horizon {self.cfg.tdmpc2.horizon} ({m.elites} elites)")

    # -- learning --------------------------------------------------------------------------
    def loss(self, wm, start: dict) -> tuple[torch.Tensor, dict]:
        z, weight = start["z"], start["weight"]
        with frozen(wm):  # the Qs judge; only the prior learns (through its actions)
            _, action, log_prob = self.prior(z)
            q = wm.q_value(z, action, "avg")
        self.scale.update(q.reshape(q.shape[0], -1)[:, 0])  # the rollout's first latents
        loss = (weight * (self.cfg.tdmpc2.entropy * log_prob - q / self.scale.value)).mean()
        metrics = {"prior/loss": loss.detach(), "prior/entropy": -log_prob.mean().detach(),
                   "prior/q": q.mean().detach(), "prior/q_scale": self.scale.value.clone()}
        return loss, metrics

    def learn(self, wm, start: dict, start_cont: torch.Tensor, step, autocast) -> dict:
        with autocast():
            loss, metrics = self.loss(wm, start)
        out = step(["prior"], loss)
        out.update({f"train/{k}": v for k, v in metrics.items()})
        return out
