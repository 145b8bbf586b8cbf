"""Recurrent state-space model shared by PlaNet, Dreamer V1/V2/V3 (one file, configured).

State: `deter` (GRU), `stoch` (categorical: vars x classes one-hots with straight-through
gradients; Gaussian: a vector) and the statistics of its distribution (`logits`, or
`mean`/`std`). `classes > 0` selects categorical latents (V2/V3), `classes == 0` Gaussian
ones (PlaNet/V1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wmtool import parallel
from wmtool.nets.dists import OneHot, categorical_kl, gaussian_kl
from wmtool.nets.layers import Dense, NormGRUCell, init_fan_avg

State = dict[str, torch.Tensor]


class RSSM(nn.Module):
    def __init__(self, embed_dim: int, act_dim: int, deter: int, hidden: int, stoch: int,
                 classes: int, unimix: float = 0.01, min_std: float = 0.1):
        super().__init__()
        self.deter, self.stoch, self.classes = deter, stoch, classes
        self.unimix, self.min_std = unimix, min_std
        self.stoch_dim = stoch * classes if classes else stoch
        stats = stoch * classes if classes else 2 * stoch
        self.img_in = Dense(self.stoch_dim + act_dim, hidden)
        self.gru = NormGRUCell(hidden, deter)
        self.img_out = nn.Sequential(Dense(deter, hidden), nn.Linear(hidden, stats))
        self.obs_out = nn.Sequential(Dense(deter + embed_dim, hidden), nn.Linear(hidden, stats))
        init_fan_avg(self)
        self.init_deter = nn.Parameter(torch.zeros(deter))  # learned initial state

    @property
    def feat_dim(self) -> int:
        return self.deter + self.stoch_dim

    # -- distributions ------------------------------------------------------------------
    def _state(self, deter: torch.Tensor, stats: torch.Tensor, sample: bool | None) -> State:
        """A state from its deterministic part and its distribution's statistics. `sample`:
        True draws the stochastic part, False takes its mode, None leaves it out (a prior
        that only the KL reads, as in observe and acting: the posterior draws instead)."""
        if self.classes:
            logits = stats.reshape(*stats.shape[:-1], self.stoch, self.classes)
            dist = OneHot(logits, self.unimix)
            state = {"deter": deter, "logits": dist.logits}
            if sample is not None:
                state["stoch"] = dist.sample() if sample else dist.mode()
            return state
        mean, std = stats.chunk(2, -1)
        std = 2 * torch.sigmoid(std / 2) + self.min_std
        state = {"deter": deter, "mean": mean, "std": std}
        if sample is not None:
            state["stoch"] = mean + std * parallel.randn_like(mean) if sample else mean
        return state

    def features(self, state: State) -> torch.Tensor:
        if "feat" in state:  # imagined states carry their features (DreamerModel.imagine)
            return state["feat"]
        stoch = state["stoch"]
        if self.classes:
            stoch = stoch.flatten(-2)
        return torch.cat([state["deter"], stoch], -1)

    def state_from_features(self, feat: torch.Tensor) -> State:
        """The parts of a state that img_step needs, back from features (planning from them):
        views into `feat`, which the state keeps as well."""
        deter, stoch = feat.split([self.deter, self.stoch_dim], -1)
        if self.classes:
            stoch = stoch.unflatten(-1, (self.stoch, self.classes))
        return {"deter": deter, "stoch": stoch, "feat": feat}

    def initial(self, batch: int) -> State:
        # a real (batch, deter) tensor, not an expanded view: the compiled steps see the
        # same strides whether or not a batch restarts an episode at its first row
        deter = torch.tanh(self.init_deter).repeat(batch, 1)
        return self._state(deter, self.img_out(deter), sample=False)

    # -- steps --------------------------------------------------------------------------
    def _advance(self, state: State, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next deterministic state and the prior's statistics there."""
        stoch = state["stoch"].flatten(-2) if self.classes else state["stoch"]
        x = self.img_in(torch.cat([stoch, action], -1))
        deter = self.gru(x, state["deter"])
        return deter, self.img_out(deter)

    def img_step(self, state: State, action: torch.Tensor, sample: bool = True) -> State:
        """Prior: predict the next state from the current one and an action."""
        return self._state(*self._advance(state, action), sample)

    def prior(self, state: State, action: torch.Tensor) -> State:
        """The prior's distribution at the next step, with no stochastic part drawn: for
        callers that go on to the posterior (its draw is the one kept)."""
        return self._state(*self._advance(state, action), None)

    def obs_step(self, state: State, prev_action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor, sample: bool = True, init: State | None = None,
                 restarts: bool = True) -> tuple[State, State]:
        """Posterior and prior for one step; rows with is_first start from the initial state
        (`init`, when the caller already computed it for this batch). `restarts=False`: the
        caller knows that no row does, and the masking is skipped."""
        if restarts:
            state, prev_action = self.restart(state, prev_action, is_first, init)
        prior = self.prior(state, prev_action)
        return self.posterior(prior, embed, sample), prior

    def restart(self, state: State, prev_action: torch.Tensor, is_first: torch.Tensor,
                init: State | None = None) -> tuple[State, torch.Tensor]:
        """Rows with is_first get the initial state and a zero previous action. Only the
        parts the next step reads come back (a state's statistics, and the features it may
        carry, would no longer belong to it)."""
        init = init if init is not None else self.initial(is_first.shape[0])
        state = {k: torch.where(_expand(is_first, state[k]), init[k], state[k])
                 for k in ("deter", "stoch")}  # all that the next step reads
        return state, prev_action * (~is_first).to(prev_action.dtype)[:, None]

    def posterior(self, prior: State, embed: torch.Tensor, sample: bool = True) -> State:
        stats = self.obs_out(torch.cat([prior["deter"], embed], -1))
        return self._state(prior["deter"], stats, sample)

    def observe(self, embed: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Posterior pass over [B, T] data; returns posterior and prior states stacked on T."""
        batch, length = embed.shape[:2]
        init = self.initial(batch)  # once per pass, not at every episode start inside it
        state = state if state is not None else init
        # which steps restart a row, read once per pass (a GPU waits once, not at every step)
        restarts = is_first.any(0).tolist()
        posts, priors = [], []
        for t in range(length):
            state, prior = self.obs_step(state, prev_action[:, t], embed[:, t], is_first[:, t],
                                         init=init, restarts=restarts[t])
            posts.append(state)
            priors.append(prior)
        stack = lambda seq: {k: torch.stack([s[k] for s in seq], 1) for k in seq[0]}
        return stack(posts), stack(priors)

    # -- losses -------------------------------------------------------------------------
    def kl(self, lhs: State, rhs: State) -> torch.Tensor:
        if self.classes:
            return categorical_kl(lhs["logits"], rhs["logits"])
        return gaussian_kl(lhs["mean"], lhs["std"], rhs["mean"], rhs["std"])

    def kl_loss(self, post: State, prior: State, free: float, dyn_scale: float,
                rep_scale: float, free_avg: bool = False) -> tuple[torch.Tensor, dict]:
        """dyn: KL[sg(q) || p] trains the prior; rep: KL[q || sg(p)] the posterior; each
        clipped below at `free` nats (free bits) and weighted.

        DreamerV3: 0.5 and 0.1, clipped per step. DreamerV2's balancing β(α dyn + (1-α) rep)
        is dyn_scale = βα, rep_scale = β(1-α). PlaNet/V1's plain KL[q || p] is dyn = rep = 1:
        the two halves carry exactly its gradients to prior and posterior. `free_avg` clips
        the batch mean instead (V1/V2/PlaNet): then the loss is a scalar."""
        sg = lambda s: {k: v.detach() for k, v in s.items()}
        dyn = self.kl(sg(post), prior)
        rep = self.kl(post, sg(prior))
        metrics = {"kl_dyn": dyn.mean(), "kl_rep": rep.mean()}
        if free_avg:  # the mean over every rank's batch decides the clipping
            dyn, rep = parallel.batch_mean(dyn), parallel.batch_mean(rep)
        loss = dyn_scale * torch.clamp(dyn, min=free) + rep_scale * torch.clamp(rep, min=free)
        return loss, metrics


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - 1))


def flat_action(action: torch.Tensor, n: int | None) -> torch.Tensor:
    """Discrete indices -> one-hot floats; continuous actions pass through."""
    if n is None:
        return action.float()
    return F.one_hot(action.long(), n).float()
