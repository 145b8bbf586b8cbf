"""`--algo dreamerv3`: builds the world model, the actor-critic and their optimiser groups."""
from __future__ import annotations

from wmtool.behavior.actor_critic import ActorCritic
from wmtool.models.dreamer import WorldModel


def build_dreamerv3(obs_space, act_space, cfg):
    wm = WorldModel(obs_space, act_space, cfg)
    behavior = ActorCritic(wm.rssm.feat_dim, act_space, cfg)
    groups = {
        "wm": (wm.parameters(), cfg.wm.lr, cfg.wm.eps, cfg.wm.clip),
        "actor": (behavior.actor.parameters(), cfg.actor.lr, cfg.actor.eps, cfg.actor.clip),
        "critic": (behavior.critic.parameters(), cfg.critic.lr, cfg.critic.eps, cfg.critic.clip),
    }
    return wm, behavior, groups
