"""Builds an Env from the `env` config section: suite adapter, then shared wrappers."""
from __future__ import annotations

import functools

from wmtool.envs.base import Env
from wmtool.envs.wrappers import ActionRepeat, TimeLimit
from wmtool.errors import WmtoolError
from wmtool.registry import SUITES, lookup


def split_env_id(env_id: str) -> tuple[str, str]:
    suite, sep, task = env_id.partition(":")
    if not sep or not task:
        raise WmtoolError(f"--env {env_id!r} is not SUITE:TASK",
                          f"e.g. gym:CartPole-v1; suites: {', '.join(SUITES)}")
    lookup(SUITES, suite, "env suite")
    return suite, task


def make_gym_suite(task: str, cfg, seed):
    from wmtool.envs.gym import GymEnv, import_modules

    import_modules(cfg.imports)
    return GymEnv(task, obs=cfg.obs, size=tuple(cfg.size), seed=seed)


def make_dmc_suite(task: str, cfg, seed):
    from wmtool.envs.dmc import DMCEnv

    return DMCEnv(task, obs=cfg.obs, size=tuple(cfg.size), seed=seed, camera=cfg.camera)


def make_atari_suite(task: str, cfg, seed):
    from wmtool.envs.atari import AtariEnv

    if cfg.obs != "pixels" and cfg.obs != "state":
        raise WmtoolError("Atari observations are pixels only", "drop --obs or use --obs pixels")
    a = cfg.atari
    return AtariEnv(task, size=tuple(cfg.size), seed=seed, frame_skip=a.frame_skip,
                    sticky=a.sticky, noop_max=a.noop_max, gray=a.gray,
                    full_action_space=a.full_action_space,
                    life_loss_terminal=a.life_loss_terminal, max_frames=a.max_frames)


def make_env(cfg, seed: int | None = None) -> Env:
    """`cfg` is the `env` config section (see recipes/defaults.yaml)."""
    suite, task = split_env_id(cfg.id)
    env = SUITES[suite].load()(task, cfg, seed)
    if cfg.action_repeat > 1:
        env = ActionRepeat(env, cfg.action_repeat)
    if cfg.time_limit > 0:
        env = TimeLimit(env, cfg.time_limit)
    return env


def make_vec(env_cfg, count: int):
    """`count` env processes of the config's `env` section."""
    from wmtool.envs.vector import VecEnv

    return VecEnv([functools.partial(make_env, env_cfg, None) for _ in range(count)])
