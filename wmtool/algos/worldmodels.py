"""`--algo worldmodels`: builds V + M (models/worldmodels.py), the controller C and the
optimiser groups of the two gradient-trained phases (C learns by CMA-ES, without one)."""
from __future__ import annotations

from wmtool.behavior.controller import LinearController
from wmtool.models.worldmodels import WorldModelsModel


def build_worldmodels(obs_space, act_space, cfg):
    wm = WorldModelsModel(obs_space, act_space, cfg)
    controller = LinearController(wm.feat_dim, act_space, cfg)
    return wm, controller, wm.optimizer_groups()
