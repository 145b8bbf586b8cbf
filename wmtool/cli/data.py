"""`wmtool data info FILE`: what an episode store holds."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wmtool.cli.common import JsonOpt, command, emit_json
from wmtool.progress import console

app = typer.Typer(help="Inspect and convert HDF5 episode stores (info, drop-actions, import-video).",
                  no_args_is_help=True)


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


@app.command("drop-actions", epilog="Example:\n\n  wmtool collect --env atari:pong --episodes 2 "
             "--set env.atari.max_frames=2000 --out data/pong.h5 --quiet\n\n"
             "  wmtool data drop-actions data/pong.h5 --out data/pong_frames.h5 --json")
@command
def drop_actions(file: Annotated[Path, typer.Argument(help="HDF5 episode store")],
                 out: Annotated[Path, typer.Option(help="new observation-only store")],
                 json_: JsonOpt = False):
    """Copy a store without its actions: observation-only data (what Genie learns from),
    while the original keeps the true actions for grading latent actions."""
    from wmtool.data.store import EpisodeReader, EpisodeWriter
    from wmtool.errors import WmtoolError

    if out.exists():
        raise WmtoolError(f"{out} exists", "choose a new --out path; nothing was written")
    with EpisodeReader(file) as reader:
        writer = EpisodeWriter(out, reader.env_id, reader.obs_space, None,
                               policy=f"{reader.policy} (actions dropped)", has_action=False)
        with writer:
            for episode in reader:
                episode.action = None
                writer.add(episode)
        result = {"in": str(file), "out": str(out), "episodes": len(reader)}
    _done(result, json_)


@app.command("import-video", epilog="Example (any MP4 will do; here one of a CartPole run):"
             "\n\n  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 300 "
             "--set train.prefill=200 --set train.train_ratio=32 --run-dir runs/iv --quiet"
             "\n\n  wmtool eval --run runs/iv --episodes 1 --video videos/cartpole.mp4 --quiet"
             "\n\n  wmtool data import-video videos/cartpole.mp4 --out data/cartpole_video.h5 "
             "--size 64 --json")
@command
def import_video(videos: Annotated[list[Path], typer.Argument(help="video files (MP4, GIF, ...)")],
                 out: Annotated[Path, typer.Option(help="new observation-only store")],
                 size: Annotated[int, typer.Option(help="frames resized to SIZE x SIZE")] = 64,
                 every: Annotated[int, typer.Option(help="keep every N-th frame")] = 1,
                 json_: JsonOpt = False):
    """Turn ordinary video files into an observation-only dataset: frames resized to
    SIZE x SIZE RGB, one episode per file, no actions or rewards."""
    from wmtool.data.video_import import import_videos

    result = import_videos(videos, out, size, every)
    _done(result, json_)


def _done(result: dict, json_: bool) -> None:
    if json_:
        emit_json(result)
    else:
        console.print(f"wrote {result['out']}: {result['episodes']} episodes")
