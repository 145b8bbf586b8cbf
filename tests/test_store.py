"""HDF5 episode store: round trips, plain-h5py readability, recovery, bad files."""
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import episode_digest, file_digest

from wmtool import spaces
from wmtool.data.episode import Episode
from wmtool.data.store import EpisodeReader
from wmtool.data.superblock import clear_writer_mark, lookup3, writer_mark_set
from wmtool.data.writer import EpisodeWriter
from wmtool.errors import WmtoolError

IMAGE = {"image": spaces.image(16, 16)}
DICT = {"image": spaces.image(16, 16), "vector": spaces.vector(3)}
VECTOR = {"vector": spaces.vector(5)}


def fake_episode(obs_space, act_space, length, rng, terminal=True):
    obs = {}
    for key, space in obs_space.items():
        if space.is_image:
            obs[key] = rng.integers(0, 256, (length + 1, *space.shape), dtype=np.uint8)
        else:
            obs[key] = rng.normal(size=(length + 1, *space.shape)).astype(np.float32)
    action = np.stack([act_space.sample(rng) for _ in range(length)]) if act_space else None
    terminated = np.zeros(length, bool)
    truncated = np.zeros(length, bool)
    (terminated if terminal else truncated)[-1] = True
    return Episode(obs, action, rng.normal(size=length).astype(np.float32), terminated,
                   truncated, seed=int(rng.integers(1000)))


@pytest.mark.parametrize("obs_space,act_space", [
    (VECTOR, spaces.discrete(3)),
    (IMAGE, spaces.continuous(2)),
    (DICT, spaces.discrete(4)),
    (DICT, spaces.continuous(6)),
])
def test_round_trip(tmp_path, obs_space, act_space):
    rng = np.random.default_rng(0)
    episodes = [fake_episode(obs_space, act_space, n, rng, terminal=n % 2 == 0)
                for n in (1, 7, 40)]
    path = tmp_path / "d.h5"
    with EpisodeWriter(path, "gym:Fake-v0", obs_space, act_space, policy="random") as w:
        for ep in episodes:
            w.add(ep)
    with EpisodeReader(path) as r:
        assert len(r) == 3 and r.num_steps == 48
        assert r.obs_space == obs_space and r.act_space == act_space
        for ep, back in zip(episodes, r):
            assert episode_digest(ep) == episode_digest(back)
            assert back.seed == ep.seed
        info = r.info()
    assert info["return"]["mean"] == pytest.approx(np.mean([e.ret for e in episodes]))
    assert info["has_action"] and info["episodes"] == 3


def test_plain_h5py_reads_the_documented_layout(tmp_path):
    rng = np.random.default_rng(1)
    eps = [fake_episode(DICT, spaces.discrete(2), n, rng) for n in (3, 5)]
    path = tmp_path / "d.h5"
    with EpisodeWriter(path, "gym:Fake-v0", DICT, spaces.discrete(2)) as w:
        for ep in eps:
            w.add(ep)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "wmtool-episodes"
        row = f["episodes"][1]
        o0, s0, n = row["obs_start"], row["step_start"], row["length"]
        assert (o0, s0, n) == (4, 3, 5)
        np.testing.assert_array_equal(f["obs/image"][o0:o0 + n + 1], eps[1].obs["image"])
        np.testing.assert_array_equal(f["action"][s0:s0 + n], eps[1].action)
        assert f["obs/image"].compression == "gzip" and f["obs/image"].chunks[0] == 16


def test_observation_only_store(tmp_path):
    rng = np.random.default_rng(2)
    ep = fake_episode(IMAGE, None, 6, rng)
    with EpisodeWriter(tmp_path / "v.h5", "video:x", IMAGE, None, has_action=False) as w:
        w.add(ep)
    with EpisodeReader(tmp_path / "v.h5") as r:
        assert not r.has_action and r.act_space is None
        assert r.episode(0).action is None and r.info()["has_action"] is False


