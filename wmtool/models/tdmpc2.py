"""TD-MPC2's implicit world model (Hansen et al. 2024): no decoder, everything in latent space.

Encoder (state MLP and/or pixel CNN over stacked frames) -> SimNorm latent z; latent
dynamics z' = d(z, a) (SimNorm); reward R(z, a) and an ensemble of Q(z, a) heads, both
discrete regressions over 101 bins in symlog space (the TwoHot shared with DreamerV3);
Polyak-averaged target Qs. The policy prior lives in the behaviour (behavior/mppi.py) and is
bound here because the Q targets use its actions.

Loss over a window of horizon H (3) with temporal weight rho^t (0.5): latent consistency
||d(z_t, a_t) - sg(enc(o_{t+1}))||^2 (x20), reward (x0.1) and value (x0.1) cross-entropies,
value targets r_t + gamma (1 - terminal) min of two random target Qs at the prior's action.
Batches are replay windows (rows: obs_t, the action that led to it, the reward received on
arriving); a transition never crosses an episode start: losses after one are masked.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from wmtool import parallel
from wmtool.errors import WmtoolError
from wmtool.models.base import (
    LatentTraces,
    Loss,
    OptimGroup,
    Phase,
    PlansWithValues,
    WorldModel,
)
from wmtool.nets.dists import TwoHot, bernoulli_nll
from wmtool.nets.layers import ObsScaling, split_keys
from wmtool.nets.normed import (
    Ensemble,
    Mish,
    SimNorm,
    conv_out_size,
    evaluating,
    normed_mlp,
    shift_augment,
    small_init,
    stack_frames,
)
from wmtool.spaces import Space

State = dict[str, torch.Tensor]


class LatentEncoder(nn.Module):
    """Vector keys -> NormedLinear layers; image keys (stacked frames on channels) -> the
    paper's 4-layer ReLU CNN; concatenated -> NormedLinear -> SimNorm latent."""

    def __init__(self, obs_space: dict[str, Space], cfg):
        super().__init__()
        c = cfg.tdmpc2
        self.image_keys, self.vector_keys = split_keys(obs_space)
        self.scaling = ObsScaling(symlog_vectors=False)  # TD-MPC2 feeds states raw
        self.pad = 0
        width = 0
        if self.vector_keys:
            dim = sum(int(obs_space[k].shape[0]) for k in self.vector_keys)
            hidden = [c.enc_dim] * max(c.enc_layers - 1, 1)
            self.mlp = normed_mlp(dim, hidden[:-1], hidden[-1], last=Mish())
            width += hidden[-1]
        if self.image_keys:
            size = obs_space[self.image_keys[0]].shape[0]
            channels = c.frames * sum(obs_space[k].shape[-1] for k in self.image_keys)
            n = c.cnn_channels
            self.cnn = nn.Sequential(
                nn.Conv2d(channels, n, 7, 2), nn.ReLU(), nn.Conv2d(n, n, 5, 2), nn.ReLU(),
                nn.Conv2d(n, n, 3, 2), nn.ReLU(), nn.Conv2d(n, n, 3, 1), nn.Flatten())
            small_init(self.cnn)
            for kernel, stride in ((7, 2), (5, 2), (3, 2), (3, 1)):
                size = conv_out_size(size, kernel, stride)
            width += n * size * size
            self.pad = int(obs_space[self.image_keys[0]].shape[0] / 21)  # 3 px at 64 x 64
        self.out = normed_mlp(width, [], c.latent, last=SimNorm(c.simnorm))

    def images(self, obs: dict) -> torch.Tensor:
        return torch.cat([obs[k] for k in self.image_keys], -1)

    def forward(self, obs: dict, augment: bool = False) -> torch.Tensor:
        """obs: vectors (..., D) and, under "image", stacked frames (..., H, W, frames*C)."""
        parts = []
        if self.vector_keys:
            parts.append(self.mlp(torch.cat([obs[k].float() for k in self.vector_keys], -1)))
        if self.image_keys:
            image = obs["image"]
            lead = image.shape[:-3]
            x = self.scaling.image(image.reshape(-1, *image.shape[-3:])).permute(0, 3, 1, 2)
            if augment:
                x = shift_augment(x, self.pad)
            parts.append(self.cnn(x).reshape(*lead, -1))
        return self.out(torch.cat(parts, -1))


