"""Video files -> an observation-only episode store (`wmtool data import-video`): every
file one episode of RGB frames resized to size x size, no actions, zero rewards."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wmtool import spaces
from wmtool.data.episode import Episode
from wmtool.errors import WmtoolError


def read_frames(path: Path, size: int, every: int = 1) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of a video (area-averaged resize, RGB)."""
    import imageio.v3 as iio
    from PIL import Image

    if not path.exists():
        raise WmtoolError(f"{path}: no such video file", "check the path")
    try:
        frames = iio.imread(path, index=None)
    except Exception as exc:  # imageio raises several types for unreadable files
        raise WmtoolError(f"{path} is not a readable video ({type(exc).__name__})",
                          "pass MP4, GIF or another format ffmpeg reads") from None
    frames = np.asarray(frames)
    if frames.ndim == 3:  # grey frames
        frames = np.repeat(frames[..., None], 3, -1)
    frames = frames[::every, ..., :3]
    resized = [np.asarray(Image.fromarray(f).resize((size, size), Image.BOX)) for f in frames]
    return np.stack(resized).astype(np.uint8)


def import_videos(videos: list[Path], out: Path, size: int, every: int = 1) -> dict:
    from wmtool.data.writer import EpisodeWriter, new_store, refuse_existing

    refuse_existing(out)  # before any video is decoded
    if size < 8 or every < 1:
        raise WmtoolError("--size must be at least 8 and --every at least 1")
    clips = [read_frames(Path(v), size, every) for v in videos]  # all readable before writing
    short = [str(v) for v, c in zip(videos, clips) if len(c) < 2]
    if short:
        raise WmtoolError(f"{short[0]} has fewer than 2 frames", "import longer videos")
    obs_space = {"image": spaces.Space((size, size, 3), "uint8")}
    steps = 0
    with new_store(out) as partial, EpisodeWriter(partial, "video", obs_space, None,
                                                  policy="video import",
                                                  has_action=False) as writer:
        for clip in clips:
            n = len(clip) - 1
            writer.add(Episode({"image": clip}, None, np.zeros(n, np.float32),
                               np.zeros(n, bool), np.zeros(n, bool)))
            steps += n
    return {"out": str(out), "episodes": len(clips), "steps": steps, "size": size}