def test_append_reopens_and_continues(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "d.h5"
    first = [fake_episode(VECTOR, spaces.discrete(2), 4, rng) for _ in range(2)]
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, spaces.discrete(2)) as w:
        for ep in first:
            w.add(ep)
    more = fake_episode(VECTOR, spaces.discrete(2), 9, rng)
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, spaces.discrete(2)) as w:
        assert w.num_episodes == 2
        assert w.add(more) == 2
    with EpisodeReader(path) as r:
        assert [episode_digest(e) for e in r] == [episode_digest(e) for e in first + [more]]


@pytest.mark.parametrize("env_id,obs_space,act_space,needle", [
    ("gym:Other-v0", VECTOR, spaces.discrete(2), "holds episodes of gym:Fake-v0"),
    ("gym:Fake-v0", {"vector": spaces.vector(6)}, spaces.discrete(2), "observation space"),
    ("gym:Fake-v0", VECTOR, spaces.discrete(3), "action space"),
])
def test_append_mismatch_is_an_error_and_changes_nothing(tmp_path, env_id, obs_space,
                                                         act_space, needle):
    path = tmp_path / "d.h5"
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, spaces.discrete(2)) as w:
        w.add(fake_episode(VECTOR, spaces.discrete(2), 4, np.random.default_rng(0)))
    before = file_digest(path)
    with pytest.raises(WmtoolError, match=needle):
        EpisodeWriter(path, env_id, obs_space, act_space)
    assert file_digest(path) == before
    with EpisodeReader(path) as r:
        assert len(r) == 1


def test_second_writer_is_refused_while_first_is_open(tmp_path):
    path = tmp_path / "d.h5"
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, spaces.discrete(2)) as w:
        w.add(fake_episode(VECTOR, spaces.discrete(2), 3, np.random.default_rng(0)))
        with pytest.raises(WmtoolError, match="being written by another process"):
            EpisodeWriter(path, "gym:Fake-v0", VECTOR, spaces.discrete(2))
        with EpisodeReader(path) as r:  # readers are welcome meanwhile (SWMR)
            assert len(r) == 1


def test_uncommitted_rows_are_trimmed_on_reopen(tmp_path):
    """Data rows written without their index row (a crash mid-episode) are dropped."""
    rng = np.random.default_rng(4)
    path = tmp_path / "d.h5"
    kept = fake_episode(VECTOR, spaces.discrete(2), 5, rng)
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, spaces.discrete(2)) as w:
        w.add(kept)
    with h5py.File(path, "a") as f:  # simulate a half-written second episode
        for name, rows in (("obs/vector", 4), ("reward", 3), ("action", 3)):
            f[name].resize(f[name].shape[0] + rows, axis=0)
        f["episodes"].resize(2, axis=0)  # ... and a torn index row (zeros)
    set_writer_mark(path)  # ... by a writer that was killed (clean stores are not trimmed)
    with EpisodeReader(path) as r:  # readers ignore it before any repair
        assert len(r) == 1
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, spaces.discrete(2)) as w:
        assert w.recovered_rows == 4 + 3 + 3 + 1
        w.add(kept)
    with EpisodeReader(path) as r:
        assert [episode_digest(e) for e in r] == [episode_digest(kept)] * 2


def set_writer_mark(path):
    """Leave the superblock as a killed SWMR writer does: write + SWMR-write flags set."""
    head = bytearray(path.read_bytes()[:48])
    head[11] = 0x05
    head[44:48] = struct.pack("<I", lookup3(bytes(head[:44])))
    with open(path, "r+b") as fh:
        fh.write(head)


