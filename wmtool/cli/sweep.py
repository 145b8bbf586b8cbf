"""`wmtool sweep`: a grid of training runs, K at a time, resumable."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import JsonOpt, QuietOpt, SetOpt, command, finish

HELP = ("Train a grid of runs (seeds x --grid values x recipes), K at a time, each an ordinary "
        "run directory under --root with its threads pinned (one GPU each with --gpus). "
        "Running the same sweep again skips finished runs and resumes interrupted ones; "
        "the end compares the groups over seeds.")
EXAMPLES = """Examples:

  wmtool sweep --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 300 --seeds 0,1 --grid actor.lr=1e-4,3e-4 --set train.prefill=200 --set train.train_ratio=32 --set train.eval_every=150 --set train.eval_episodes=1 --root runs/sweep --jobs 2

  wmtool sweep --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 300 --seeds 0,1 --grid actor.lr=1e-4,3e-4 --set train.prefill=200 --set train.train_ratio=32 --set train.eval_every=150 --set train.eval_episodes=1 --root runs/sweep --jobs 2 --json
"""


@command
def sweep(
    algo: Annotated[str, typer.Option(help="algorithm, e.g. dreamerv3")],
    root: Annotated[Path, typer.Option(help="directory of the sweep: one run directory per "
                                       "grid point, and sweep.json")],
    env: Annotated[Optional[str], typer.Option(
        "--env", "-e", help="SUITE:TASK (see `wmtool envs`; default: the recipe's)")] = None,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0",
    grid: Annotated[Optional[list[str]], typer.Option(
        "--grid", help="key=v1,v2: one run per value (repeatable: the product)")] = None,
    recipe: Annotated[Optional[list[str]], typer.Option(
        "--recipe", help="experiment recipe (repeatable: one run per recipe)")] = None,
    size: Annotated[Optional[str], typer.Option(help="size preset for every run")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="agent steps per run")] = None,
    set_: SetOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", "--parallel", min=1, help="runs at a time "
                                      "(--parallel: its name before 0.3)")] = 1,
    threads: Annotated[int, typer.Option(min=0, help="torch threads per run (0: cores / "
                                         "--jobs)")] = 0,
    gpus: Annotated[Optional[str], typer.Option(help="comma-separated GPU ids: one per "
                                                "run slot (CUDA_VISIBLE_DEVICES)")] = None,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", help="send the runs to this Ray cluster (host:port, or auto) as tasks; run "
        "directories must be on a filesystem its nodes share")] = None,
    gpus_per_run: Annotated[float, typer.Option(min=0, help="--ray: GPUs each run "
                                                "asks for")] = 0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool.errors import UsageError, WmtoolError
    from wmtool.launch import sweep as sweeps
    from wmtool.progress import info
    from wmtool.runs import compare

    if not env and not recipe:
        raise UsageError("sweep needs an env", "give --env SUITE:TASK, or a --recipe that "
                         "names one")
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise WmtoolError(f"--seeds {seeds!r} is not a comma-separated list of integers",
                          "e.g. --seeds 0,1,2") from None
    train_args = (["--size", size] if size else []) + (["--steps", str(steps)] if steps else [])
    train_args += [a for s in set_ or [] for a in ("--set", s)]
    plan = sweeps.plan(root, algo, env, seed_list, grid or [], recipe or [], train_args)
    def show(run):
        info(f"{run.name}: {run.status}", quiet)

    if ray:
        from wmtool.launch.sweep_ray import execute_on_ray

        threads = threads or 1
        info(f"sweep {root}: {len(plan.runs)} runs as Ray tasks on {ray}, {threads} CPU(s) "
             "each", quiet)
        done = execute_on_ray(plan, ray, threads, gpus_per_run, show)
    else:
        info(f"sweep {root}: {len(plan.runs)} runs, {jobs} at a time", quiet)
        done = sweeps.execute(plan, jobs, threads, gpus.split(",") if gpus else None, show)
    runs = [root / r.name for r in done.runs if r.status == "finished"]
    result = {"root": str(root), "runs": [{"name": r.name, "status": r.status,
                                           "resumed": r.resumed} for r in done.runs],
              "finished": len(runs), "groups": compare(runs, "eval/return_mean") if runs else []}
    if len(runs) < len(done.runs):
        failed = [r.name for r in done.runs if r.status != "finished"]
        raise WmtoolError(f"{len(failed)} of {len(done.runs)} runs did not finish: "
                          f"{', '.join(failed)}", f"see {root}/<run>.log; rerun the same sweep "
                          "to resume them")
    return finish(result, json_, quiet, sweep_lines)


def sweep_lines(result: dict) -> list[str]:
    lines = [f"{result['finished']} runs finished under {result['root']}"]
    for g in result["groups"]:
        lines.append(f"{g['label']}: {len(g['runs'])} seeds, eval return at step "
                     f"{g['steps'][-1]:,}: {g['mean'][-1]:.1f} ± {g['std'][-1]:.1f}")
    return lines
