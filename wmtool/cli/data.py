"""`wmtool data info FILE`: what an episode store holds."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wmtool.cli.common import JsonOpt, command, emit_json
from wmtool.progress import console

app = typer.Typer(help="Inspect HDF5 episode stores.", no_args_is_help=True)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


@app.command("info", epilog="Example:\n\n  wmtool data info data/cartpole.h5 --json")
@command
def info(file: Annotated[Path, typer.Argument(help="HDF5 episode store")], json_: JsonOpt = False):
    """Episodes, steps, return statistics, spaces and size of an episode store."""
    from wmtool.data.store import EpisodeReader

    with EpisodeReader(file) as reader:
        summary = reader.info()
    if json_:
        emit_json(summary)
        return
    table = Table(title=str(file), show_header=False)
    ret = summary["return"]
    rows = [
        ("env", summary["env"]), ("policy", summary["policy"] or "-"),
        ("episodes", str(summary["episodes"])), ("steps", str(summary["steps"])),
        ("return", f"{ret['mean']:.2f} ± {ret['std']:.2f} (min {ret['min']:.2f}, "
                   f"max {ret['max']:.2f})" if ret else "-"),
        ("observations", ", ".join(f"{k} {v['shape']} {v['dtype']}"
                                   for k, v in summary["obs_space"].items())),
        ("actions", "none (observation-only)" if not summary["has_action"] else
         (f"discrete({summary['act_space']['n']})" if "n" in summary["act_space"]
          else f"continuous {summary['act_space']['shape']} in [-1, 1]")),
        ("size on disk", _human_bytes(summary["size_bytes"])),
        ("format", f"wmtool-episodes v{summary['format_version']}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
