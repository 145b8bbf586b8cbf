"""Driving a latent-action world model (Genie) by hand: from a real start frame, each latent
action generates the next frame. `wmtool dream --actions 0,3,3,1` plays a fixed sequence;
`--interactive` reads keys 1..N from the terminal (q ends) and refreshes a PNG after every
key, which any image viewer shows live, headless machines included."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from wmtool.errors import WmtoolError
from wmtool.models.base import DrivenByLatentActions


def parse_actions(text: str, count: int) -> list[int]:
    try:
        actions = [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise WmtoolError(f"--actions {text!r}: not comma-separated integers",
                          f"e.g. --actions 0,3,3,1 (latent actions 0..{count - 1})") from None
    bad = [a for a in actions if not 0 <= a < count]
    if not actions or bad:
        raise WmtoolError(f"--actions {text!r}: latent actions are 0..{count - 1}",
                          "e.g. --actions 0,3,3,1")
    return actions


def keys(stream=None) -> Iterator[str]:
    """Single key presses from a terminal (no Enter needed), or characters of a pipe."""
    stream = stream or sys.stdin
    if stream.isatty():
        import termios
        import tty

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while True:
                yield stream.read(1)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    else:
        while True:
            char = stream.read(1)
            if not char:
                return
            yield char


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    return frame.repeat(scale, 0).repeat(scale, 1)


def write_png(path: Path, frame: np.ndarray) -> None:
    """Atomically replace `path`, so a viewer never shows half a frame."""
    import imageio.v3 as iio

    tmp = path.with_name(f".{path.name}.tmp.png")
    iio.imwrite(tmp, frame)
    tmp.replace(path)


class Driver:
    """The model's state while a person or a script drives it."""

    def __init__(self, wm, first: np.ndarray):
        if not isinstance(wm, DrivenByLatentActions):
            raise WmtoolError(f"{type(wm).__name__} is not driven by latent actions",
                              "--actions and --interactive work with --algo genie runs")
        self.wm, self.state = wm, wm.drive_start(first)
        self.frames = [np.asarray(first)]

    @property
    def actions(self) -> int:
        return self.wm.latent_action_count

    def step(self, action: int) -> np.ndarray:
        self.state, frame = self.wm.drive_step(self.state, action)
        self.frames.append(frame)
        return frame


def drive_interactive(driver: Driver, live: Path, scale: int, stream=None,
                      say=print) -> list[int]:
    """Keys 1..N take latent actions 0..N-1, q quits; the newest frame goes to `live`."""
    taken = []
    write_png(live, upscale(driver.frames[-1], scale))
    say(f"keys 1..{driver.actions}: latent actions, q: quit; frames refresh {live}")
    for key in keys(stream):
        if key in ("q", "Q", "\x04"):
            break
        if key.isdigit() and 1 <= int(key) <= driver.actions:
            driver.step(int(key) - 1)
            taken.append(int(key) - 1)
            write_png(live, upscale(driver.frames[-1], scale))
    return taken


def drive_run(loaded, actions: str | None, interactive: bool, render: Path,
              data: Path | None, env: str | None, seed: int, fps: int, scale: int,
              say: Callable[[str], None] = lambda line: None) -> dict:
    """`wmtool dream --actions/--interactive`: from a real start frame, one generated frame
    per latent action, written to `render` (a video, or a picture refreshed live)."""
    from wmtool.engine.dream import real_episodes
    from wmtool.video import write_video

    if render is None:
        raise WmtoolError("driving needs --render", "e.g. --render out.mp4 (or .png with "
                          "--interactive, refreshed after every key)")
    data = data or (Path(loaded.meta["data"]) if loaded.meta.get("data") else None)
    if data is None:
        raise WmtoolError("driving starts from a real frame", "pass --data FILE.h5")
    episodes = real_episodes(loaded, data, env, 1, seed, needs_actions=False)
    rng = np.random.default_rng(seed)
    episode = episodes[int(rng.integers(len(episodes)))]
    key = loaded.agent.wm.input_keys[0]
    first = episode.obs[key][int(rng.integers(len(episode.obs[key])))]
    driver = Driver(loaded.agent.wm, first)
    if interactive:
        live = render if render.suffix.lower() == ".png" else render.with_suffix(".png")
        taken = drive_interactive(driver, live, scale, say=say)
    else:
        taken = parse_actions(actions, driver.actions)
        for action in taken:
            driver.step(action)
    result = {"run": str(loaded.path), "actions": taken, "frames": len(driver.frames)}
    if render.suffix.lower() != ".png":
        write_video(render, [upscale(f, scale) for f in driver.frames], fps=fps)
        result["video"] = str(render)
    return result
