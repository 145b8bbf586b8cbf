"""`wmtool play`: drive a run's world model from a web page, beside the real env."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from wmtool.cli.common import CheckpointOpt, QuietOpt, RunOpt, ThreadsOpt, command
from wmtool.errors import UsageError, WmtoolError

HELP = ("Play inside a run's world model: a local web page shows the model's predicted frame "
        "live as you press keys (or as the run's policy acts), its predicted reward and "
        "continuation, and with --real the real env stepped with the same actions and the "
        "drift between them. Needs the `play` extra: pip install 'wmtool[play]'.")
EXAMPLES = """Examples (each serves until Ctrl-C):

  wmtool train --algo dreamerv3 --recipe dreamerv3__gym_cartpole_demo --size debug --steps 1100 --run-dir runs/play --quiet

  wmtool play --run runs/play --real

  wmtool play --run runs/play --real --record data/played.h5

  wmtool collect --env gym:CartPole-v1 --episodes 5 --out data/play-start.h5 --quiet

  wmtool play --run runs/play --data data/play-start.h5 --episode 3 --step 5
"""


@command
def play(
    run: RunOpt,
    checkpoint: CheckpointOpt = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: a free one)")] = 0,
    host: Annotated[str, typer.Option(help="address to listen on; anything but loopback "
                                      "lets other machines play")] = "127.0.0.1",
    open_: Annotated[bool, typer.Option("--open", help="open the page in a browser")] = False,
    real: Annotated[bool, typer.Option(help="step the real env with the same actions, beside "
                                       "the dream, and show the drift")] = False,
    record: Annotated[Optional[Path], typer.Option(
        help="write the real steps played to this new HDF5 store (implies --real)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="start from a stored episode")] = None,
    episode: Annotated[int, typer.Option(min=0, help="--data: the episode")] = 0,
    step: Annotated[int, typer.Option(min=0, help="--data: the step the dream starts "
                                      "after (the model filters the steps before)")] = 0,
    image: Annotated[Optional[Path], typer.Option(help="start from this image (PNG)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the env's first reset (then +1 per "
                                      "reset)")] = 0,
    fps: Annotated[float, typer.Option(min=1, max=120, help="frames per second")] = 30.0,
    mode: Annotated[str, typer.Option(help="greedy | sample: the model's dream and the "
                                      "policy's actions")] = "greedy",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
):
    try:
        from wmtool.play import server
    except ImportError as exc:
        raise WmtoolError(f"wmtool play needs the play extra ({exc.name} is missing)",
                          "pip install 'wmtool[play]'") from None
    from wmtool.engine.loading import load_run
    from wmtool.play.session import PlaySession, Start
    from wmtool.progress import info

    if mode not in ("greedy", "sample"):
        raise UsageError(f"--mode {mode}: unknown", "use greedy or sample")
    if data is not None and image is not None:
        raise UsageError("--data and --image both name a start", "give one of them")
    loaded = load_run(run, checkpoint, optimizers=False, threads=threads if threads else 1)
    start = Start(seed=seed, data=data, episode=episode, step=step,
                  image=_read_image(image) if image else None)
    session = PlaySession(loaded, start, real=real, record=record, mode=mode)
    if host not in ("127.0.0.1", "localhost", "::1"):
        info(f"warning: listening on {host}: anyone who can reach this machine can play "
             "this run", False)

    def ready(url: str) -> None:
        info(f"play {loaded.agent.algo} ({session.world.kind}) at {url}  (Ctrl-C stops)",
             quiet)
        print(url, flush=True)
        if open_:
            import webbrowser

            webbrowser.open(url)

    try:
        server.serve(session, host, port, fps, lambda line: info(line, quiet), ready)
    except OSError as exc:
        raise WmtoolError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                          "choose another --port (0 picks a free one)") from None
    finally:
        session.close()
    if record:
        info(f"wrote the real steps played to {record}", quiet)


def _read_image(path: Path):
    import numpy as np
    from PIL import Image

    if not path.exists():
        raise UsageError(f"--image {path}: no such file", "give a PNG or JPEG file")
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except OSError as exc:
        raise UsageError(f"--image {path} is not an image ({exc})", "give a PNG or JPEG "
                         "file") from None
