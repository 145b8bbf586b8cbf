"""`wmtool envs`: the environment suites, with examples or every task of one suite; and
`wmtool envs check ENV`: what wmtool makes of an env, and what would break training."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from wmtool.cli.common import EnvImportOpt, JsonOpt, ObsOpt, SetOpt, command, env_flags, finish
from wmtool.registry import SUITES, lookup

HELP = ("List environment suites with example ids, or every task of one suite; `check` an "
        "env (yours too: --env gym:package.module:ClassName) before training on it.")
EXAMPLES = "Examples:\n\n  wmtool envs\n\n  wmtool envs --suite dmc --json"
CHECK_EXAMPLES = """Examples:

  wmtool envs check gym:CartPole-v1

  wmtool envs check dmc:cartpole-swingup --obs both --json

  wmtool envs --suite dmc --json
"""

app = typer.Typer(help=HELP)


@app.callback(invoke_without_command=True, epilog=EXAMPLES)
@command
def envs(ctx: typer.Context,
         suite: Annotated[Optional[str], typer.Option(help="list every task of this suite")] = None,
         json_: JsonOpt = False):
    if ctx.invoked_subcommand:
        return
    if suite:
        entry = lookup(SUITES, suite, "env suite")
        tasks = [f"{suite}:{t}" for t in entry.load(entry.tasks)()]
        finish({"suite": suite, "tasks": tasks}, json_, False, lambda r: r["tasks"])
        return
    finish({name: {"summary": e.summary, "examples": list(e.examples)}
            for name, e in SUITES.items()}, json_, False, lambda suites: [_table(suites)])


@app.command("check", epilog=CHECK_EXAMPLES)
@command
def check(
    env: Annotated[str, typer.Argument(help="SUITE:TASK, e.g. gym:CartPole-v1 or "
                                       "gym:package.module:ClassName")],
    obs: ObsOpt = None,
    env_import: EnvImportOpt = None,
    episodes: Annotated[int, typer.Option(min=1, help="random episodes to play")] = 3,
    cap: Annotated[int, typer.Option(min=1, help="steps at most per episode")] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="seed of the resets and actions")] = 0,
    timeout: Annotated[float, typer.Option(
        min=0.1, help="seconds any one call into the env (make, reset, step) may take")] = 60.0,
    set_: SetOpt = None,
    json_: JsonOpt = False,
):
    """Spaces as wmtool sees them (and as the env declares them), which keys feed the image
    and the vector encoder, rewards, how random episodes end (terminated, truncated, cut at
    --cap), steps/s, whether a seed replays an episode exactly, and every problem found with
    its fix. Exit code 1 when there are problems."""
    from wmtool import config
    from wmtool.envs.check import check as check_env
    from wmtool.envs.check import summary_lines
    from wmtool.envs.gym import import_modules

    cfg = config.load([("flags", env_flags(env, obs, env_import))], list(set_ or ()))
    import_modules(cfg.env.imports)
    report = check_env(cfg.env, episodes, cap, seed, timeout)
    finish(report, json_, False, summary_lines)
    if report["problems"]:
        raise typer.Exit(1)


def _table(suites: dict) -> Table:
    table = Table(title="environment suites (--env SUITE:TASK)")
    for column in ("suite", "what", "examples"):
        table.add_column(column)
    for name, entry in suites.items():
        table.add_row(name, entry["summary"], ", ".join(entry["examples"]))
    return table
