"""Names -> implementations, imported lazily so `wmtool --help` stays fast.

The CLI and engine look things up here and never branch on a suite or algorithm name.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    target: str  # "module:attribute"
    summary: str
    examples: tuple[str, ...] = ()
    tasks: str = ""  # "module:function" listing every task of an env suite
    acting: str = ""  # algorithms: "module:function" agent -> standalone greedy policy module
    imagine: bool = True  # algorithms: has a behaviour `wmtool imagine` can train

    def load(self, target: str | None = None):
        return load_target(target or self.target)


def load_target(target: str):
    """"module:attribute" -> the attribute, imported now."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


SUITES: dict[str, Entry] = {
    "gym": Entry("wmtool.envs.factory:make_gym_suite",
                 "any gymnasium id (classic control, Box2D, third-party via --env-import)",
                 ("gym:CartPole-v1", "gym:Pendulum-v1", "gym:CarRacing-v3", "gym:LunarLander-v3"),
                 "wmtool.envs.gym:all_ids"),
    "dmc": Entry("wmtool.envs.factory:make_dmc_suite",
                 "DeepMind Control Suite <domain>-<task>, --obs state|pixels|both",
                 ("dmc:cartpole-balance", "dmc:cartpole-swingup", "dmc:walker-walk",
                  "dmc:cheetah-run"), "wmtool.envs.dmc:all_tasks"),
    "atari": Entry("wmtool.envs.factory:make_atari_suite",
                   "Atari 2600 via ale-py's bundled ROMs (standard protocol, 64x64)",
                   ("atari:pong", "atari:breakout", "atari:ms_pacman", "atari:boxing"),
                   "wmtool.envs.atari:all_games"),
}

# Algorithm name -> builder of (world model, behaviour, optimiser groups); see engine/agent.py.
ALGOS: dict[str, Entry] = {
    "dreamerv3": Entry("wmtool.algos.dreamer:build_dreamer",
                       "DreamerV3 (2023 paper code): RSSM 32x32 categorical + actor-critic",
                       acting="wmtool.algos.dreamer:acting_policy"),
    "dreamerv2": Entry("wmtool.algos.dreamer:build_dreamer",
                       "DreamerV2 (2021): categorical RSSM, KL balancing, target critic",
                       acting="wmtool.algos.dreamer:acting_policy"),
    "dreamerv1": Entry("wmtool.algos.dreamer:build_dreamer",
                       "Dreamer (2020): Gaussian RSSM, actor trained through the dynamics",
                       acting="wmtool.algos.dreamer:acting_policy"),
    "planet": Entry("wmtool.algos.dreamer:build_planet",
                    "PlaNet (2019): Gaussian RSSM + CEM planning, continuous actions",
                    acting="wmtool.algos.dreamer:acting_policy", imagine=False),
    "tdmpc2": Entry("wmtool.algos.tdmpc2:build_tdmpc2",
                    "TD-MPC2 (2024): implicit latent model + MPPI with a policy prior",
                    acting="wmtool.algos.tdmpc2:acting_policy"),
    "genie": Entry("wmtool.algos.genie:build_genie",
                   "Genie-style latent actions (2024): VQ tokenizer, latent action model, "
                   "MaskGIT dynamics, from frames alone", imagine=False),
    "worldmodels": Entry("wmtool.algos.worldmodels:build_worldmodels",
                         "World Models (2018): VAE + MDN-RNN, linear controller by CMA-ES"),
}


def lookup(table: dict[str, Entry], name: str, kind: str) -> Entry:
    from wmtool.errors import UsageError

    if name not in table:
        raise UsageError(f"unknown {kind} '{name}'", f"valid: {', '.join(sorted(table))}")
    return table[name]
