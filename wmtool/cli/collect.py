"""`wmtool collect`: run a policy in an environment and append episodes to an HDF5 store."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool import config
from wmtool.cli.common import (EnvImportOpt, EnvOpt, JsonOpt, ObsOpt, QuietOpt, RecipeOpt,
                               SeedOpt, SetOpt, command, emit_json, env_flags)
from wmtool.errors import WmtoolError
from wmtool.progress import info, make_progress, throttled

HELP = "Run a policy in an environment and write its episodes to an HDF5 file."
EXAMPLES = """Examples:

  wmtool collect --env gym:CartPole-v1 --episodes 20 --out data/cartpole.h5

  wmtool collect --env dmc:cartpole-swingup --obs pixels --steps 2000 --workers 2 --out data/swingup.h5 --json

  wmtool collect --env atari:pong --steps 500 --out data/pong.h5 --quiet

  wmtool collect --env gym:CarRacing-v3 --policy brownian --episodes 1 --set env.time_limit=200 --out data/car.h5 --quiet

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 300 --set train.prefill=200 --set train.train_ratio=64 --run-dir runs/cp --quiet

  wmtool collect --env gym:CartPole-v1 --policy run:runs/cp --noise 0.1 --episodes 2 --out data/cp_agent.h5 --json
"""


POLICIES = {"random": "wmtool.behavior.random:RandomPolicy",
            "brownian": "wmtool.behavior.brownian:BrownianPolicy"}


RUN_PREFIX = "run:"


def make_policy(name: str, vec, seed: int, noise: float = 0.0):
    """The acting policy for `vec`'s envs: a named one, or `run:DIR`, a trained run's agent
    (greedy), with optional exploration noise."""
    import importlib

    from wmtool.behavior.noisy import NoisyPolicy

    if name.startswith(RUN_PREFIX):
        policy = _run_policy(Path(name[len(RUN_PREFIX):]), vec)
    elif name in POLICIES:
        module, _, attr = POLICIES[name].partition(":")
        policy = getattr(importlib.import_module(module), attr)(vec.act_space, seed)
    else:
        raise WmtoolError(f"unknown --policy '{name}'",
                          f"valid: {', '.join(POLICIES)} or {RUN_PREFIX}RUN_DIR")
    # a separate stream from the policy's own, so adding noise leaves its choices unchanged
    return NoisyPolicy(policy, vec.act_space, noise, seed + 7919) if noise else policy


def _run_policy(run: Path, vec):
    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.loading import load_run

    loaded = load_run(run, optimizers=False)
    loaded.check_spaces(vec.obs_space, vec.act_space, vec.env_id)
    return AgentPolicy(loaded.agent, "greedy")


def first_seed(out: Path, seed: int) -> int:
    """`seed`, or past the seeds `out`'s episodes already used: collecting again into the
    same file continues the seed sequence instead of appending copies."""
    from wmtool.data.store import EpisodeReader, next_seed

    if not out.exists() or out.stat().st_size == 0:
        return seed
    with EpisodeReader(out) as reader:
        return max(seed, next_seed(reader.index))


@command
def collect(
    env: EnvOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to create or append to")],
    episodes: Annotated[Optional[int], typer.Option(min=1, help="stop after this many episodes")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="stop after this many agent steps (env steps / env.action_repeat)")] = None,
    seed: SeedOpt = 0,
    policy: Annotated[str, typer.Option(
        help="policy that acts: random (uniform), brownian (smooth random walk, continuous "
             "actions; World Models' data) or run:DIR (a trained run's agent, greedy)")] = "random",
    noise: Annotated[float, typer.Option(
        help="exploration noise on the policy's actions: Gaussian std for continuous actions "
             "(in [-1, 1] units), the chance of a uniform action for discrete ones")] = 0.0,
    workers: Annotated[Optional[int], typer.Option(
        help="parallel environment processes (default: collect.workers)")] = None,
    obs: ObsOpt = None,
    env_import: EnvImportOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool.data.background import BackgroundWriter
    from wmtool.data.store import describe_spaces
    from wmtool.data.writer import EpisodeWriter
    from wmtool.engine.loops import run_episodes
    from wmtool.envs.factory import make_env
    from wmtool.envs.vector import VecEnv

    if (episodes is None) == (steps is None):
        raise WmtoolError("give exactly one of --episodes N or --steps N")
    if (episodes or steps or 0) <= 0:
        raise WmtoolError("--episodes/--steps must be positive")
    flags = env_flags(env, obs, env_import) | {"seed": seed}
    if workers is not None:
        flags["collect"] = {"workers": workers}
    cfg = config.compose(flags, recipe, set_ or ())
    if cfg.collect.workers < 1:
        raise WmtoolError("--workers must be at least 1")
    config.require_choice("env.obs", cfg.env.obs, ("state", "pixels", "both"))

    seed = first_seed(out, seed)
    vec = VecEnv([functools.partial(make_env, cfg.env, None)
                  for _ in range(cfg.collect.workers)])
    try:
        act = make_policy(policy, vec, seed, noise)
        label = policy + (f"+noise{noise:g}" if noise else "")
        store = EpisodeWriter(out, vec.env_id, vec.obs_space, vec.act_space, policy=label,
                              image_chunk=cfg.collect.image_chunk)
        with BackgroundWriter(store) as writer:
            start_episodes = writer.num_episodes
            info(f"collect {vec.env_id} -> {out} ({describe_spaces(vec.obs_space, vec.act_space)}; "
                 f"{cfg.collect.workers} worker(s); {start_episodes} episodes already in file; "
                 f"seeds from {seed})", quiet)
            if store.recovered_rows:
                info(f"recovered {out} after an unclean stop: dropped "
                     f"{store.recovered_rows} rows of an unfinished episode", quiet)
            total = episodes or steps
            with make_progress(quiet) as progress:
                task = progress.add_task("collect", total=total, status="")

                def show(stats):
                    done = stats.episodes if episodes else stats.steps
                    mean = sum(stats.returns[-20:]) / max(1, len(stats.returns[-20:]))
                    progress.update(task, completed=min(done, total), status=(
                        f"{stats.episodes} ep  {stats.fps:,.0f} steps/s  return {mean:.1f}"))

                stats = run_episodes(vec, act, episodes=episodes, steps=steps, seed=seed,
                                     on_episode=writer.add, on_step=throttled(show, 0.25))
                progress.update(task, completed=total)
            writer.flush()
            result = {"out": str(out), "env": vec.env_id, "policy": label, "seed": seed,
                      "workers": cfg.collect.workers, "file_episodes": writer.num_episodes,
                      **stats.summary()}
    finally:
        vec.close()
    if json_:
        emit_json(result)
    else:
        info(f"wrote {result['episodes']} episodes, {result['steps']} steps "
             f"({result['env_steps_per_s']:,.0f} steps/s), mean return "
             f"{result['return_mean']:.2f}; {out} now holds {result['file_episodes']} episodes",
             quiet)
    return result
