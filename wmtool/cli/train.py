"""`wmtool train`: train a world-model agent online, from a dataset, or resume a run."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool import config, parallel, rundir
from wmtool.cli.common import (
    EnvImportOpt,
    JsonOpt,
    ObsOpt,
    QuietOpt,
    RecipeOpt,
    SetOpt,
    command,
    env_flags,
    eval_lines,
    finish,
    run_with_progress,
)
from wmtool.errors import WmtoolError

HELP = "Train a world model and its behaviour: online in an env, or offline from --data."
EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 600 --set train.prefill=300 --set train.train_ratio=32 --run-dir runs/demo

  wmtool train --resume runs/demo --quiet

  wmtool collect --env gym:CartPole-v1 --episodes 10 --out data/cp.h5 --quiet

  wmtool train --algo dreamerv3 --data data/cp.h5 --size debug --steps 20 --run-dir runs/offline --json

  wmtool collect --env gym:CarRacing-v3 --policy brownian --episodes 2 --set env.time_limit=100 --out data/car.h5 --quiet

  wmtool train --algo worldmodels --data data/car.h5 --size debug --set vae.steps=20 --set mdnrnn.steps=10 --run-dir runs/wm --quiet

  wmtool train --algo tdmpc2 --env dmc:cartpole-balance --size debug --steps 300 --set train.prefill=200 --set train.prefill_updates=20 --set train.batch=16 --set train.train_ratio=64 --set train.eval_mode=prior --run-dir runs/td --quiet
"""


def _resume_conflicts(saved: config.Config, flags: dict, sets: list[str], recipe, size) -> list:
    if recipe or size:
        return ["--recipe" if recipe else "--size"]
    requested = config.load([("saved", saved.to_dict()), ("flags", flags)], sets)
    old, new = config.flatten(saved.to_dict()), config.flatten(requested.to_dict())
    return [f"{k}={new[k]!r} (saved {old[k]!r})" for k in new if new[k] != old[k]]


@command
def train(
    algo: Annotated[Optional[str], typer.Option(help="algorithm, e.g. dreamerv3")] = None,
    env: Annotated[Optional[str], typer.Option("--env", "-e", help="SUITE:TASK (see `wmtool envs`)")] = None,
    size: Annotated[Optional[str], typer.Option(help="size preset: debug, xs, s, m, l, xl")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="agent steps (env steps / env.action_repeat; offline: updates); with --resume: a larger budget for the run")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="random seed")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="run directory (default runs/...)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="train offline from this HDF5 dataset")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue this run directory")] = None,
    phase: Annotated[Optional[list[str]], typer.Option(
        help="train only this phase of a staged model (repeatable), e.g. vae, mdnrnn")] = None,
    nproc: Annotated[int, typer.Option(
        min=1, help="data-parallel processes on this machine (torch.distributed; batch x N); "
                    "multi-node: launch with torchrun, see docs/scale-out.md")] = 1,
    obs: ObsOpt = None,
    env_import: EnvImportOpt = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool.engine import distributed
    from wmtool.engine.session import TrainSession
    from wmtool.launch import torchrun

    if nproc > 1 and not parallel.launched():
        target = resume or run_dir
        torchrun.launch(nproc, sys.argv[1:], f"wmtool train --resume {target} --nproc {nproc}"
                        if target else f"resume with --resume RUN_DIR --nproc {nproc}")
        return None
    flags = env_flags(env, obs, env_import)
    if seed is not None:
        flags["seed"] = seed
    if steps is not None:
        flags["train"] = {"steps": steps}
    sets = list(set_ or ())
    if resume is not None:
        meta = rundir.read_meta(resume)
        if algo and algo != meta["algo"]:
            raise WmtoolError(f"--algo {algo} conflicts with the run's algorithm {meta['algo']}",
                              "drop --algo when resuming")
        if data and str(data) != meta.get("data"):
            raise WmtoolError("--data conflicts with the resumed run", "drop --data when resuming")
        saved = rundir.load_config(resume)
        if env_import and set(rundir.env_modules(saved.env)) <= set(env_import):
            rundir.TRUST["on"] = True  # the user named every module the run imports
        flags.pop("train", None)  # --steps extends the run's budget (checked when resumed)
        conflicts = _resume_conflicts(saved, flags, sets, recipe, size)
        if conflicts:
            raise WmtoolError(f"--resume {resume}: flags conflict with the saved config: "
                              f"{', '.join(conflicts)}",
                              "the saved config wins: drop those flags, or start a new run")
        world = distributed.join_if_launched(saved.runtime.device)
        session = TrainSession.resume(resume, quiet or not world.main, phase, steps)
    else:
        if not algo:
            raise WmtoolError("--algo is required for a new run", "e.g. --algo dreamerv3")
        cfg = config.compose(flags, recipe, sets, algo=algo, size=size)
        world = distributed.join_if_launched(cfg.runtime.device)
        # online runs use env.id (flag, recipe or --set); offline runs evaluate only with --env
        session = TrainSession.create(algo, cfg, run_dir, data, bool(env) or data is None,
                                      quiet or not world.main, phase)
    quiet = quiet or not world.main  # rank 0 speaks for a data-parallel run
    distributed.stop_together()  # ranks stop on a signal at a step they agree on
    with distributed.leaving():
        result = run_with_progress(session, "train", quiet)
    return finish(result, json_ and world.main, quiet, lambda r: [
        f"done: {r['agent_steps']:,} agent steps ({r['env_steps']:,} env steps), "
        f"{r['updates']:,} updates, {r['episodes']} episodes; run directory {r['run_dir']}",
        *eval_lines(r)])
