"""A training dataset: one store, a directory of stores, or a glob (`--data 'dir/*.h5'`), read
as one dataset. Every store must have the same observation and action spaces; episodes come
in file-name order, each store's in its own order."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterator

from wmtool.data.episode import Episode
from wmtool.data.store import EpisodeReader
from wmtool.errors import WmtoolError

GLOB = set("*?[")


def expand(spec: str | Path) -> list[Path]:
    """The stores `spec` names: a file, every *.h5 in a directory, or a glob's matches."""
    text = str(spec)
    if GLOB & set(text):
        paths = sorted(Path(p) for p in glob.glob(text))
        if not paths:
            raise WmtoolError(f"--data {text!r} matches no file",
                              "check the pattern (quote it, so the shell leaves it to wmtool)")
        return paths
    path = Path(text)
    if path.is_dir():
        paths = sorted(path.glob("*.h5"))
        if not paths:
            raise WmtoolError(f"--data {text}: the directory holds no .h5 store",
                              "pass a store, or a directory of stores written by `wmtool collect`")
        return paths
    return [path]


class Dataset:
    """The stores of `spec`, checked to agree: spaces, actions, sizes."""

    def __init__(self, spec: str | Path):
        self.spec = str(spec)
        self.paths = expand(spec)
        self.sizes: list[tuple[int, int]] = []  # (steps, episodes) per store
        first = None
        for path in self.paths:
            with EpisodeReader(path) as reader:
                facts = (reader.obs_space, reader.act_space, reader.has_action)
                self.sizes.append((reader.num_steps, len(reader)))
            if first is None:
                first, self.first = facts, path
                self.obs_space, self.act_space, self.has_action = facts
            elif facts != first:
                what = ["observation spaces", "action spaces", "actions (one has none)"][
                    next(i for i in range(3) if facts[i] != first[i])]
                raise WmtoolError(f"--data: {path} and {self.first} differ in their {what}",
                                  "train on stores collected from one env")

    @property
    def num_steps(self) -> int:
        return sum(s for s, _ in self.sizes)

    @property
    def num_episodes(self) -> int:
        return sum(e for _, e in self.sizes)

    @property
    def num_rows(self) -> int:
        """Replay rows: an episode of T steps has T+1 observations."""
        return self.num_steps + self.num_episodes

    def episode_lengths(self) -> Iterator[int]:
        """Every episode's length, from the stores' indexes alone."""
        for path in self.paths:
            with EpisodeReader(path) as reader:
                yield from reader.index["length"].tolist()

    def episodes(self) -> Iterator[tuple[str, Episode]]:
        """(where, episode) for every episode, store by store."""
        for path in self.paths:
            with EpisodeReader(path) as reader:
                for i, episode in enumerate(reader):
                    yield f"{path}: episode {i}", episode

    @property
    def name(self) -> str:
        """A short name: the store's, or the directory's of several."""
        return self.paths[0].stem if len(self.paths) == 1 else self.paths[0].parent.name

    def __str__(self) -> str:
        return self.spec if len(self.paths) > 1 else str(self.paths[0])
