"""`wmtool envs check`: what wmtool makes of an environment, and what would break training.

It builds the env as training would (the `env` config section), then reports its spaces as
wmtool sees them and, for gymnasium envs, as declared; which observation keys feed the image
encoder and which the vector one; the rewards seen and their dtype; how a few random episodes
ended (terminated, truncated by the env, or cut at the check's own cap); steps per second;
and whether two resets with the same seed and the same actions replay the same episode.
Every problem found comes with its fix.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from wmtool import spaces
from wmtool.envs.base import Wrapper
from wmtool.envs.watchdog import CallDeadline, Watched
from wmtool.errors import WmtoolError


def problem(what: str, fix: str) -> dict[str, str]:
    return {"problem": what, "fix": fix}


def gymnasium_env(env) -> Any:
    """The gymnasium env behind a wmtool env (through wmtool's wrappers), or None."""
    while isinstance(env, Wrapper):
        env = env.env
    from wmtool.envs.gym import GymEnv

    return env._env if isinstance(env, GymEnv) else None


def declared_problems(raw) -> list[dict[str, str]]:
    """What the gymnasium spaces say that wmtool would silently get wrong."""
    import gymnasium.spaces as gs

    found = []

    def visit(space, name: str) -> None:
        if isinstance(space, gs.Dict):
            for key, inner in space.spaces.items():
                visit(inner, f"{name}/{key}" if name else key)
        elif isinstance(space, gs.Tuple):
            for i, inner in enumerate(space.spaces):
                visit(inner, f"{name}/{i}" if name else str(i))
        elif isinstance(space, gs.Box) and len(space.shape) == 3:
            label = name or "the observation"
            h, w, c = space.shape
            if space.dtype != np.uint8 and c in (1, 3, 4):
                found.append(problem(
                    f"{label} looks like an image {space.shape} but is {space.dtype}: it "
                    f"becomes a vector of {h * w * c} numbers, not an image",
                    "emit uint8 HxWx3 frames with values 0-255"))
            elif space.dtype == np.uint8 and space.shape[0] in (1, 3, 4) and c not in (1, 3, 4):
                found.append(problem(f"{label} is a channels-first image {space.shape}",
                                     "transpose it to HxWxC (height, width, channels)"))
            elif space.dtype == np.uint8 and c != 3:
                found.append(problem(f"{label} is an image with {c} channel(s), not 3",
                                     "emit RGB frames (HxWx3)"))

    visit(raw.observation_space, "")
    return found


def run_episodes(env, episodes: int, cap: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ends = {"terminated": 0, "truncated": 0, "cut_at_cap": 0}
    rewards, steps, nonfinite = [], 0, set()
    start = time.perf_counter()
    for episode in range(episodes):
        obs = env.reset(seed=seed + episode)
        for t in range(cap):
            for key in env.obs_space:
                if not np.all(np.isfinite(np.asarray(obs[key], dtype=np.float64))):
                    nonfinite.add(key)
            obs = env.step(env.act_space.sample(rng))
            steps += 1
            rewards.append(float(obs["reward"]))
            if obs["is_last"]:
                ends["terminated" if obs["is_terminal"] else "truncated"] += 1
                break
        else:
            ends["cut_at_cap"] += 1
    seconds = time.perf_counter() - start
    r = np.asarray(rewards)
    finite = r[np.isfinite(r)]
    if not np.all(np.isfinite(r)):
        nonfinite.add("reward")
    return {"episodes": ends, "steps": steps, "steps_per_s": round(steps / seconds, 1),
            "reward": {"min": float(finite.min()) if len(finite) else None,
                       "max": float(finite.max()) if len(finite) else None,
                       "mean_per_step": float(finite.mean()) if len(finite) else None},
            "nonfinite": sorted(nonfinite)}


def replay_matches(env, seed: int, steps: int) -> tuple[bool, str]:
    """Two resets with `seed` and the same actions: the same observations and rewards?"""
    actions = [env.act_space.sample(np.random.default_rng(seed)) for _ in range(steps)]
    runs = []
    for _ in range(2):
        obs, seen = env.reset(seed=seed), []
        seen.append(obs)
        for action in actions:
            if obs["is_last"]:
                break
            obs = env.step(action)
            seen.append(obs)
        runs.append(seen)
    for t, (a, b) in enumerate(zip(*runs)):
        for key in [*env.obs_space, "reward"]:
            if not np.array_equal(np.asarray(a[key]), np.asarray(b[key]), equal_nan=True):
                return False, f"{key} differs at step {t}"
    if len(runs[0]) != len(runs[1]):
        return False, f"the episodes lasted {len(runs[0])} and {len(runs[1])} steps"
    return True, ""


def check(env_cfg, episodes: int = 3, cap: int = 1000, seed: int = 0,
          timeout: float = 60.0) -> dict:
    """The report; any single call into the env (making it, reset, step) that takes longer
    than `timeout` seconds ends the process with one line (watchdog.py)."""
    from wmtool.envs.factory import make_env

    deadline = CallDeadline(env_cfg.id, timeout)
    env = Watched(deadline.call("its constructor", make_env, env_cfg, None), deadline)
    try:
        raw = gymnasium_env(env._env)
        raw = Watched(raw, deadline, "the gymnasium env's ") if raw is not None else None
        images = [k for k, s in env.obs_space.items() if s.is_image]
        report: dict[str, Any] = {
            "env": env_cfg.id,
            "obs_space": {k: s.to_dict() for k, s in env.obs_space.items()},
            "act_space": env.act_space.to_dict(),
            "encoders": {"image": images, "vector": [k for k in env.obs_space if k not in images]},
        }
        found = []
        if raw is not None:
            report["declared"] = {"observation": str(raw.observation_space),
                                  "action": str(raw.action_space)}
            found += declared_problems(raw)
            step_found, reward_type = raw_step_problems(raw, seed)
            found += step_found
            report["declared"]["reward_type"] = reward_type
        try:
            report.update(run_episodes(env, episodes, cap, seed))
        except WmtoolError as exc:  # the adapter refused what the env returned
            report["problems"] = found + [problem(f"random play stopped: {exc.message}",
                                                  exc.hint)]
            return report
        for key in report.pop("nonfinite"):
            found.append(problem(f"{key} had non-finite values (NaN or inf) in random play",
                                 "make the env return finite numbers (clip, or end the "
                                 "episode before they overflow)"))
        if report["episodes"]["cut_at_cap"] == episodes:
            found.append(problem(f"no episode ended within {cap} steps",
                                 "give it a time limit: --set env.time_limit=N"))
        same, why = replay_matches(env, seed, min(cap, 200))
        report["deterministic_under_seed"] = same
        if not same:
            found.append(problem(f"two resets with seed {seed} and the same actions differ "
                                 f"({why}): evaluations will not be reproducible",
                                 "draw all randomness from the generator reset(seed=...) "
                                 "seeds (gymnasium's self.np_random)"))
        report["problems"] = found
        return report
    finally:
        env.close()


def raw_step_problems(raw, seed: int) -> tuple[list[dict[str, str]], str]:
    """One reset and step of the gymnasium env itself: types the adapter would coerce, and
    the type of the reward it returned."""
    found = []
    obs, _ = raw.reset(seed=seed)
    if not raw.observation_space.contains(obs):
        found.append(problem("reset() returned an observation outside the declared "
                             "observation space (dtype, shape or bounds)",
                             "make observation_space describe what the env returns"))
    result = raw.step(raw.action_space.sample())
    reward, terminated, truncated = result[1], result[2], result[3]
    if np.ndim(reward) != 0:
        found.append(problem(f"step() returned a reward of shape {np.shape(reward)}",
                             "return one float per step"))
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if not isinstance(flag, (bool, np.bool_)):
            found.append(problem(f"step() returned {name} as {type(flag).__name__}",
                                 f"return {name} as a bool"))
    kind = type(reward).__name__
    return found, kind + (f" {reward.dtype}" if isinstance(reward, np.ndarray) else "")


def actions(space: dict) -> str:
    if space.get("n") is not None:
        return f"{space['n']} discrete"
    return f"continuous {tuple(space['shape'])} in [-1, 1] (rescaled to the env's bounds)"


def summary_lines(report: dict) -> list[str]:
    lines = [f"{report['env']}: observations "
             + ", ".join(f"{k} {spaces.Space.from_dict(s).shape} {s['dtype']}"
                         for k, s in report["obs_space"].items())
             + f"; actions {actions(report['act_space'])}"]
    if "declared" in report:
        lines.append(f"declared by the env: {report['declared']['observation']} -> "
                     f"{report['declared']['action']}")
    enc = report["encoders"]
    lines.append(f"image encoder: {', '.join(enc['image']) or '-'}; vector encoder: "
                 f"{', '.join(enc['vector']) or '-'}")
    if "steps" not in report:  # random play stopped: its problem says why
        return lines + [f"problem: {p['problem']}; fix: {p['fix']}" for p in report["problems"]]
    r, e = report["reward"], report["episodes"]
    given = f"{report['declared']['reward_type']} from the env, " if "declared" in report else ""
    lines.append(f"{report['steps']} random steps at {report['steps_per_s']:,} steps/s; rewards "
                 f"{r['min']} to {r['max']} ({given}float32 in wmtool); episodes: "
                 f"{e['terminated']} "
                 f"terminated, {e['truncated']} truncated, {e['cut_at_cap']} cut at the cap")
    lines.append("deterministic under a seed: " + ("yes" if report["deterministic_under_seed"]
                                                  else "no"))
    for p in report["problems"]:
        lines.append(f"problem: {p['problem']}; fix: {p['fix']}")
    if not report["problems"]:
        lines.append("no problems found")
    return lines

