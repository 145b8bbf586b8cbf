"""`wmtool data info|verify|repair FILE`: what an episode store holds, whether it is sound,
and fixing it after a crash or damage (wmtool/data/maintenance.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from wmtool.cli.common import JsonOpt, command, finish
from wmtool.progress import human_bytes

app = typer.Typer(help="Inspect, check, repair and convert HDF5 episode stores (info, verify, "
                  "repair, drop-actions, import-video).", no_args_is_help=True)
EXAMPLE_STORE = "wmtool collect --env gym:CartPole-v1 --episodes 5 --out data/cartpole.h5 --quiet"


def _listed(rows: list, limit: int = 12) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" ... ({len(rows)} in all)" if len(rows) > limit else "")


@app.command("info", epilog="Example:\n\n  wmtool data info data/cartpole.h5 --json")
@command
def info(file: Annotated[Path, typer.Argument(help="HDF5 episode store")], json_: JsonOpt = False):
    """Episodes, steps, returns, spaces and size of an episode store.

    Also lists index rows it could not use (damaged, or left by a crashed writer) and
    episodes whose rewards, actions or vector observations hold NaN/inf."""
    from wmtool.data.maintenance import scan_store
    from wmtool.data.store import EpisodeReader

    with EpisodeReader(file, strict=False) as reader:  # report damage here, do not refuse
        summary = reader.info()
        found = scan_store(reader, full=False)
    summary["nonfinite_episodes"] = found["nonfinite_episodes"]
    summary["nonfinite_fields"] = found["nonfinite_fields"]
    finish(summary, json_, False, lambda found: _info_lines(file, found))


def _info_lines(file: Path, summary: dict) -> list:
    """`data info`'s table, and what to run when the index is damaged."""
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
        ("size on disk", human_bytes(summary["size_bytes"])),
        ("format", f"wmtool-episodes v{summary['format_version']}"
                   + ("" if summary["checksums"] else " (no chunk checksums: written before "
                                                      "wmtool added them)")),
    ]
    if summary["writer_mark"]:
        rows.append(("writer", "a writer has it open, or died holding it (`wmtool data "
                               "repair` clears a dead writer's mark)"))
    if summary["unusable_index_rows"]:
        unusable, problems = summary["unusable_index_rows"], summary["index_problems"]
        rows.append(("unusable index rows", "; ".join(problems[:3]) + (
            f" ({len(unusable)} rows in all)" if len(unusable) > 3 else "") if problems else
            f"{_listed(unusable)}: an unfinished commit (a crashed writer)"))
    if summary["nonfinite_episodes"]:
        rows.append(("non-finite data", "episodes " + _listed(summary["nonfinite_episodes"])
                     + " hold NaN/inf"))
    for key, value in rows:
        table.add_row(key, value)
    damaged = [f"{file}: damaged index rows; run `wmtool data verify {file}` and "
               f"`wmtool data repair {file}`"] if summary["index_problems"] else []
    return [table, *damaged]




@app.command("verify", epilog=f"Example:\n\n  {EXAMPLE_STORE}\n\n"
             "  wmtool data verify data/cartpole.h5 --json")
@command
def verify(file: Annotated[Path, typer.Argument(help="HDF5 episode store")],
           json_: JsonOpt = False):
    """Check every index row and every chunk of every episode; exit 1 if any is damaged.

    Lists damaged episodes (a chunk fails its checksum or cannot be read), damaged index
    rows, and episodes holding NaN/inf (reported; they do not fail the check)."""
    from wmtool.data.maintenance import verify as run_verify

    _report_check(run_verify(file), _verify_lines, json_)


def _report_check(result: dict, lines, json_: bool) -> None:
    """verify's and repair's output; exit 1 when the store is (still) damaged."""
    finish(result, json_, False, lines)
    if not result["ok"]:
        raise typer.Exit(1)


