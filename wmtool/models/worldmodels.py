"""World Models (Ha & Schmidhuber 2018): V, a convolutional VAE, and M, an MDN-RNN.

Trained in stages (`phases`): `vae` learns to compress 64x64 frames into z; `mdnrnn` then
learns, on the frozen VAE's z, an LSTM whose output h_t predicts z_t as a mixture of
Gaussians per latent dimension, plus the reward and the episode end. The controller C (see
behavior/controller.py) acts on [z_t, h_t].

Same row convention as every world model here: row t holds obs_t, the action that led to it
(`prev_action`), the reward received on arriving and `is_first`. The LSTM state h_t has seen
(z_<t, a_<t); at an episode start it is zero.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from wmtool import parallel
from wmtool.errors import WmtoolError
from wmtool.models.base import Decodes, Loss, OptimGroup, Phase, Tempered, WorldModel
from wmtool.models.rssm import flat_action
from wmtool.nets.dists import bernoulli_nll, symexp, symlog
from wmtool.nets.layers import split_keys
from wmtool.nets.mdn import MDN
from wmtool.spaces import Space

State = dict[str, torch.Tensor]  # {"h", "c": LSTM state, "z": latent of the current frame}


class ConvVAE(nn.Module):
    """The paper's V for 64x64 frames: 4 stride-2 convs (k4, channels d, 2d, 4d, 8d; ReLU),
    z = mu + sigma * eps; decoder: dense -> 1x1x(32d) -> 4 stride-2 deconvs (k5, 5, 6, 6)."""

    def __init__(self, channels: int, z: int, depth: int):
        super().__init__()
        d = depth
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, d, 4, 2), nn.ReLU(), nn.Conv2d(d, 2 * d, 4, 2), nn.ReLU(),
            nn.Conv2d(2 * d, 4 * d, 4, 2), nn.ReLU(), nn.Conv2d(4 * d, 8 * d, 4, 2), nn.ReLU(),
            nn.Flatten())
        self.mu = nn.Linear(8 * d * 2 * 2, z)
        self.logvar = nn.Linear(8 * d * 2 * 2, z)
        self.expand = nn.Linear(z, 32 * d)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(32 * d, 4 * d, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(4 * d, 2 * d, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(2 * d, d, 6, 2), nn.ReLU(),
            nn.ConvTranspose2d(d, channels, 6, 2), nn.Sigmoid())

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., 64, 64, C) uint8 -> mu, logvar (..., z)."""
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
        h = self.encoder(x)
        return self.mu(h).reshape(*lead, -1), self.logvar(h).reshape(*lead, -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(..., z) -> (..., 64, 64, C) in [0, 1]."""
        lead = z.shape[:-1]
        x = self.expand(z.reshape(-1, z.shape[-1]))
        x = self.decoder(x.reshape(x.shape[0], -1, 1, 1))
        return x.permute(0, 2, 3, 1).reshape(*lead, *x.shape[2:], x.shape[1])


def vae_kl(mu: torch.Tensor, logvar: torch.Tensor, floor: float) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) summed over z, floored at `floor` nats (the paper code's
    kl_tolerance x z): below the floor the KL no longer pulls the code towards the prior."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
    return torch.clamp(kl, min=floor)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.exp(0.5 * logvar) * parallel.randn_like(mu)


class MDNRNN(nn.Module):
    """LSTM over [z_{t-1}, a_{t-1}]; from h_t: an MDN over z_t; from [z_t, h_t]: reward
    (symlog regression) and episode end (Bernoulli logit)."""

    def __init__(self, z: int, act_dim: int, hidden: int, mixtures: int):
        super().__init__()
        self.hidden, self.mixtures = hidden, mixtures
        self.cell = nn.LSTMCell(z + act_dim, hidden)
        self.mdn = nn.Linear(hidden, 3 * z * mixtures)
        self.reward = nn.Linear(z + hidden, 1)
        self.done = nn.Linear(z + hidden, 1)

    def step(self, state: State, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cell(torch.cat([state["z"], action], -1), (state["h"], state["c"]))

    def next_z(self, h: torch.Tensor) -> MDN:
        return MDN(self.mdn(h), self.mixtures)


class WorldModelsModel(WorldModel, Decodes, Tempered):
    phases = ("vae", "mdnrnn")
    behavior_phases: tuple[str, ...] = ()  # C learns by CMA-ES in `wmtool imagine`

    def __init__(self, obs_space: dict[str, Space], act_space: Space, cfg):
        super().__init__()
        self.obs_space, self.act_space, self.cfg = obs_space, act_space, cfg
        self.image_keys, _ = split_keys(obs_space)
        if not self.image_keys:
            raise WmtoolError("worldmodels learns from images, and these observations have none",
                              "collect with --obs pixels (or an env with image observations)")
        shape = obs_space[self.image_keys[0]].shape
        if tuple(shape[:2]) != (64, 64):
            raise WmtoolError(f"worldmodels' VAE takes 64x64 frames, not {shape[0]}x{shape[1]}",
                              "collect with --set env.size=[64,64]")
        self.channels = [obs_space[k].shape[-1] for k in self.image_keys]
        self.act_dim = act_space.n if act_space.discrete else int(act_space.shape[0])
        v, m = cfg.vae, cfg.mdnrnn
        self.z_dim = v.z
        self.vae = ConvVAE(sum(self.channels), v.z, v.depth)
        self.mdnrnn = MDNRNN(v.z, self.act_dim, m.hidden, m.mixtures)
        self.input_keys = list(self.image_keys)
        self.temperature = float(m.temperature)
        self.feat_dim = v.z + m.hidden

    # -- the actable tier (models/base.py) -------------------------------------------------
    @property
    def decoded_keys(self) -> tuple[list[str], list[str]]:
        return list(self.image_keys), []

    def action_input(self, action: torch.Tensor) -> torch.Tensor:
        return flat_action(action, self.act_space.n)

    def features(self, state: State) -> torch.Tensor:
        return torch.cat([state["z"], state["h"]], -1)

    def initial(self, batch: int) -> State:
        zeros = next(self.parameters()).new_zeros
        return {"h": zeros(batch, self.mdnrnn.hidden), "c": zeros(batch, self.mdnrnn.hidden),
                "z": zeros(batch, self.z_dim)}

    def _frames(self, obs: dict) -> torch.Tensor:
        return torch.cat([obs[k] for k in self.image_keys], -1)

    def _advance(self, state: State, action: torch.Tensor, is_first: torch.Tensor) -> State:
        """One LSTM step on (z, a); an episode start gets fresh (zero) memory instead."""
        h, c = self.mdnrnn.step(state, action)
        keep = (~is_first).to(h.dtype)[:, None]
        return {"h": h * keep, "c": c * keep}

    def filter_step(self, state: State, prev_action: torch.Tensor, obs: dict,
                    is_first: torch.Tensor, sample: bool = True) -> State:
        """Acting: fold in the previous step, then encode the new frame."""
        memory = self._advance(state, prev_action, is_first)
        mu, logvar = self.vae.encode(self._frames(obs))
        return {**memory, "z": reparameterise(mu, logvar) if sample else mu}

    def observe(self, batch: dict, state: State | None = None,
                sample: bool = True) -> tuple[State, None]:
        """Posterior pass over [B, T] rows; states stacked on T."""
        mu, logvar = self.vae.encode(self._frames(batch))
        z_all = reparameterise(mu, logvar) if sample else mu
        return self._recur(z_all, batch, state), None

    def _recur(self, z_all: torch.Tensor, batch: dict, state: State | None = None) -> State:
        """The LSTM over given codes z_all (B, T, z) and the batch's actions and starts."""
        actions = self.action_input(batch["prev_action"])
        state = state or self.initial(z_all.shape[0])
        out = []
        for t in range(z_all.shape[1]):
            memory = self._advance(state, actions[:, t], batch["is_first"][:, t])
            state = {**memory, "z": z_all[:, t]}
            out.append(state)
        return {k: torch.stack([s[k] for s in out], 1) for k in out[0]}

    def imagine(self, start: State, act: Callable[[torch.Tensor, int], torch.Tensor],
                horizon: int, sample: bool = True) -> tuple[State, torch.Tensor]:
        """Dream forward: z_{t+1} ~ MDN(h_{t+1}) at temperature `self.temperature`."""
        states, actions = [start], []
        never = torch.zeros(start["z"].shape[0], dtype=torch.bool, device=start["z"].device)
        for t in range(horizon):
            actions.append(act(self.features(states[-1]), t))
            memory = self._advance(states[-1], actions[-1], never)
            z = self.mdnrnn.next_z(memory["h"]).sample(self.temperature, greedy=not sample)
            states.append({**memory, "z": z})
        return {k: torch.stack([s[k] for s in states]) for k in start}, torch.stack(actions)

    def predict_reward(self, feat: torch.Tensor) -> torch.Tensor:
        return symexp(self.mdnrnn.reward(feat).squeeze(-1))

    def predict_cont(self, feat: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.sigmoid(self.mdnrnn.done(feat).squeeze(-1))

    def decode(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = self.vae.decode(feat[..., :self.z_dim])
        images = (frames * 255).round().to(torch.uint8)
        return dict(zip(self.image_keys, images.split(self.channels, -1)))

    # -- learning --------------------------------------------------------------------------
    def schedule(self) -> list[Phase]:
        """The VAE's phase, then the MDN-RNN's."""
        if self.cfg.train.steps:
            raise WmtoolError("--steps does not apply to worldmodels, whose phases have their "
                              "own budgets", "use --set vae.steps=N --set mdnrnn.steps=M")
        v, m = self.cfg.vae, self.cfg.mdnrnn
        return [Phase("vae", v.steps, v.batch, 1), Phase("mdnrnn", m.steps, m.batch, m.length)]

    def phase_columns(self, phase: str) -> dict:
        """Replay columns computed once before `phase`. In `mdnrnn` V is frozen, so each frame
        is encoded once (mu and logvar side by side) instead of in every sampled window: the
        paper's pipeline too, and most of the phase's compute otherwise."""
        if phase != "mdnrnn":
            return {}

        @torch.no_grad()
        def code(rows: dict) -> np.ndarray:
            device = next(self.parameters()).device
            frames = self._frames({k: torch.as_tensor(rows[k], device=device)
                                   for k in self.image_keys})
            return torch.cat(self.vae.encode(frames), -1).cpu().numpy()
        return {"vae_code": code}

    def optimizer_groups(self) -> dict:
        v, m = self.cfg.vae, self.cfg.mdnrnn
        return {"vae": OptimGroup(self.vae.parameters(), v.lr, 1e-8, v.clip),
                "mdnrnn": OptimGroup(self.mdnrnn.parameters(), m.lr, 1e-8, m.clip)}

    def loss(self, batch: dict, state: State | None = None, phase: str = "vae"):
        """One update of `phase`: its own optimiser group; states for `mdnrnn` only."""
        if phase == "vae":
            return self._vae_loss(batch)
        if phase == "mdnrnn":
            return self._mdnrnn_loss(batch)
        raise WmtoolError(f"worldmodels has no phase '{phase}'", f"valid: {', '.join(self.phases)}")

    def _vae_loss(self, batch: dict):
        frames = self._frames(batch)
        mu, logvar = self.vae.encode(frames)
        recon = self.vae.decode(reparameterise(mu, logvar))
        target = frames.float() / 255.0
        rec = (recon - target).pow(2).sum((-3, -2, -1))
        kl = vae_kl(mu, logvar, self.cfg.vae.kl_tolerance * self.z_dim)
        loss = (rec + kl).mean()
        metrics = {"loss": loss.detach(), "loss_rec": rec.mean().detach(),
                   "loss_kl": kl.mean().detach()}
        return Loss(loss, ["vae"], None, metrics)

    def _mdnrnn_loss(self, batch: dict):
        with torch.no_grad():  # V is frozen in this phase; M learns on sampled codes
            if "vae_code" in batch:  # encoded once for the phase (phase_columns)
                mu, logvar = batch["vae_code"].float().chunk(2, -1)
            else:
                mu, logvar = self.vae.encode(self._frames(batch))
            z_all = reparameterise(mu, logvar)
        post = self._recur(z_all, batch)
        feat = self.features(post)
        nll = self.mdnrnn.next_z(post["h"]).nll(z_all)
        first = batch["is_first"]
        # row 0 of a window that starts mid-episode has an empty memory: nothing to learn from
        history = torch.ones_like(first)
        history[:, 0] = first[:, 0]
        transition = (~first).float()  # rewards and ends belong to real transitions only
        reward = (self.mdnrnn.reward(feat).squeeze(-1) - symlog(batch["reward"].float())).pow(2)
        done = bernoulli_nll(self.mdnrnn.done(feat).squeeze(-1), batch["is_terminal"].float())
        parts = {"z_nll": _masked_mean(nll, history.float()),
                 "reward": _masked_mean(reward, transition),
                 "done": _masked_mean(done, transition)}
        loss = sum(parts.values())
        metrics = {f"loss_{k}": v.detach() for k, v in parts.items()}
        metrics["loss"] = loss.detach()
        return Loss(loss, ["mdnrnn"], post, metrics)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)
