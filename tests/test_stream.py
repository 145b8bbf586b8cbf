"""Streaming replay (`train.replay: stream`) against the in-memory replay: the same rows for
the same window, real HDF5 stores (several, and a glob of them), uniform window starts, the
shares of data-parallel ranks, episode starts, and prefetching that never changes a batch."""
import json

import numpy as np
import pytest

from wmtool import spaces
from wmtool.data.dataset import Dataset
from wmtool.data.episode import Episode
from wmtool.data.replay import Replay
from wmtool.data.stream import StreamReplay, share
from wmtool.data.writer import EpisodeWriter
from wmtool.errors import WmtoolError

OBS = {"image": spaces.image(8, 8), "vector": spaces.vector(2)}
ACT = spaces.discrete(3)


def write(path, count: int, clock: int, seed: int, image_chunk: int = 4) -> tuple[list, int]:
    """Episodes whose rows are numbered in time (vector[:, 0]) from `clock` on."""
    rng, out = np.random.default_rng(seed), []
    with EpisodeWriter(path, "gym:Fake-v0", OBS, ACT, image_chunk=image_chunk) as w:
        for _ in range(count):
            n = int(rng.integers(1, 30))
            vector = np.stack([np.arange(clock, clock + n + 1), np.zeros(n + 1)], 1)
            ep = Episode({"image": rng.integers(0, 256, (n + 1, 8, 8, 3), np.uint8),
                          "vector": vector.astype(np.float32)}, rng.integers(0, 3, n),
                         rng.normal(size=n).astype(np.float32), rng.random(n) < 0.1,
                         np.zeros(n, bool))
            w.add(ep)
            out.append(ep)
            clock += n + 1
    return out, clock


@pytest.fixture
def stores(tmp_path):
    a, clock = write(tmp_path / "a.h5", 12, 0, 1)
    b, _ = write(tmp_path / "b.h5", 9, clock, 2)
    return tmp_path, a, b


def test_every_window_is_the_in_memory_replays_rows(stores):
    root, a, b = stores
    memory = Replay(OBS, ACT, 10_000)
    for ep in a + b:
        memory.add(ep)
    timeline = memory.state()
    stream = StreamReplay(Dataset(root / "*.h5"), ACT)
    assert len(stream) == len(memory)
    for length in (1, 5, 16):
        batch = stream.sample(64, length)
        for i, first in enumerate(batch["vector"][:, 0, 0].astype(int)):
            for k, v in batch.items():
                np.testing.assert_array_equal(v[i], timeline[k][first:first + length], k)
    stream.close()


def test_starts_are_uniform_over_the_windows_inside_each_store(stores):
    root, a, b = stores
    rows_a = sum(ep.length + 1 for ep in a)
    rows_b = sum(ep.length + 1 for ep in b)
    length = 6
    stream = StreamReplay(Dataset(root), ACT, seed=5)  # a directory of stores
    starts = np.concatenate([stream.sample(500, length)["vector"][:, 0, 0]
                             for _ in range(40)]).astype(int)
    counts = np.bincount(starts, minlength=rows_a + rows_b)
    valid = np.r_[np.arange(rows_a - length + 1), rows_a + np.arange(rows_b - length + 1)]
    assert set(np.flatnonzero(counts)) == set(valid)  # never across the two stores
    c = counts[valid]
    chi2, df = ((c - c.mean()) ** 2 / c.mean()).sum(), len(c) - 1
    assert chi2 < df + 5 * np.sqrt(2 * df)  # Pearson's test: uniform, far beyond chance
    stream.close()


def test_prefetching_never_changes_the_batches(stores):
    root, _, _ = stores
    one, two = (StreamReplay(Dataset(root / "*.h5"), ACT, seed=3) for _ in range(2))
    for length in (8, 8, 4, 8):  # a change of shape drops the batch read ahead
        x = one.sample(16, length)
        two._next = None  # never prefetched: read when asked
        y = two.sample(16, length)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert one.rng.bit_generator.state == two.rng.bit_generator.state
    one.close()
    two.close()