def _verify_lines(r: dict) -> list[str]:
    lines = []
    if r["index_problems"]:
        lines.append(f"damaged index rows: {'; '.join(r['index_problems'][:5])}"
                     + (f" ... ({len(r['index_problems'])} in all)"
                        if len(r["index_problems"]) > 5 else ""))
    if r["damaged_episodes"]:
        lines.append(f"damaged episodes (a chunk fails its checksum or cannot be read): "
                     f"{_listed(r['damaged_episodes'])}")
    if r["nonfinite_episodes"]:
        lines.append(f"episodes holding NaN/inf: {_listed(r['nonfinite_episodes'])}")
    if r["rows_past_end"]:
        lines.append(f"{r['rows_past_end']} rows after the last episode that no index row "
                     "commits" + (" (a crashed writer's unfinished commit; the next writer or "
                                  "`wmtool data repair` drops them)" if r["writer_mark"] else
                                  ", and no writer crashed: damage"))
    if r["uncommitted_index_rows"]:
        lines.append(f"{r['uncommitted_index_rows']} index rows of an unfinished commit "
                     "(a crashed writer; the next writer or `wmtool data repair` drops them)")
    if not r["checksums"]:
        lines.append("note: this store predates chunk checksums; bit flips in it go unnoticed")
    verdict = "ok" if r["ok"] else "DAMAGED"
    lines.append(f"{r['path']}: {verdict}, {r['episodes']} readable episodes"
                 + ("" if r["ok"] else f"; run `wmtool data repair {r['path']}` for damaged "
                    f"index rows, `wmtool data salvage {r['path']} --out NEW.h5` for damaged "
                    "episodes"))
    return lines


@app.command("repair", epilog=f"Example:\n\n  {EXAMPLE_STORE}\n\n"
             "  wmtool data repair data/cartpole.h5 --dry-run\n\n"
             "  wmtool data repair data/cartpole.h5 --json")
@command
def repair(file: Annotated[Path, typer.Argument(help="HDF5 episode store")],
           dry_run: Annotated[bool, typer.Option(
               "--dry-run", help="say what would change; change nothing")] = False,
           drop_trailing: Annotated[bool, typer.Option(
               "--drop-trailing", help="also remove rows past the last episode when no "
               "writer crashed (back the file up first: they may be a damaged episode's)")
           ] = False,
           json_: JsonOpt = False):
    """Fix a store in place after a crash or damage; exit 1 if damage remains.

    Clears a dead writer's mark (so plain h5py opens the file again), rebuilds a damaged
    index row from its neighbours when that is unambiguous, and trims the rows of an
    unfinished commit after a crash, saying what it trims before it does. It never deletes
    a committed step. Episodes in a chunk that fails its checksum are listed: `wmtool data
    salvage` copies what can be trusted to a new file. Refused while a writer is running."""
    from wmtool.data.maintenance import repair as run_repair

    say = (lambda line: None) if json_ else \
        (lambda line: typer.echo(("would: " if dry_run else "") + line, err=True))
    _report_check(run_repair(file, dry_run, drop_trailing, say), _repair_lines, json_)


def _repair_lines(r: dict) -> list[str]:
    lines = []
    if r["writer_mark_cleared"]:
        lines.append("cleared a dead writer's mark")
    verb = "would rebuild" if r["dry_run"] else "rebuilt"
    for fix in r["rebuilt_index_rows"]:
        changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in fix["changed"].items())
        lines.append(f"{verb} index row {fix['row']} from its neighbours ({changed})")
    if r["trimmed_rows"]:
        lines.append(f"{'would trim' if r['dry_run'] else 'trimmed'} {r['trimmed_rows']} rows "
                     "after the last episode")
    for problem in r["unrepaired"]:
        lines.append(f"cannot repair: {problem}")
    if r["damaged_episodes"]:
        lines.append(f"damaged episodes (a chunk fails its checksum): "
                     f"{_listed(r['damaged_episodes'])}; `wmtool data salvage {r['path']} "
                     "--out NEW.h5` copies every episode that can be trusted")
    if len(lines) == 0:
        lines.append("nothing to repair")
    state = "ok" if r["ok"] else "still damaged"
    lines.append(f"{r['path']}: {state}{' (dry run: nothing changed)' if r['dry_run'] else ''}"
                 f", {r['episodes']} episodes")
    return lines


@app.command("salvage", epilog=f"Example:\n\n  {EXAMPLE_STORE}\n\n"
             "  wmtool data salvage data/cartpole.h5 --out data/cartpole-salvaged.h5 --json")
@command
def salvage(file: Annotated[Path, typer.Argument(help="HDF5 episode store (only read)")],
            out: Annotated[Path, typer.Option(help="new store for the episodes kept")],
            json_: JsonOpt = False):
    """Copy every episode that can be trusted to a new store; exit 1 if any was lost.

    Episodes in a chunk that fails its checksum are decoded past it and kept when each of
    their columns matches its per-episode CRC-32 (stores written after 0.2.0), and an
    episode whose index row is damaged is found again by that CRC-32; the rest are listed
    by episode with the reason."""
    from wmtool.data.salvage import salvage as run_salvage

    _report_check(run_salvage(file, out), _salvage_lines, json_)


