"""The Dreamer world model (DreamerV3 by default; V1/V2/PlaNet through configuration).

Encoder (CNN for image keys, MLP for vector keys) -> RSSM -> heads: decoder, reward
(twohot over symlog bins, zero-initialised; or MSE), continue (Bernoulli). Loss =
prediction (decoder + reward + continue) + KL with free bits and dyn/rep weights.
Batches are [B, T] rows where row t holds obs_t, the action that led to it (`prev_action`,
zero at episode starts), the reward received on arriving (`reward`), `is_first` and
`is_terminal`.
"""
from __future__ import annotations

from typing import Callable

import torch

from wmtool.models.base import Decodes, Loss, Phase, WorldModel
from wmtool.models.rssm import RSSM, State, flat_action
from wmtool.nets.dists import bernoulli_nll, scalar_head
from wmtool.nets.layers import MLP, MultiDecoder, MultiEncoder, ObsScaling, split_keys
from wmtool.spaces import Space


class DreamerModel(WorldModel, Decodes):
    phases = ("joint",)
    behavior_phases = ("joint",)  # the actor-critic learns alongside the model
    # once per sequence step and per imagined step: branch-free, so each compiles whole
    hot_paths = ("rssm.img_step", "rssm.prior", "rssm.posterior")

    def __init__(self, obs_space: dict[str, Space], act_space: Space, cfg):
        super().__init__()
        self.obs_space, self.act_space, self.cfg = obs_space, act_space, cfg
        self.act_dim = act_space.n if act_space.discrete else int(act_space.shape[0])
        m = cfg.model
        scaling = ObsScaling(m.symlog_vectors, m.image_bits)
        self.encoder = MultiEncoder(obs_space, m.cnn_depth, m.units, m.layers, scaling)
        r = cfg.rssm
        self.rssm = RSSM(self.encoder.out_dim, self.act_dim, r.deter, r.hidden, r.stoch,
                         r.classes, r.unimix, r.min_std)
        feat = self.rssm.feat_dim
        self.decoder = MultiDecoder(feat, obs_space, m.cnn_depth, m.units, m.layers, scaling)
        self.reward_head = scalar_head(cfg.wm.reward_head, cfg.wm.bins)
        self.reward = MLP(feat, m.units, m.layers, out=self.reward_head.size, zero_out=True)
        self.cont = MLP(feat, m.units, m.layers, out=1)
        self.input_keys = [k for part in split_keys(obs_space) for k in part]

    def action_input(self, action: torch.Tensor) -> torch.Tensor:
        return flat_action(action, self.act_space.n)

    @property
    def decoded_keys(self) -> tuple[list[str], list[str]]:
        return list(self.decoder.image_keys), list(self.decoder.vector_keys)

    def initial(self, batch: int) -> State:
        return self.rssm.initial(batch)

    def filter_step(self, state: State, prev_action: torch.Tensor, obs: dict,
                    is_first: torch.Tensor, sample: bool = True) -> State:
        """Acting: the posterior after one more real observation. Acting reads its action
        back every step anyway, so asking whether an env restarts adds no wait here, and
        saves the restart masking on the steps where none does."""
        if is_first.any():
            state, _ = self.rssm.obs_step(state, prev_action, self.encoder(obs), is_first,
                                          sample)
            return state
        return self.rssm.posterior(self.rssm.prior(state, prev_action), self.encoder(obs),
                                   sample)

    def schedule(self) -> list[Phase]:
        """Offline training's one phase."""
        t = self.cfg.train
        return [Phase("joint", t.steps, t.batch, t.length)]

    def observe(self, batch: dict, state: State | None = None) -> tuple[State, State]:
        embed = self.encoder({k: batch[k] for k in self.input_keys})
        return self.rssm.observe(embed, self.action_input(batch["prev_action"]),
                                 batch["is_first"], state)

    def features(self, state: State) -> torch.Tensor:
        return self.rssm.features(state)

    def state_from_features(self, feat: torch.Tensor) -> State:
        return self.rssm.state_from_features(feat)

    def imagine(self, start: State, act: Callable[[torch.Tensor, int], torch.Tensor],
                horizon: int, sample: bool = True) -> tuple[State, torch.Tensor]:
        """Roll the prior forward from `start`: act(features, t) gives the model-space action
        taken at step t. Returns states stacked on a new first axis (H+1) and actions (H).

        The states are the stacked features of each step (assembled once, for `act`) with
        `deter` and `stoch` as views into them: at imagination's batch (every posterior
        state of an update) stacking each part apart and joining them again took ~6% of an
        `xs` update. The distributions' statistics are not kept."""
        state, feats, actions = start, [self.features(start)], []
        for t in range(horizon):
            actions.append(act(feats[-1], t))
            state = self.rssm.img_step(state, actions[-1], sample)
            feats.append(self.features(state))
        return self.state_from_features(torch.stack(feats)), torch.stack(actions)

    def predict_reward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.reward_head.mean(self.reward(feat))

    def predict_cont(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.cont(feat).squeeze(-1))

    def decode(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decoder.decode(self.decoder(feat))

    def loss(self, batch: dict, state: State | None = None, phase: str = "joint"):
        """One update of the model: the groups it steps are `wm`."""
        c = self.cfg.wm
        post, prior = self.observe(batch, state)
        feat = self.features(post)
        losses = {f"rec_{k}": v for k, v in
                  self.decoder.losses(self.decoder(feat), batch).items()}
        losses["reward"] = self.reward_head.loss(self.reward(feat), batch["reward"].float())
        cont = 1.0 - batch["is_terminal"].float()
        losses["cont"] = bernoulli_nll(self.cont(feat).squeeze(-1), cont)
        kl, kl_metrics = self.rssm.kl_loss(post, prior, c.kl_free, c.kl_dyn, c.kl_rep,
                                           c.kl_free_avg)
        losses["kl"] = kl
        total = sum(v.mean() for v in losses.values())
        metrics = {f"loss_{k}": v.mean().detach() for k, v in losses.items()}
        metrics.update({k: v.detach() for k, v in kl_metrics.items()})
        metrics["loss"] = total.detach()
        return Loss(total, ["wm"], post, metrics)
