"""The Dreamer actor-critic trained on imagined trajectories: V3 by default, V1 and V2 by
configuration (recipes/algo/dreamerv1.yaml, dreamerv2.yaml).

From every posterior state of a batch, imagine `horizon` steps with the actor inside the
frozen world model; the critic learns λ-returns; the actor maximises them, with an entropy
bonus: REINFORCE for discrete actions and backpropagation through the dynamics for
continuous ones (`actor.grad: auto`), or either for both.

What the versions change:
- critic.head: V3 twohot over symlog bins, V1/V2 a unit-variance Gaussian (MSE);
- the slow critic: V3 an EMA (rate 0.02 per update) that the critic is regularised towards
  (critic.slowreg); V2 a copy refreshed every 100 updates (critic.slow_every) that the
  returns bootstrap from (critic.slow_target); V1 none (slowreg 0, returns from the critic);
- behavior.retnorm: V3 divides advantages by max(1, S), S the EMA of the 5th-95th
  percentile range of returns; V1/V2 do not;
- actor.dist for continuous actions: V3 bounded_normal, V1 tanh_normal, V2 trunc_normal.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn

from wmtool import parallel
from wmtool.behavior.base import Behavior
from wmtool.config import require_choice
from wmtool.nets.dists import BoundedNormal, OneHot, TanhNormal, TruncNormal, scalar_head
from wmtool.nets.layers import MLP
from wmtool.spaces import Space


def lambda_return(reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor,
                  gamma: float, lam: float) -> torch.Tensor:
    """R_t = r_t + γ c_t ((1-λ) v_{t+1} + λ R_{t+1}), R_H = v_H.

    reward[t], cont[t]: the transition from state t to t+1 (t < H); value: (H+1, ...).
    Returns (H, ...).
    """
    horizon = reward.shape[0]
    out = [value[-1]]
    for t in reversed(range(horizon)):
        out.append(reward[t] + gamma * cont[t] * ((1 - lam) * value[t + 1] + lam * out[-1]))
    return torch.stack(out[::-1][:-1])


class ReturnNorm(nn.Module):
    """S = EMA of Per(R, high) - Per(R, low); advantages are divided by max(limit, S).
    DreamerV3 (limit 1) starts S at the first batch's range."""

    def __init__(self, decay: float = 0.99, low: float = 5.0, high: float = 95.0,
                 limit: float = 1.0):
        super().__init__()
        self.decay, self.q = decay, torch.tensor([low / 100, high / 100])
        self.limit = limit
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def update(self, returns: torch.Tensor) -> None:
        values = parallel.gather_rows(returns.detach().float().flatten())  # every rank's
        lo, hi = torch.quantile(values, self.q.to(returns.device))
        # the first update takes the batch's value; decided on the device, never the host
        d = torch.where(self.count > 0, self.decay, 0.0)
        self.lo.copy_(d * self.lo + (1 - d) * lo)
        self.hi.copy_(d * self.hi + (1 - d) * hi)
        self.count += 1

    def scale(self) -> torch.Tensor:
        return torch.clamp(self.hi - self.lo, min=self.limit)


