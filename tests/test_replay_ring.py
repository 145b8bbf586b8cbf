"""Replay as a ring, against the simplest reference: one list of every row ever added, of
which replay holds the newest `capacity`. Contents after every add (across the wrap),
windows that are stretches of that timeline (never from the newest row to the oldest),
uniform starts, episode starts, derived columns and the device copy."""
import numpy as np
import pytest
import torch

from wmtool import spaces
from wmtool.data.episode import Episode
from wmtool.data.replay import Replay, episode_rows

OBS = {"vector": spaces.vector(2)}
ACT = spaces.discrete(3)


def episodes(count: int, seed: int = 0, longest: int = 40) -> list[Episode]:
    """Episodes whose rows are numbered in time (vector[:, 0]) across all of them."""
    rng, clock, out = np.random.default_rng(seed), 0, []
    for _ in range(count):
        n = int(rng.integers(1, longest))
        vector = np.stack([np.arange(clock, clock + n + 1), np.zeros(n + 1)], 1)
        clock += n + 1
        out.append(Episode({"vector": vector.astype(np.float32)}, rng.integers(0, 3, n),
                           rng.normal(size=n).astype(np.float32), np.zeros(n, bool),
                           np.zeros(n, bool)))
    return out


class Reference:
    """Every row in time order; replay should hold the newest `capacity` of them."""

    def __init__(self, capacity: int):
        self.capacity, self.rows = capacity, None

    def add(self, ep: Episode) -> None:
        new = episode_rows(ep, ACT)
        self.rows = new if self.rows is None else {
            k: np.concatenate([self.rows[k], v]) for k, v in new.items()}

    def held(self) -> dict[str, np.ndarray]:
        return {k: v[-self.capacity:] for k, v in self.rows.items()}


@pytest.mark.parametrize("capacity", [64, 100, 257, 5000])
def test_contents_after_every_add_match_the_reference(capacity):
    replay, reference = Replay(OBS, ACT, capacity), Reference(capacity)
    for ep in episodes(120):
        replay.add(ep)
        reference.add(ep)
        held, state = reference.held(), replay.state()
        assert state.keys() == held.keys()
        for k in held:
            np.testing.assert_array_equal(state[k], held[k], err_msg=k)
        assert len(replay) == len(held["reward"]) == sum(replay.episode_lengths)
        assert replay.allocated <= max(capacity, 1024)


def test_windows_are_stretches_of_time_and_never_cross_the_seam():
    replay = Replay(OBS, ACT, 100, seed=1)
    for ep in episodes(50):
        replay.add(ep)
    assert replay.oldest != 0  # the ring has wrapped
    time = replay.sample(4000, 12)["vector"][..., 0]
    assert (np.diff(time, axis=1) == 1).all()  # consecutive rows of one timeline
    newest = replay.state()["vector"][-1, 0]
    assert time.max() <= newest and time.min() >= newest - len(replay) + 1


def test_window_starts_are_uniform_over_the_rows_held():
    replay = Replay(OBS, ACT, 90, seed=2)
    for ep in episodes(30):
        replay.add(ep)
    length = 10
    first = replay.state()["vector"][0, 0]
    starts = replay.sample(40_000, length)["vector"][:, 0, 0] - first
    counts = np.bincount(starts.astype(int), minlength=len(replay) - length + 1)
    assert len(counts) == len(replay) - length + 1  # no start past the last full window
    mean = counts.mean()
    assert counts.min() > 0.75 * mean and counts.max() < 1.25 * mean  # ~5 sigma at 494


def test_episode_starts_skip_an_episode_whose_start_was_overwritten():
    replay = Replay(OBS, ACT, 100, seed=3)
    eps = episodes(40)
    for ep in eps:
        replay.add(ep)
    starts = {e.obs["vector"][0, 0] for e in eps}
    drawn = replay.sample_episode_starts(500)
    assert drawn["is_first"].all()
    assert set(drawn["vector"][:, 0, 0]) <= starts
    whole = len(replay.episode_lengths) - int(replay.oldest_cut)
    assert len(set(drawn["vector"][:, 0, 0])) == whole


def test_an_episode_longer_than_capacity_keeps_its_newest_rows():
    replay = Replay(OBS, ACT, 16)
    ep = episodes(1, longest=100)[0]
    while ep.length < 40:
        ep = episodes(1, seed=ep.length, longest=100)[0]
    replay.add(ep)
    np.testing.assert_array_equal(replay.state()["vector"], ep.obs["vector"][-16:])
    assert len(replay) == 16 and replay.oldest_cut


def test_derived_columns_and_the_device_copy_follow_the_wrap():
    host = Replay(OBS, ACT, 70, seed=4)
    dev = Replay(OBS, ACT, 70, seed=4, device="cpu")
    for ep in episodes(25):
        host.add(ep)
        dev.add(ep)
    for replay in (host, dev):
        replay.derive({"time2": lambda rows: rows["vector"][:, 0] * 2}, chunk=9)
    a, b = host.sample(64, 8), dev.sample(64, 8)
    np.testing.assert_array_equal(a["time2"], a["vector"][..., 0] * 2)
    for k in a:
        assert isinstance(b[k], torch.Tensor)
        np.testing.assert_array_equal(b[k].numpy(), a[k])
