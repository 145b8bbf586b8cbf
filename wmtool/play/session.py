"""One person playing inside a run's world model: the start state, who acts (keys or the
run's policy), pause / single step / reset / horizon reset, the real env beside the dream
(`--real`: the same actions, a drift figure per step) and the recording of what the real
env did (`--record`). No web here: server.py calls `tick` at a fixed rate and sends what it
returns; tests call it directly."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmtool.errors import UsageError
from wmtool.models.base import DrivenByLatentActions
from wmtool.play import frames
from wmtool.play.keymap import KeyMap
from wmtool.play.worlds import RealWorld, world_for

CONTEXT = 16  # real steps a stored window gives the model before it dreams


@dataclass
class Start:
    """Where play starts: a seeded env reset, a stored episode's step, or an image."""
    seed: int = 0
    data: Path | None = None
    episode: int = 0
    step: int = 0
    image: np.ndarray | None = None

    @property
    def from_env(self) -> bool:
        return self.data is None and self.image is None


@dataclass
class Frame:
    """What one tick shows."""
    dream: np.ndarray                      # (H, W, 3) uint8
    real: np.ndarray | None
    action: list
    step: int
    reward: float | None
    cont: float | None
    value: float | None
    drift: dict = field(default_factory=dict)
    real_return: float = 0.0
    episode_over: bool = False

    def state(self) -> dict:
        """The JSON the page gets beside the pictures."""
        return {"type": "state", "action": self.action, "step": self.step,
                "reward": self.reward, "cont": self.cont, "value": self.value,
                "drift": self.drift, "real_return": self.real_return,
                "episode_over": self.episode_over}


class PlaySession:
    def __init__(self, loaded, start: Start, real: bool = False, record: Path | None = None,
                 mode: str = "greedy"):
        self.loaded, self.agent, self.start_at = loaded, loaded.agent, start
        self.world = world_for(self.agent, mode)
        self.real_only = isinstance(self.world, RealWorld)
        if (real or record) and not start.from_env and not self.real_only:
            raise UsageError("--real and --record step the real env, which can only start "
                             "from its own reset", "drop --data/--image, or drop --real/--record")
        self.with_real = real or record is not None or self.real_only
        self.env = self._make_env() if (self.with_real or start.from_env) else None
        meanings = getattr(self.env, "action_meanings", None) if self.env else None
        latent = isinstance(self.agent.wm, DrivenByLatentActions)
        self.keymap = KeyMap(_latent_space(self.agent.wm) if latent else self.agent.act_space,
                             None if latent else meanings)
        self.recorder = _Recorder(record, self.env, loaded) if record else None
        self.policy = False
        self.paused = False
        self.resets = 0
        self.reset()

    # -- controls ----------------------------------------------------------------------------
    def reset(self, same_start: bool = False) -> Frame:
        """A new start: the env reset with the next seed (or the same stored window/image);
        `same_start` goes back to the start just played, to try other actions from it."""
        if same_start and self.resets:
            self.resets -= 1
        history, self.real_obs = self._start_history()
        self.keymap.reset()
        self.t, self.real_return, self.over = 0, 0.0, False
        self.last_action = []  # none taken yet in this start
        self.step_shown = self.world.start(history)
        self.scale = frames.vector_scale(self.step_shown.obs, self.world.vector_keys)
        self.resets += 1
        return self.frame()

    def resync(self) -> Frame:
        """Horizon reset: the dream starts again from where the real env is now (or from the
        start state when there is no real env beside it)."""
        if self.real_obs is None or self.real_only:
            return self.reset()
        self.step_shown = self.world.start([(self.real_obs, None)])
        return self.frame()

    def tick(self, held: set[str] = frozenset(), axes: list[float] | None = None) -> Frame:
        """One step: the policy's action or the keys', into the dream and the real env."""
        if self.over:
            return self.reset()
        action = (self.world.policy_action() if self.policy and self.world.has_policy
                  else self.keymap.action(set(held), axes))
        self.last_action = np.asarray(action).reshape(-1).tolist()
        if not self.real_only:
            self.step_shown = self.world.step(action)
        if self.with_real:
            obs = self.env.step(np.asarray(action, self.agent.act_space.dtype))
            self.real_return += float(obs["reward"])
            if self.recorder:
                self.recorder.add(action, obs)
            self.real_obs = obs
            self.over = bool(obs["is_last"])
            if self.real_only:
                self.step_shown = self.world.observe(obs, action)
        self.t += 1
        return self.frame()

    def frame(self) -> Frame:
        shown = self.step_shown
        dream = frames.picture(shown.obs, self.world.image_keys, self.world.vector_keys,
                               self.scale)
        real, drift = None, {}
        if self.with_real and self.real_obs is not None and not self.real_only:
            real = frames.picture(self.real_obs, self.world.image_keys, self.world.vector_keys,
                                  self.scale)
            drift = frames.drift(shown.obs, self.real_obs, self.world.image_keys,
                                 self.world.vector_keys)
        return Frame(dream, real, self.last_action, self.t, shown.reward, shown.cont,
                     shown.value, drift, self.real_return, self.over)

    def describe(self) -> dict:
        """What the page needs once: keys, controls, what the pictures are."""
        return {"type": "hello", "run": str(self.loaded.path), "algo": self.agent.algo,
                "world": self.world.kind, "note": self.world.note,
                "keys": self.keymap.describe(), "discrete": self.keymap.act_space.discrete,
                "has_policy": self.world.has_policy, "real": self.with_real and not
                self.real_only, "controls": self.world.controls,
                "recording": str(self.recorder.path) if self.recorder else None}

    def close(self) -> None:
        if self.recorder:
            self.recorder.close()
        if self.env is not None:
            self.env.close()

    # -- start states ------------------------------------------------------------------------
    def _make_env(self):
        from wmtool.envs.factory import make_env

        cfg = self.loaded.env_config()
        env = make_env(cfg.env)
        self.loaded.check_spaces(env.obs_space, env.act_space, cfg.env.id)
        return env

    def _start_history(self) -> tuple[list[tuple[dict, np.ndarray | None]], dict | None]:
        s = self.start_at
        if s.image is not None:
            if not self.world.image_keys:
                raise UsageError(f"--image: {self.agent.algo}'s model here sees no images",
                                 "start from the env (no --image) or --data")
            from wmtool.envs.gym import resize

            shape = self.agent.obs_space[self.world.image_keys[0]].shape
            frame = resize(s.image, tuple(shape[:2]))
            frame = frame.mean(-1, keepdims=True).astype(np.uint8) if shape[-1] == 1 else frame
            return [({**{k: frame for k in self.world.image_keys}, "is_first": True},
                     None)], None
        if s.data is not None:
            return _window(s.data, s.episode, s.step, self.loaded), None
        obs = self.env.reset(seed=s.seed + self.resets)
        if self.recorder:
            self.recorder.begin(obs, s.seed + self.resets)
        return [(obs, None)], obs