class ActorCritic(Behavior):
    hot_paths = ("actor", "critic")

    def __init__(self, feat_dim: int, act_space: Space, cfg):
        super().__init__()
        self.cfg, self.act_space = cfg, act_space
        m = cfg.model
        self.discrete = act_space.discrete
        a, c = cfg.actor, cfg.critic
        require_choice("actor.grad", a.grad, ("auto", "dynamics", "reinforce"))
        require_choice("actor.dist", a.dist, tuple(CONTINUOUS_DISTS))
        self.reinforce = a.grad == "reinforce" or (a.grad == "auto" and self.discrete)
        act_dim = act_space.n if self.discrete else int(act_space.shape[0])
        self.actor = MLP(feat_dim, m.units, m.layers, out=act_dim * (1 if self.discrete else 2))
        self.head = scalar_head(c.head, cfg.wm.bins)
        self.critic = MLP(feat_dim, m.units, m.layers, out=self.head.size, zero_out=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        b = cfg.behavior
        self.retnorm = ReturnNorm(b.retnorm_decay, b.retnorm_low, b.retnorm_high)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.host_updates: int | None = None  # `updates` on the host (update_slow_critic)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.host_updates = None  # read the loaded count again

    def dist(self, feat: torch.Tensor):
        out = self.actor(feat)
        a = self.cfg.actor
        if self.discrete:
            return OneHot(out, a.unimix)
        mean, std = out.chunk(2, -1)
        if a.dist == "bounded_normal":
            return BoundedNormal(mean, std, a.min_std, a.max_std)
        return CONTINUOUS_DISTS[a.dist](mean, std, a.min_std)

    def act(self, feat: torch.Tensor, mode: str = "sample") -> torch.Tensor:
        """Env-ready actions: indices for discrete spaces, [-1, 1] vectors for continuous."""
        dist = self.dist(feat)
        action = dist.mode() if mode == "greedy" else dist.sample()
        if self.discrete:
            return action.argmax(-1)
        return action.clamp(-1.0, 1.0)

    def value(self, feat: torch.Tensor, slow: bool = False) -> torch.Tensor:
        net = self.slow_critic if slow else self.critic
        return self.head.mean(net(feat))

    def imagine(self, wm, start: dict, horizon: int):
        """Roll the actor inside the world model from flattened start states.

        Returns features (H+1, N, F), model-space actions (H, N, A) and their distributions'
        log-probs/entropies. World-model parameters get no gradients; with continuous actions
        the gradient of returns still flows through the dynamics to the actor.
        """
        logps, ents = [], []

        def act(feat: torch.Tensor, t: int) -> torch.Tensor:
            # the actor sees sg(state): returns reach it only through the actions it takes
            dist = self.dist(feat.detach())
            action = dist.sample()
            if self.reinforce:
                action = action.detach()  # no gradient through the sample
            elif not self.discrete:  # keep |a| <= 1 like the env, scaling rather than clipping
                action = action / torch.clamp(action.abs().detach(), min=1.0)
            logps.append(dist.log_prob(action.detach()))
            ents.append(dist.entropy())
            return action

        states, actions = wm.imagine(start, act, horizon)
        return wm.features(states), actions, torch.stack(logps), torch.stack(ents)

    def loss(self, wm, start: dict, start_cont: torch.Tensor):
        """Actor and critic losses from imagination starting at `start` (N states)."""
        b = self.cfg.behavior
        with frozen(wm):
            feat, _, logp, ent = self.imagine(wm, start, b.horizon)
            reward = wm.predict_reward(feat[1:])
            cont = torch.cat([start_cont[None], wm.predict_cont(feat[1:])], 0)
        c = self.cfg.critic
        if self.reinforce and not c.slow_target:
            # REINFORCE needs no gradient through the values: one critic pass serves both
            # the returns (detached) and the critic's own loss (its first H rows).
            logits = self.critic(feat.detach())
            value = self.head.mean(logits).detach()
            logits = logits[:-1]
        else:
            with torch.no_grad() if self.reinforce else frozen(self.critic):
                # dynamics: the returns' bootstrap trains the actor (through feat), not the critic
                value = self.value(feat, slow=c.slow_target)
            logits = self.critic(feat[:-1].detach())
        ret = lambda_return(reward, cont[1:], value, b.discount, b.lam)
        weight = torch.cumprod(cont, 0).detach()[:-1]  # chance the trajectory is still alive
        if b.retnorm:
            self.retnorm.update(ret)
            scale = self.retnorm.scale()
        else:
            scale = torch.ones((), device=ret.device)
        adv = (ret - value[:-1].detach()) / scale
        if self.reinforce:
            policy_loss = -logp * adv.detach()
        else:
            policy_loss = -adv
        actor_loss = (weight * (policy_loss - self.cfg.actor.entropy * ent)).mean()
        critic_loss = self.head.loss(logits, ret.detach())
        if c.slowreg:
            slow_value = self.value(feat[:-1].detach(), slow=True).detach()
            critic_loss = critic_loss + c.slowreg * self.head.loss(logits, slow_value)
        critic_loss = (weight * critic_loss).mean()
        metrics = {"actor/loss": actor_loss.detach(), "actor/entropy": ent.mean().detach(),
                   "critic/loss": critic_loss.detach(), "critic/value": value.mean().detach(),
                   "return/mean": ret.mean().detach(), "return/scale": scale.detach(),
                   "imag/reward": reward.mean().detach()}
        return actor_loss, critic_loss, metrics

    def imagined_per_update(self) -> int:
        t = self.cfg.train
        return t.batch * t.length * self.cfg.behavior.horizon

    def learn(self, wm, start: dict, start_cont: torch.Tensor, step, autocast) -> dict:
        """One actor-critic update (`step(groups, loss)` is the agent's optimiser step)."""
        with autocast():
            actor_loss, critic_loss, metrics = self.loss(wm, start, start_cont)
        out = step(["actor", "critic"], actor_loss + critic_loss)
        self.update_slow_critic()
        out.update({f"train/{k}": v for k, v in metrics.items()})
        return out

    def update_slow_critic(self) -> None:
        """Every `slow_every` updates, move the slow critic `slow_rate` of the way to the
        critic (V3: 0.02 every update; V2: a full copy every 100). The count is kept on the
        host too, so deciding never waits for the device. (`no_grad` inside rather than as a
        decorator: mutmut, `make mutate`, leaves decorated functions unmutated.)"""
        c = self.cfg.critic
        if self.host_updates is None:  # first update, or first after loading a checkpoint
            self.host_updates = int(self.updates)
        self.host_updates += 1
        self.updates.fill_(self.host_updates)
        if self.host_updates % c.slow_every == 0:
            with torch.no_grad():
                for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
                    slow.lerp_(fast, c.slow_rate)


CONTINUOUS_DISTS = {"bounded_normal": BoundedNormal, "tanh_normal": TanhNormal,
                    "trunc_normal": TruncNormal}


@contextmanager
def frozen(module: nn.Module):
    """No parameter gradients for `module` (activations still carry gradients through it)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
