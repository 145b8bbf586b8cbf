"""`wmtool export`: a run's policy or weights as a file others load without wmtool."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.cli.common import (
    CheckpointOpt,
    JsonOpt,
    QuietOpt,
    RunOpt,
    ThreadsOpt,
    command,
    finish,
)

HELP = ("Export a run: the greedy acting policy (encoder + recurrent state + actor) as "
        "TorchScript or ONNX, or all weights as safetensors; the spec rides along as metadata.")
EXAMPLES = """Examples:

  wmtool train --algo dreamerv3 --env gym:CartPole-v1 --size debug --steps 600 --set train.prefill=300 --set train.train_ratio=32 --run-dir runs/ex --quiet

  wmtool export --run runs/ex --format torchscript --out exports/cartpole.pt --json

  wmtool export --run runs/ex --format onnx --out exports/cartpole.onnx

  wmtool export --run runs/ex --format safetensors --out exports/cartpole.safetensors

See examples/run_exported.py for running an exported policy with only torch or onnxruntime.
"""


@command
def export(
    run: RunOpt,
    format_: Annotated[str, typer.Option("--format", help="torchscript | onnx | safetensors")],
    out: Annotated[Path, typer.Option(help="file to write")],
    checkpoint: CheckpointOpt = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite --out if it exists")] = False,
    threads: ThreadsOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
):
    from wmtool.engine.export import FORMATS
    from wmtool.engine.export import export as write
    from wmtool.engine.loading import load_run
    from wmtool.errors import UsageError, WmtoolError

    if format_ not in FORMATS:  # before loading anything
        raise UsageError(f"--format {format_}: unknown", f"use one of {', '.join(FORMATS)}")
    if out.exists() and not force:
        raise WmtoolError(f"--out {out} exists", "choose another path, or add --force to "
                          "overwrite it; nothing was written")
    loaded = load_run(run, checkpoint, optimizers=False, threads=threads)
    meta = write(loaded, format_, out)
    result = {"run": str(run), "format": format_, "out": str(out),
              "bytes": out.stat().st_size, "metadata": meta}
    return finish(result, json_, quiet,
                  lambda r: [f"wrote {out} ({format_}, {r['bytes']:,} bytes)"])
