"""`--algo genie`: the three-phase model (models/genie.py) and a behaviour that has no policy
for a real env: a Genie model is driven with latent actions (`wmtool dream --actions`)."""
from __future__ import annotations

from torch import nn

from wmtool.errors import WmtoolError
from wmtool.models.genie import GenieModel


class NoPolicy(nn.Module):
    """Genie learns from video alone: nothing maps observations to the env's actions."""

    modes: tuple[str, ...] = ()  # nothing to evaluate in an env

    def act(self, feat, mode: str = "greedy"):
        raise WmtoolError("genie has no policy for the real env: it learns from frames alone",
                          "drive its model with `wmtool dream --actions 0,3,1`, score it with "
                          "`wmtool eval --data FILE.h5`")

    def learn(self, wm, start, start_cont, step, autocast) -> dict:
        return {}

    def imagined_per_update(self) -> int:
        return 0


def build_genie(obs_space, act_space, cfg):
    wm = GenieModel(obs_space, act_space, cfg)
    return wm, NoPolicy(), wm.optimizer_groups()
