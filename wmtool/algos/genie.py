"""`--algo genie`: the three-phase model (models/genie.py) and a behaviour that has no policy
for a real env: a Genie model is driven with latent actions (`wmtool dream --actions`)."""
from __future__ import annotations

from wmtool.behavior.base import Behavior
from wmtool.errors import WmtoolError
from wmtool.models.base import ReportsOnData
from wmtool.models.genie import GenieModel
from wmtool.models.genie_report import data_report


class NoPolicy(Behavior):
    """Genie learns from video alone: nothing maps observations to the env's actions."""

    modes: tuple[str, ...] = ()  # nothing to evaluate in an env

    def act(self, feat, mode: str = "greedy"):
        raise WmtoolError("genie has no policy for the real env: it learns from frames alone",
                          "drive its model with `wmtool dream --actions 0,3,1`, score it with "
                          "`wmtool eval --data FILE.h5`")

    def learn(self, wm, start, start_cont, step, autocast) -> dict:
        return {}


class ReportingGenie(GenieModel, ReportsOnData):
    def data_report(self, episodes: list, batches: int, seed: int) -> dict:
        """`wmtool eval --data`: tokenizer PSNR, ΔPSNR and latent-vs-true-action scores."""
        return data_report(self, episodes, batches, seed)


def build_genie(obs_space, act_space, cfg):
    wm = ReportingGenie(obs_space, act_space, cfg)
    return wm, NoPolicy(), wm.optimizer_groups()
