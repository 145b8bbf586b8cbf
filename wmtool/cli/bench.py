"""`wmtool bench`: update and acting speed of an algorithm on this machine."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from wmtool.cli.common import EnvOpt, JsonOpt, QuietOpt, RecipeOpt, SetOpt, command, finish

HELP = ("Time an algorithm's updates and acting here: ms per update, updates/s, replayed and "
        "imagined steps/s, achieved GFLOP/s against this machine's own matmul peak, compile "
        "and warm-up time apart, peak memory. Run it alone: another busy process halves it.")
EXAMPLES = """Examples (the reference setting is --size xs; on a GPU add --device cuda --compile on):

  wmtool bench --algo dreamerv3 --size debug --runs 2 --updates 2

  wmtool bench --algo dreamerv3 --size debug --runs 2 --updates 2 --compile on --json

  wmtool bench --algo tdmpc2 --env gym:Pendulum-v1 --size debug --runs 2 --updates 2 --json
"""


@command
def bench(
    algo: Annotated[str, typer.Option(help="algorithm (see `wmtool recipes list`)")],
    env: EnvOpt = "gym:CartPole-v1",
    recipe: RecipeOpt = None,
    size: Annotated[Optional[str], typer.Option(help="size preset: debug, xs, s, m, ... "
                                                "(TD-MPC2: 1m, 5m, ...)")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | auto")] = "cpu",
    compile_: Annotated[str, typer.Option("--compile", help="off | on | auto "
                                          "(train.compile)")] = "off",
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: one per "
                                         "available core)")] = 0,
    amp: Annotated[bool, typer.Option(help="bf16 autocast (where bf16 is native)")] = False,
    runs: Annotated[int, typer.Option(min=1, help="timed blocks (the median is "
                                      "reported)")] = 5,
    updates: Annotated[int, typer.Option(min=1, help="updates per timed block")] = 5,
    act_steps: Annotated[int, typer.Option(min=1, help="acting steps timed")] = 20,
    phase: Annotated[Optional[str], typer.Option(help="training phase to time (default: "
                                                 "the first)")] = None,
    random_steps: Annotated[int, typer.Option(min=1, help="random env steps that fill "
                                              "replay first")] = 3000,
    nproc: Annotated[int, typer.Option(min=1, help="data-parallel ranks on this machine "
                                       "(batch per rank; the cores shared)")] = 1,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool import parallel
    from wmtool.engine import distributed
    from wmtool.engine.bench import run_bench
    from wmtool.launch import torchrun
    from wmtool.progress import Tracker

    if nproc > 1 and not parallel.launched():
        return torchrun.launch(nproc, sys.argv[1:])
    world = distributed.join_if_launched(device)
    with distributed.leaving(), Tracker("bench", runs, quiet or not world.main) as tracker:
        tracker.phase(f"filling replay ({random_steps:,} random steps), counting FLOPs, "
                      "warming up")
        result = run_bench(algo, env, recipe, size, device, compile_, threads, amp, runs,
                           updates, act_steps, phase, list(set_ or []), random_steps,
                           on_block=lambda done: (tracker.phase(""),
                                                  tracker.update(done, "timed blocks")))
    if world.main:
        return finish(result, json_, quiet, bench_lines)


def bench_lines(r: dict) -> list[str]:
    bf16 = f" (bf16 {r['native_bf16']})" if r["amp_bf16"] else ""
    return [
        f"{r['algo']} {r['size'] or ''} on {r['env']}: {r['parameters']:,} parameters, batch "
        f"{r['batch']} x {r['length']}, {r['device']} {r['threads']} threads{bf16}, compile "
        f"{r['compile']} ({r['compile_mode'] or 'eager'})" + (
            f"; {r['ranks']} ranks (batch {r['effective_batch']} in all), one gradient "
            f"all-reduce of {r['gradient_mb']} MB {r['allreduce_ms']} ms"
            if r["ranks"] > 1 else ""),
        f"update: {r['ms_per_update']:.1f} ms = {r['updates_per_s']:.3g} updates/s "
        f"(range {r['updates_per_s_range'][0]:.3g}-{r['updates_per_s_range'][1]:.3g}); "
        f"{r['replayed_steps_per_s']:,} replayed, {r['imagined_state_steps_per_s']:,} "
        "imagined steps/s",
        f"compute: {r['gflop_per_update']} GFLOP per update, {r['achieved_gflops']} GFLOP/s = "
        f"{r['percent_of_fp32_matmul']}% of this machine's fp32 matmul "
        f"({r['matmul_gflops_fp32']} GFLOP/s; bf16 {r['matmul_gflops_bf16']}; "
        f"{r['cpu_capability']})",
        f"acting: {r['act_ms_per_step']:.2f} ms per step; warm-up {r['warmup_s']:.1f} s "
        f"(compile {r['compile_s']:.1f} s, {r['graphs_compiled']} graphs); peak memory "
        f"{r['peak_memory_mb']:,.0f} MB",
    ]