class TDMPC2Model(WorldModel, LatentTraces, PlansWithValues):
    phases = ("joint",)
    behavior_phases = ("joint",)  # the policy prior learns after every model update
    hot_paths = ("next", "reward_of")  # once per latent step of updates and MPPI rollouts

    def __init__(self, obs_space: dict[str, Space], act_space: Space, cfg):
        super().__init__()
        if act_space.discrete:
            raise WmtoolError("tdmpc2 plans continuous actions only (MPPI over action sequences)",
                              "use --algo dreamerv3 or dreamerv2 for discrete action spaces")
        self.obs_space, self.act_space, self.cfg = obs_space, act_space, cfg
        c = self.c = cfg.tdmpc2
        self.act_dim = int(act_space.shape[0])
        image_keys, vector_keys = split_keys(obs_space)
        self.input_keys = image_keys + vector_keys
        self.frames = c.frames if image_keys else 1
        if c.horizon < 1 or self.frames < 1 or c.latent % c.simnorm:
            raise WmtoolError(f"tdmpc2: horizon ({c.horizon}) and frames ({c.frames}) must be "
                              f">= 1 and latent ({c.latent}) a multiple of simnorm ({c.simnorm})")
        self.encoder = LatentEncoder(obs_space, cfg)
        za, hidden = c.latent + self.act_dim, [c.mlp_dim] * 2
        self.dynamics = normed_mlp(za, hidden, c.latent, last=SimNorm(c.simnorm))
        self.reward = normed_mlp(za, hidden, c.bins, zero_out=True)
        self.q = Ensemble(c.num_q, za, hidden, c.bins, dropout=c.dropout)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        # a termination head only where episodes can end early (recipes/algo/tdmpc2__gym.yaml)
        self.termination = normed_mlp(c.latent, hidden, 1) if c.termination > 0 else None
        self.twohot = TwoHot(c.bins, c.vmin, c.vmax)
        self.register_buffer("discount", torch.tensor(c.discount or c.discount_min))
        self.register_buffer("longest_episode", torch.zeros((), dtype=torch.long))
        self._prior: list = [None]  # the behaviour's policy prior (not a submodule of this)

    # -- wiring ----------------------------------------------------------------------------
    def bind_prior(self, prior: nn.Module) -> None:
        self._prior[0] = prior

    @property
    def prior(self) -> nn.Module:
        if self._prior[0] is None:
            raise RuntimeError("TDMPC2Model used before its behaviour bound a policy prior")
        return self._prior[0]

    def optimizer_groups(self) -> dict:
        c = self.c
        heads = [*self.dynamics.parameters(), *self.reward.parameters(), *self.q.parameters()]
        if self.termination is not None:
            heads += list(self.termination.parameters())
        return {"wm": OptimGroup(heads, c.lr, 1e-8, c.clip),
                "encoder": OptimGroup(self.encoder.parameters(), c.lr * c.enc_lr_scale, 1e-8,
                                      c.clip)}

    def note_episode(self, length: int) -> None:
        """The episode-length discount heuristic: gamma = clip((L/5 - 1) / (L/5), 0.95, 0.995)
        for the longest episode L seen (agent steps); fixed if tdmpc2.discount > 0."""
        c = self.c
        if length <= int(self.longest_episode):
            return
        self.longest_episode.fill_(length)
        if c.discount == 0:
            frac = length / c.discount_denom
            gamma = (frac - 1) / frac if frac > 0 else c.discount_min
            self.discount.fill_(min(max(gamma, c.discount_min), c.discount_max))

    def after_update(self) -> None:
        """Polyak-average the target Qs towards the Qs (rate tdmpc2.tau). (`no_grad` inside
        rather than as a decorator: mutmut, `make mutate`, leaves decorated functions alone.)"""
        with torch.no_grad():
            for target, online in zip(self.target_q.parameters(), self.q.parameters()):
                target.lerp_(online, self.c.tau)

    # -- the model -------------------------------------------------------------------------
    def action_input(self, action: torch.Tensor) -> torch.Tensor:
        return action.float()

    def encode(self, obs: dict, augment: bool = False) -> torch.Tensor:
        return self.encoder(obs, augment)

    def next(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.dynamics(torch.cat([z, action], -1))

    def reward_of(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.twohot.mean(self.reward(torch.cat([z, action], -1)))

    def q_value(self, z: torch.Tensor, action: torch.Tensor, kind: str = "avg",
                target: bool = False) -> torch.Tensor:
        """The mean (`avg`) or minimum (`min`) of two randomly chosen ensemble members (only
        those two are computed)."""
        net = self.target_q if target else self.q
        pair = parallel.alike_randperm(net.members, z.device)[:2]
        values = self.twohot.mean(net(torch.cat([z, action], -1), pair))
        return values.min(0).values if kind == "min" else values.mean(0)

    def alive(self, z: torch.Tensor) -> torch.Tensor:
        """Chance the episode goes on after reaching z (1 without a termination head)."""
        if self.termination is None:
            return torch.ones(z.shape[:-1], device=z.device)
        return 1.0 - torch.sigmoid(self.termination(z).squeeze(-1))

    def estimate_value(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return of (N, H, A) action sequences from (N, D) latents: discounted predicted
        rewards, then the Qs at the prior's action in the last state."""
        rewards, weight, last = self.rollout_return(z, actions)
        return rewards + weight * self.terminal_value(last)

    def rollout_return(self, z: torch.Tensor, actions: torch.Tensor):
        """The deterministic part of `estimate_value`: (discounted predicted rewards, the
        weight left for the value at the end, the last latent), each over N."""
        value = torch.zeros(z.shape[0], device=z.device)
        weight = torch.ones_like(value)
        for t in range(actions.shape[1]):
            value = value + weight * self.reward_of(z, actions[:, t])
            z = self.next(z, actions[:, t])
            weight = weight * self.discount * self.alive(z)
        return value, weight, z

    def terminal_value(self, z: torch.Tensor) -> torch.Tensor:
        """The value at the end of a planned sequence (random: two random Q heads at a
        sampled prior action)."""
        return self.q_value(z, self.prior.sample(z), "avg")

    # what `wmtool dream` shows for a model without a decoder (engine/dream.py:latent_traces)
    def predict_transition_reward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.reward_of(z, action)

    def predict_value(self, z: torch.Tensor) -> torch.Tensor:
        return self.q_value(z, self.prior.mode(z), "avg")

    def predict_cont(self, z: torch.Tensor) -> torch.Tensor:
        return self.alive(z)

    # -- the actable tier (models/base.py) ---------------------------------------------------
    def initial(self, batch: int) -> State:
        state = {"z": torch.zeros(batch, self.c.latent, device=self.discount.device)}
        if self.frames > 1:
            enc = self.encoder
            shape = self.obs_space[enc.image_keys[0]].shape[:2]
            channels = sum(self.obs_space[k].shape[-1] for k in enc.image_keys)
            state["stack"] = torch.zeros(batch, *shape, channels * (self.frames - 1),
                                         dtype=torch.uint8, device=self.discount.device)
        return state

    def stacked_inputs(self, obs: dict, is_first: torch.Tensor) -> dict:
        """Window rows (B, T) -> model inputs for rows frames-1.. with frames stacked."""
        out = {k: obs[k][:, self.frames - 1:] for k in self.encoder.vector_keys}
        if self.encoder.image_keys:
            out["image"] = stack_frames(self.encoder.images(obs), is_first, self.frames)
        return out

    def filter_step(self, state: State, prev_action: torch.Tensor, obs: dict,
                    is_first: torch.Tensor, sample: bool = True) -> State:
        """Acting: z of the newest observation (and its frame stack; reset at episode starts)."""
        inputs = {k: obs[k] for k in self.encoder.vector_keys}
        new = {}
        if self.encoder.image_keys:
            frame = self.encoder.images(obs)
            if self.frames > 1:
                history = state["stack"]
                restart = is_first.bool().view(-1, 1, 1, 1)
                history = torch.where(restart, frame.repeat(1, 1, 1, self.frames - 1), history)
                stacked = torch.cat([history, frame], -1)
                new["stack"] = stacked[..., frame.shape[-1]:]
            else:
                stacked = frame
            inputs["image"] = stacked
        return {"z": self.encode(inputs), **new}

    def observe(self, batch: dict, state: State | None = None) -> tuple[State, State]:
        """Latents of every row that has a full frame stack (no dynamics: z is a function of
        the observation alone)."""
        z = self.encode(self.stacked_inputs(batch, batch["is_first"]))
        post = {"z": z, "weight": torch.ones(z.shape[:-1], device=z.device)}
        return post, post

    def features(self, state: State) -> torch.Tensor:
        return state["z"]

    def state_from_features(self, feat: torch.Tensor) -> State:
        return {"z": feat}

    def imagine(self, start: State, act, horizon: int, sample: bool = True):
        states, actions = [start["z"]], []
        for t in range(horizon):
            actions.append(act(states[-1], t))
            states.append(self.next(states[-1], actions[-1]))
        return {"z": torch.stack(states)}, torch.stack(actions)

    def schedule(self) -> list[Phase]:
        t = self.cfg.train
        return [Phase("joint", t.steps, t.batch, t.length)]

    @property
    def history(self) -> int:
        """Rows before a window's first latent that only fill its frame stack."""
        return self.frames - 1

    def window(self) -> int:
        return self.history + self.c.horizon + 1

    def loss(self, batch: dict, state: State | None = None, phase: str = "joint"):
        """Returns (scalar loss, optimiser groups to step, latents for the prior, metrics)."""
        c, h, f = self.c, self.c.horizon, self.frames
        if batch["reward"].shape[1] < self.window():
            raise WmtoolError(f"tdmpc2 learns from windows of {self.window()} rows (history "
                              f"{self.history} + horizon {self.c.horizon} + 1), got "
                              f"{batch['reward'].shape[1]}",
                              f"set train.length={self.c.horizon + 1}")
        rows = {k: v[:, :self.window()] for k, v in batch.items()}
        z_all = self.encode(self.stacked_inputs(rows, rows["is_first"]), augment=True)
        targets = z_all[:, 1:].detach()  # enc(o_{t+1}) for t = 0..H-1
        action = rows["prev_action"][:, f:].float()  # a_t led from row f-1+t to f+t
        reward, terminal = rows["reward"][:, f:].float(), rows["is_terminal"][:, f:].float()
        # a transition is valid while no episode has started since the window's first latent
        valid = (torch.cumsum(rows["is_first"][:, f:].float(), 1) == 0).float()  # (B, H)
        rho = c.rho ** torch.arange(h, device=z_all.device, dtype=z_all.dtype)

        def weighted(per_step: torch.Tensor) -> torch.Tensor:  # (B, H) -> scalar
            mean_t = parallel.masked_mean(per_step, valid, dim=0)  # over all ranks' rows
            return (rho * mean_t).sum() / h

        z, zs, consistency = z_all[:, 0], [z_all[:, 0]], []
        for t in range(h):
            z = self.next(z, action[:, t])
            consistency.append(((z - targets[:, t]) ** 2).mean(-1))
            zs.append(z)
        zs_all = torch.stack(zs, 1)  # (B, H+1, D)
        za = torch.cat([zs_all[:, :-1], action], -1)
        with torch.no_grad(), evaluating(self.target_q):  # targets without dropout, as the
            next_action = self.prior.sample(targets)       # official code computes them
            bootstrap = self.q_value(targets, next_action, "min", target=True)
            td = reward + self.discount * (1.0 - terminal) * bootstrap
        q_logits = self.q(za)  # (E, B, H, bins)
        losses = {"consistency": weighted(torch.stack(consistency, 1)),
                  "reward": weighted(self.twohot.loss(self.reward(za), reward)),
                  "value": weighted(self.twohot.loss(q_logits, td[None].expand(
                      q_logits.shape[0], -1, -1)).mean(0))}
        total = (c.consistency * losses["consistency"] + c.reward * losses["reward"]
                 + c.value * losses["value"])
        if self.termination is not None:
            term = bernoulli_nll(self.termination(zs_all[:, 1:]).squeeze(-1), terminal)
            losses["termination"] = parallel.masked_mean(term, valid)
            total = total + c.termination * losses["termination"]
        # the prior learns on every latent of the rollout, weighted rho^t like the model
        seen = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)
        post = {"z": zs_all.detach(), "weight": seen * c.rho ** torch.arange(
            h + 1, device=seen.device, dtype=seen.dtype)}
        metrics = {f"loss_{k}": v.detach() for k, v in losses.items()}
        metrics.update(loss=total.detach(), td_target=td.mean(), discount=self.discount.clone())
        return Loss(total, ["wm", "encoder"], post, metrics)
