"""`wmtool collect`: run a policy in an environment and append episodes to an HDF5 store."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool import config
from wmtool.cli.common import (
    EnvImportOpt,
    EnvOpt,
    JsonOpt,
    ObsOpt,
    QuietOpt,
    RecipeOpt,
    SeedOpt,
    SetOpt,
    command,
    env_flags,
    finish,
)
from wmtool.errors import UsageError, WmtoolError
from wmtool.progress import Tracker, info, throttled

HELP = "Run a policy in an environment and write its episodes to an HDF5 file."
EXAMPLES = """Examples:

  wmtool collect --env gym:CartPole-v1 --episodes 20 --out data/cartpole.h5

  wmtool collect --env dmc:cartpole-swingup --obs pixels --steps 2000 --workers 2 --out data/swingup.h5 --json

  wmtool collect --env atari:pong --steps 500 --out data/pong.h5 --quiet

  wmtool collect --env gym:CarRacing-v3 --policy brownian --episodes 1 --set env.time_limit=200 --out data/car.h5 --quiet

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 300 --set train.prefill=200 --set train.train_ratio=64 --run-dir runs/cp --quiet

  wmtool collect --env gym:CartPole-v1 --policy run:runs/cp --noise 0.1 --episodes 2 --out data/cp_agent.h5 --json
"""


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
    from wmtool.engine.collect import Collection

    if (episodes is None) == (steps is None):
        raise UsageError("give exactly one of --episodes N or --steps N")
    if (episodes or steps or 0) <= 0:
        raise WmtoolError("--episodes/--steps must be positive")
    flags = env_flags(env, obs, env_import) | {"seed": seed}
    if workers is not None:
        flags["collect"] = {"workers": workers}
    cfg = config.compose(flags, recipe, set_ or ())
    if cfg.collect.workers < 1:
        raise WmtoolError("--workers must be at least 1")
    config.require_choice("env.obs", cfg.env.obs, ("state", "pixels", "both"))
    total = episodes or steps
    with Collection(cfg, out, policy, noise, say=lambda line: info(line, quiet)) as collection, \
            Tracker("collect", total, quiet) as tracker:

        def show(stats):
            done = stats.episodes if episodes else stats.steps
            mean = sum(stats.returns[-20:]) / max(1, len(stats.returns[-20:]))
            tracker.update(done, f"{stats.episodes} ep  {stats.fps:,.0f} steps/s  "
                                 f"return {mean:.1f}")

        result = collection.run(episodes, steps, on_step=throttled(show, 0.25))
        tracker.update(total, tracker.status)
    return finish(result, json_, quiet, lambda r: [
        f"wrote {r['episodes']} episodes, {r['steps']} steps ({r['env_steps_per_s']:,.0f} "
        f"steps/s), mean return {r['return_mean']:.2f}; {out} now holds {r['file_episodes']} "
        "episodes"])
