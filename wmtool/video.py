"""Video files (mp4 through imageio's ffmpeg, or gif) from uint8 frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wmtool.atomic import written_whole
from wmtool.errors import WmtoolError


def write_video(path: str | Path, frames: list[np.ndarray] | np.ndarray, fps: int = 20) -> Path:
    import imageio.v2 as imageio

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise WmtoolError(f"no frames to write to {path}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise WmtoolError(f"{path}: unknown video format '{suffix}'", "use .mp4 or .gif")
    with written_whole(path) as tmp:
        if suffix == ".gif":
            imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
        else:
            h, w = frames.shape[1:3]
            pad = ((0, 0), (0, (-h) % 16), (0, (-w) % 16), (0, 0))  # codec macroblocks
            imageio.mimwrite(tmp, list(np.pad(frames, pad)), fps=fps, codec="libx264",
                             quality=8, macro_block_size=16)
    return path