def _latent_space(wm):
    from wmtool import spaces

    return spaces.discrete(wm.latent_action_count)


def _window(path: Path, episode: int, step: int, loaded) -> list[tuple[dict, np.ndarray | None]]:
    """Up to CONTEXT real steps of a stored episode ending at `step`, with the actions taken
    after each (the last one's is the player's)."""
    from wmtool.data.store import EpisodeReader

    with EpisodeReader(path) as reader:
        if not 0 <= episode < len(reader):
            raise UsageError(f"--episode {episode}: {path} holds {len(reader)} episodes",
                             f"give 0..{len(reader) - 1}")
        ep = reader.episode(episode)
    if not 0 <= step <= ep.length:
        raise UsageError(f"--step {step}: episode {episode} has {ep.length} steps",
                         f"give 0..{ep.length}")
    first = max(0, step - CONTEXT + 1)
    rows = []
    for t in range(first, step + 1):
        obs = {k: v[t] for k, v in ep.obs.items()}
        obs["is_first"] = t == first
        action = ep.action[t] if ep.action is not None and t < step else None
        rows.append((obs, action))
    return rows


class _Recorder:
    """The real steps played, as episodes of an ordinary store."""

    def __init__(self, path: Path, env, loaded):
        from wmtool.data.writer import EpisodeWriter, refuse_existing

        self.path = refuse_existing(path)
        self.writer = EpisodeWriter(path, loaded.env_config().env.id, env.obs_space,
                                    env.act_space, policy="play")
        self.obs_keys = list(env.obs_space)
        self.builder = None

    def begin(self, obs: dict, seed: int) -> None:
        from wmtool.data.episode import EpisodeBuilder

        self._commit(cut=True)
        self.builder = EpisodeBuilder(self.obs_keys, seed)
        self.builder.start(obs)

    def add(self, action, obs: dict) -> None:
        self.builder.add(np.asarray(action), obs, float(obs["reward"]), bool(obs["is_last"]),
                         bool(obs["is_terminal"]))
        if obs["is_last"]:
            self._commit()

    def _commit(self, cut: bool = False) -> None:
        if self.builder is not None and len(self.builder):
            self.writer.add(self.builder.finish(cut=cut))
        self.builder = None

    def close(self) -> None:
        try:
            self._commit(cut=True)
        finally:
            self.writer.close()