def test_lookup3_matches_hdf5_superblock_checksum(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("x", data=np.arange(10))
    head = path.read_bytes()[:48]
    assert lookup3(head[:44]) == struct.unpack("<I", head[44:48])[0]
    assert not writer_mark_set(path) and not clear_writer_mark(path)


def test_writer_mark_is_cleared_and_file_reopens(tmp_path):
    path = tmp_path / "s.h5"
    killed_writer = (
        "import h5py, numpy as np, os, signal\n"
        f"f = h5py.File({str(path)!r}, 'w', libver='latest')\n"
        "f.create_dataset('x', (0,), maxshape=(None,), dtype='i8', chunks=(8,))\n"
        "f.swmr_mode = True\n"
        "f['x'].resize(100, axis=0); f['x'][:] = np.arange(100); f.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", killed_writer])
    assert writer_mark_set(path)
    with pytest.raises(OSError):
        h5py.File(path, "r")
    assert clear_writer_mark(path)
    with h5py.File(path, "a") as g:  # the end-of-allocation was repaired too: appends are safe
        np.testing.assert_array_equal(g["x"][()], np.arange(100))
        g["x"].resize(200, axis=0)
        g["x"][100:] = -1
    with h5py.File(path, "r") as g:
        np.testing.assert_array_equal(g["x"][:100], np.arange(100))


@pytest.mark.parametrize("content,needle", [
    (b"this is not hdf5 at all\n" * 10, "not an HDF5 file"),
    (None, "not a wmtool episode store"),
    ("truncated", "corrupt or truncated"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, needle):
    path = tmp_path / "bad.h5"
    if content is None:
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=np.zeros(3))
    elif content == "truncated":
        rng = np.random.default_rng(5)
        with EpisodeWriter(path, "gym:Fake-v0", IMAGE, spaces.discrete(2)) as w:
            w.add(fake_episode(IMAGE, spaces.discrete(2), 50, rng))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:
        path.write_bytes(content)
    before = file_digest(path)
    with pytest.raises(WmtoolError, match=needle) as err:
        EpisodeReader(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    with pytest.raises(WmtoolError):
        EpisodeWriter(path, "gym:Fake-v0", IMAGE, spaces.discrete(2))
    assert file_digest(path) == before  # never damaged further


def test_background_writer_commits_batches_and_reports_errors(tmp_path):
    from wmtool.data.background import BackgroundWriter

    rng = np.random.default_rng(6)
    episodes = [fake_episode(IMAGE, spaces.discrete(2), n, rng) for n in range(1, 30)]
    with BackgroundWriter(EpisodeWriter(tmp_path / "b.h5", "gym:Fake-v0", IMAGE,
                                        spaces.discrete(2))) as writer:
        for ep in episodes:
            writer.add(ep)
        writer.flush()
        assert writer.num_episodes == len(episodes)
        bad = fake_episode(IMAGE, spaces.discrete(2), 4, rng)
        bad.action = bad.action[:2]
        writer.add(bad)
        with pytest.raises(ValueError, match="needs 4"):
            writer.flush()
    with EpisodeReader(tmp_path / "b.h5") as r:  # the bad episode wrote nothing
        assert [episode_digest(e) for e in r] == [episode_digest(e) for e in episodes]


def test_a_new_store_appears_under_its_name_only_when_complete(tmp_path):
    """Commands that make a new store (import-minari, import-video, drop-actions, salvage)
    write OUT.partial and rename it at the end: a failure part-way leaves nothing under
    either name, and an existing OUT is refused untouched."""
    from wmtool.data.writer import new_store
    from wmtool.errors import UsageError

    out = tmp_path / "new.h5"
    with pytest.raises(RuntimeError, match="stopped"):
        with new_store(out) as partial, EpisodeWriter(partial, "gym:Fake-v0", VECTOR,
                                                      spaces.discrete(2)) as w:
            w.add(fake_episode(VECTOR, spaces.discrete(2), 5, np.random.default_rng(0)))
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []
    with new_store(out) as partial, EpisodeWriter(partial, "gym:Fake-v0", VECTOR,
                                                  spaces.discrete(2)) as w:
        w.add(fake_episode(VECTOR, spaces.discrete(2), 5, np.random.default_rng(0)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.h5"]
    before = out.read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        with new_store(out):
            pass
    assert out.read_bytes() == before
