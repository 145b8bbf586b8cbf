"""`wmtool recipes list|show`: the YAML recipes a run is composed from."""
from __future__ import annotations

from typing import Annotated

import typer

from wmtool.cli.common import JsonOpt, command, finish
from wmtool.config import recipes_dir
from wmtool.errors import WmtoolError

app = typer.Typer(help="List and show config recipes.", no_args_is_help=True)


def _all() -> dict[str, str]:
    root = recipes_dir()
    return {str(p.relative_to(root).with_suffix("")): str(p)
            for p in sorted(root.rglob("*.yaml"))}


@app.command("list", epilog="Example:\n\n  wmtool recipes list --json")
@command
def list_(json_: JsonOpt = False):
    """Every recipe file (defaults, sizes, suite/*, algo/*, exp/*)."""
    finish(_all(), json_, False, list)


@app.command("show", epilog="Example:\n\n  wmtool recipes show suite/dmc")
@command
def show(name: Annotated[str, typer.Argument(help="recipe name from `wmtool recipes list`")]):
    """Print one recipe file."""
    names = _all()
    if name not in names:
        raise WmtoolError(f"unknown recipe '{name}'", f"valid: {', '.join(names)}")
    print(open(names[name]).read(), end="")