def test_ranks_share_the_episodes_without_overlap(stores):
    root, a, b = stores
    seen = []
    for rank in range(3):
        stream = StreamReplay(Dataset(root / "*.h5"), ACT, rank=rank, ranks=3)
        seen.append(set(stream.sample(400, 1)["vector"][:, 0, 0].astype(int)))
        stream.close()
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    rows = sum(ep.length + 1 for ep in a)
    cuts = [share(rows, r, 3) for r in range(3)]
    assert cuts[0][0] == 0 and cuts[-1][1] == rows
    assert all(cuts[r][1] == cuts[r + 1][0] for r in range(2))
    assert max(hi - lo for lo, hi in cuts) - min(hi - lo for lo, hi in cuts) <= 1
    one_episode = StreamReplay(Dataset(root / "a.h5"), ACT, rank=1, ranks=2)
    assert len(one_episode) == rows - rows // 2  # rows, not whole episodes, are shared
    one_episode.close()


def test_episode_starts_and_derived_columns(stores):
    root, a, b = stores
    stream = StreamReplay(Dataset(root / "*.h5"), ACT, seed=4)
    stream.derive({"double": lambda rows: rows["vector"][:, 0] * 2})
    starts = stream.sample_episode_starts(200)
    assert starts["is_first"].all() and (starts["prev_action"] == 0).all()
    firsts = {float(ep.obs["vector"][0, 0]) for ep in a + b}
    assert set(starts["vector"][:, 0, 0]) <= firsts
    np.testing.assert_array_equal(starts["double"], starts["vector"][..., 0] * 2)
    inside = stream.sample_within_episodes(8, 5, np.random.default_rng(0))
    assert not inside["is_first"][:, 1:].any()
    stream.close()


def test_a_dataset_of_stores_that_disagree_is_refused(tmp_path):
    write(tmp_path / "a.h5", 2, 0, 1)
    with EpisodeWriter(tmp_path / "b.h5", "gym:Fake-v0", {"vector": spaces.vector(2)}, ACT):
        pass
    with pytest.raises(WmtoolError, match="differ in their observation spaces"):
        Dataset(tmp_path / "*.h5")
    with pytest.raises(WmtoolError, match="matches no file"):
        Dataset(tmp_path / "nothing*.h5")


def _collect(cli, out, episodes: int, seed: int) -> None:
    res = cli("collect", "--env", "gym:CartPole-v1", "--obs", "pixels", "--episodes", episodes,
              "--seed", seed, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("algo,sets", [
    ("dreamerv3", ["--steps", "3"]),
    ("worldmodels", ["--set", "vae.steps=2", "--set", "mdnrnn.steps=2",
                     "--set", "mdnrnn.length=8"]),
])
def test_train_streams_a_glob_of_stores(cli, tmp_path, algo, sets):
    for i in range(2):
        _collect(cli, tmp_path / "data" / f"part{i}.h5", 3, i)
    run = tmp_path / "run"
    res = cli("train", "--algo", algo, "--data", str(tmp_path / "data" / "*.h5"), "--size",
              "debug", "--set", "train.replay=stream", "--set", "train.batch=2", "--set",
              "train.length=8", "--set", "runtime.threads=1", *sets, "--run-dir", run)
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "run.json").read_text())
    assert meta["replay"]["mode"] == "stream" and meta["replay"]["stores"] == 2
    assert meta["replay"]["rows_held"] == meta["replay"]["dataset_rows"]
    assert "streaming" in res.stderr


def test_memory_replay_says_what_it_leaves_out(cli, tmp_path):
    data = tmp_path / "cp.h5"
    _collect(cli, data, 6, 0)
    run = tmp_path / "run"
    res = cli("train", "--algo", "dreamerv3", "--data", data, "--size", "debug", "--steps", 2,
              "--set", "train.replay=memory", "--set", "train.replay_capacity=40", "--set",
              "train.batch=2", "--set", "train.length=8", "--quiet", "--run-dir", run)
    assert res.exit_code == 0, res.output
    facts = json.loads((run / "run.json").read_text())["replay"]
    assert facts["rows_held"] == 40 < facts["dataset_rows"]
    warning = next(line for line in res.stderr.splitlines() if "keeps the newest" in line)
    assert f"train.replay_capacity={facts['dataset_rows']}" in warning  # even with --quiet


def test_an_online_replay_larger_than_memory_is_refused_at_the_start(cli, tmp_path):
    res = cli("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--obs", "pixels",
              "--size", "debug", "--steps", 10**9, "--set", f"train.replay_capacity={10**9}",
              "--run-dir", tmp_path / "run")
    assert res.exit_code == 2
    line = [l for l in res.stderr.splitlines() if l.strip()][-1]
    assert "of memory is free" in line and "train.replay_capacity=" in line
