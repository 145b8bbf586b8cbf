"""The RSSM family's builders: world model + behaviour + optimiser groups.

`dreamerv1`, `dreamerv2` and `dreamerv3` are one builder; recipes/algo/<name>.yaml makes the
difference (latents, KL, heads, actor-critic settings). `planet` plans with CEM instead of
learning a behaviour."""
from __future__ import annotations

import torch
from torch import nn

from wmtool.behavior.actor_critic import ActorCritic
from wmtool.behavior.cem import CEMPlanner
from wmtool.models.base import OptimGroup
from wmtool.models.dreamer import DreamerModel


def build_planet(obs_space, act_space, cfg):
    wm = DreamerModel(obs_space, act_space, cfg)
    planner = CEMPlanner(wm, act_space, cfg)
    return wm, planner, {"wm": OptimGroup(wm.parameters(), cfg.wm.lr, cfg.wm.eps, cfg.wm.clip)}


def build_dreamer(obs_space, act_space, cfg):
    wm = DreamerModel(obs_space, act_space, cfg)
    behavior = ActorCritic(wm.rssm.feat_dim, act_space, cfg)
    groups = {
        "wm": OptimGroup(wm.parameters(), cfg.wm.lr, cfg.wm.eps, cfg.wm.clip),
        "actor": OptimGroup(behavior.actor.parameters(), cfg.actor.lr, cfg.actor.eps,
                            cfg.actor.clip),
        "critic": OptimGroup(behavior.critic.parameters(), cfg.critic.lr, cfg.critic.eps,
                             cfg.critic.clip),
    }
    return wm, behavior, groups


class ActingPolicy(nn.Module):
    """Greedy acting for one env step, as a standalone module (`wmtool export`).

    forward(*observations in `obs_keys` order, deter, stoch, prev_action, is_first)
      -> (action, next deter, next stoch, next prev_action): feed the last three back; on the
    first step pass zeros and is_first=1. Branch-free, so it traces to TorchScript and ONNX.
    Discrete actions come out as int64 indices, continuous ones in [-1, 1].
    """

    outputs = ["action", "next_deter", "next_stoch", "next_prev_action"]
    usage = ("first step: zeros for the carry and is_first=True; then feed next_deter, "
             "next_stoch, next_prev_action back in with is_first=False")

    def __init__(self, agent):
        super().__init__()
        self.wm, self.behavior = agent.wm, agent.behavior
        self.obs_keys = list(agent.wm.input_keys)

    def carry_shapes(self) -> dict[str, list[int]]:
        rssm = self.wm.rssm
        stoch = [rssm.stoch, rssm.classes] if rssm.classes else [rssm.stoch]
        return {"deter": [rssm.deter], "stoch": stoch, "prev_action": [self.wm.act_dim]}

    def forward(self, *inputs: torch.Tensor):
        n = len(self.obs_keys)
        obs = dict(zip(self.obs_keys, inputs[:n]))
        deter, stoch, prev_action, is_first = inputs[n:]
        rssm = self.wm.rssm
        state, prev_action = rssm.restart({"deter": deter, "stoch": stoch}, prev_action,
                                          is_first.bool())
        post = rssm.posterior(rssm.prior(state, prev_action), self.wm.encoder(obs),
                              sample=False)
        action = self.behavior.act(self.wm.features(post), "greedy")
        return action, post["deter"], post["stoch"], self.wm.action_input(action)


def acting_policy(agent) -> ActingPolicy:
    return ActingPolicy(agent)
