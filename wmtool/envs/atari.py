"""Atari through ale-py's bundled ROMs, with the standard evaluation protocol.

Defaults (all overridable under `env.atari.*`): frame skip 4 with a max-pool over the last
two frames, sticky actions 0.25, up to 30 no-op starts, 64x64 colour frames, the minimal
action set, life loss not terminal, and the 108k-frame (30 minute) episode cap.
"""
from __future__ import annotations

import difflib

from wmtool.envs.gym import GymEnv
from wmtool.errors import UsageError, WmtoolError


def _roms() -> dict[str, str]:
    """Maps a normalised game name (lowercase, no separators) to its gymnasium id."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    games = {}
    for env_id in gymnasium.registry:
        if env_id.startswith("ALE/") and env_id.endswith("-v5"):
            games[env_id[4:-3].lower()] = env_id
    return games


def _normalise(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def all_games() -> list[str]:
    import ale_py

    return sorted(ale_py.roms.get_all_rom_ids())


class AtariEnv(GymEnv):
    def __init__(self, task: str, size=(64, 64), seed: int | None = None, frame_skip: int = 4,
                 sticky: float = 0.25, noop_max: int = 30, gray: bool = False,
                 full_action_space: bool = False, life_loss_terminal: bool = False,
                 max_frames: int = 108_000):
        import gymnasium
        from gymnasium.wrappers import AtariPreprocessing

        games = _roms()
        gym_id = games.get(_normalise(task))
        if gym_id is None:
            close = difflib.get_close_matches(task.lower(), all_games(), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join('atari:' + c for c in close)}?" if close else \
                "run `wmtool envs --suite atari` to list games"
            raise UsageError(f"unknown Atari game '{task}'", hint)
        if tuple(size)[0] != tuple(size)[1]:
            raise WmtoolError(f"Atari frames must be square, got env.size={list(size)}",
                              "use --set env.size=[64,64]")
        # frameskip=1 in ALE so the preprocessing wrapper can max-pool the last two frames.
        env = gymnasium.make(gym_id, frameskip=1, repeat_action_probability=sticky,
                             full_action_space=full_action_space,
                             max_num_frames_per_episode=max_frames)
        env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=frame_skip,
                                 screen_size=int(size[0]), grayscale_obs=gray,
                                 grayscale_newaxis=True,
                                 terminal_on_life_loss=life_loss_terminal)
        super().__init__(gym_id, obs="state", size=size, seed=seed, env=env,
                         env_id=f"atari:{_normalise(task)}")