def _salvage_lines(r: dict) -> list[str]:
    lines = []
    if r["recovered_from_damaged_chunks"]:
        lines.append(f"recovered from chunks that fail their checksum (each matched to its "
                     f"own CRC-32): {_listed(r['recovered_from_damaged_chunks'])}")
    if r["rebuilt_index_rows"]:
        lines.append(f"found again past a damaged index row (length from its own CRC-32): "
                     f"{_listed(r['rebuilt_index_rows'])}")
    for row, why in list(r["lost"].items())[:12]:
        lines.append(f"lost episode {row}: {why}")
    if len(r["lost"]) > 12:
        lines.append(f"... {len(r['lost'])} episodes lost in all (--json lists them)")
    lines.append(f"wrote {r['out']}: {r['copied']} of {r['index_rows']} episodes"
                 + ("; use it in place of the damaged store (the lost episodes' own bytes are "
                    "gone: collect them again if you need them)" if r["lost"] else ""))
    return lines


@app.command("drop-actions", epilog="Example:\n\n  wmtool collect --env atari:pong --episodes 2 "
             "--set env.atari.max_frames=2000 --out data/pong.h5 --quiet\n\n"
             "  wmtool data drop-actions data/pong.h5 --out data/pong_frames.h5 --json")
@command
def drop_actions(file: Annotated[Path, typer.Argument(help="HDF5 episode store")],
                 out: Annotated[Path, typer.Option(help="new observation-only store")],
                 json_: JsonOpt = False):
    """Copy a store without its actions: observation-only data (what Genie learns from),
    while the original keeps the true actions for grading latent actions."""
    from wmtool.data.store import EpisodeReader
    from wmtool.data.writer import EpisodeWriter, new_store, refuse_existing

    refuse_existing(out)
    with EpisodeReader(file) as reader, new_store(out) as partial:
        writer = EpisodeWriter(partial, reader.env_id, reader.obs_space, None,
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
    finish(result, json_, False, lambda r: [f"wrote {r['out']}: {r['episodes']} episodes"])


EXPORT_EXAMPLES = """Example (needs `pip install 'wmtool[minari]'`):

  wmtool collect --env gym:CartPole-v1 --episodes 5 --out data/cartpole.h5 --quiet

  wmtool data export-minari data/cartpole.h5 --out data/minari --id wmtool/CartPole/random-v0 --json
"""
IMPORT_EXAMPLES = """Example (a dataset `wmtool data export-minari` wrote; or an id such as D4RL/door/human-v2):

  wmtool data import-minari data/minari/wmtool/CartPole/random-v0 --out data/from_minari.h5 --json
"""


@app.command("export-minari", epilog=EXPORT_EXAMPLES)
@command
def export_minari(file: Annotated[Path, typer.Argument(help="HDF5 episode store")],
                  out: Annotated[Path, typer.Option(help="Minari datasets root to write into")],
                  id_: Annotated[Optional[str], typer.Option(
                      "--id", help="NAMESPACE/ENV/NAME-vN (default wmtool/<task>/<file>-v0)")]
                  = None,
                  json_: JsonOpt = False):
    """Write a store as a Minari dataset (HDF5 backend, images raw, episode seeds kept);
    `minari.load_dataset(ID)` reads it with MINARI_DATASETS_PATH=OUT."""
    from wmtool.data.minari_io import export_minari as export

    result = export(file, out, id_)
    return finish(result, json_, False, lambda r: [
        f"{r['episodes']} episodes ({r['steps']:,} steps) -> Minari dataset {r['dataset_id']} "
        f"under {r['out']}"])


@app.command("import-minari", epilog=IMPORT_EXAMPLES)
@command
def import_minari(source: Annotated[str, typer.Argument(
                      help="a Minari dataset directory, or a dataset id (a local copy under "
                           "MINARI_DATASETS_PATH first, else Minari's remote)")],
                  out: Annotated[Path, typer.Option(help="HDF5 episode store to create")],
                  json_: JsonOpt = False):
    """Convert a Minari dataset into a wmtool store that `train --data` learns from."""
    from wmtool.data.minari_io import import_minari as convert

    result = convert(source, out)
    return finish(result, json_, False, lambda r: [
        f"{r['dataset_id']}: {r['episodes']} episodes ({r['steps']:,} steps) -> {r['out']}"])
