"""Faults of the episode store, reproduced with real files and real `wmtool` processes:
a damaged index row, a crashed-then-truncated store, a full disk, flipped bits, NaN data,
the writer thread's niceness, and plain h5py after a crash."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import BIN, episode_digest, file_digest, run_wmtool
from test_store import DICT, VECTOR, fake_episode

from wmtool import spaces
from wmtool.data.episode import Episode
from wmtool.data.store import EpisodeReader, nonfinite_fields
from wmtool.data.superblock import writer_mark_set
from wmtool.data.writer import EpisodeWriter
from wmtool.errors import WmtoolError

ACT = spaces.discrete(2)


def make_store(path, n, obs_space=VECTOR, seed=0, lengths=(3, 30)):
    rng = np.random.default_rng(seed)
    episodes = [fake_episode(obs_space, ACT, int(rng.integers(*lengths)), rng) for _ in range(n)]
    with EpisodeWriter(path, "gym:Fake-v0", obs_space, ACT) as w:
        w.add_many(episodes)
    return [episode_digest(e) for e in episodes]


def digests(path):
    with EpisodeReader(path) as r:
        return [episode_digest(e) for e in r]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def collect_cmd(out, *extra):
    return [str(BIN), "collect", "--env", "gym:CartPole-v1", "--obs", "both", "--steps",
            "1000000", "--out", str(out), "--quiet", *extra]


def kill_collect_after(path, episodes, timeout=120):
    """Start a real collect, let it commit at least `episodes`, kill -9 it."""
    proc = subprocess.Popen(collect_cmd(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            with contextlib.suppress(WmtoolError, OSError):
                with EpisodeReader(path) as r:
                    if len(r) >= episodes:
                        break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no {episodes} episodes after {timeout}s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert writer_mark_set(path)


# -- 1. one damaged index row ---------------------------------------------------------------
def test_damaged_index_row_is_refused_reported_and_rebuilt(tmp_path):
    path = tmp_path / "d.h5"
    original = make_store(path, 200)
    with h5py.File(path, "a") as f:
        row = f["episodes"][19]
        true_length = int(row["length"])
        row["length"] = 10**9
        f["episodes"][19] = row
    before = file_digest(path)
    with pytest.raises(WmtoolError, match="index row 19 of 200 is damaged") as err:
        EpisodeReader(path)
    assert "wmtool data repair" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(WmtoolError, match="index row 19 of 200 is damaged"):
        EpisodeWriter(path, "gym:Fake-v0", VECTOR, ACT)  # an append must not "recover" it
    assert file_digest(path) == before

    info = run_wmtool("data", "info", path, "--json")  # info reports, does not refuse
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["episodes"] == 199 and summary["unusable_index_rows"] == [19]
    assert "length 1000000000" in summary["index_problems"][0]
    human = run_wmtool("data", "info", path)
    assert human.returncode == 0 and "unusable index rows" in human.stdout

    verify = run_wmtool("data", "verify", path, "--json")
    assert verify.returncode == 1 and json.loads(verify.stdout)["index_problems"]

    repair = run_wmtool("data", "repair", path, "--json")
    assert repair.returncode == 0, repair.stderr
    fixed = json.loads(repair.stdout)
    assert fixed["ok"] and fixed["rebuilt_index_rows"][0]["row"] == 19
    assert fixed["rebuilt_index_rows"][0]["changed"] == {"length": [10**9, true_length]}
    assert fixed["trimmed_rows"] == 0
    assert digests(path) == original  # all 200, byte for byte
    assert run_wmtool("data", "verify", path).returncode == 0


def test_adjacent_damaged_rows_are_reported_not_guessed(tmp_path):
    path = tmp_path / "d.h5"
    make_store(path, 50)
    with h5py.File(path, "a") as f:
        rows = f["episodes"][10:12]
        rows["step_start"] = 7
        f["episodes"][10:12] = rows
    before = file_digest(path)
    res = run_wmtool("data", "repair", path, "--json")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert not out["ok"] and len(out["unrepaired"]) == 2 and out["trimmed_rows"] == 0
    assert file_digest(path) == before  # nothing trimmed, nothing rewritten


def test_leftover_rows_in_a_clean_store_are_kept_until_asked(tmp_path):
    """Rows past the last episode with no crash to explain them: the writer refuses rather
    than deleting, verify calls it damage, repair keeps them (they may be a damaged
    episode's steps) and says how to drop them; --dry-run says what it would trim and
    changes nothing; --drop-trailing removes them and says so first."""
    path = tmp_path / "d.h5"
    original = make_store(path, 5)
    with h5py.File(path, "a") as f:
        for name in ("obs/vector", "action", "reward", "terminated", "truncated"):
            f[name].resize(f[name].shape[0] + 3, axis=0)
    with pytest.raises(WmtoolError, match="rows after its last episode, but no writer"):
        EpisodeWriter(path, "gym:Fake-v0", VECTOR, ACT)
    before = file_digest(path)
    verify = run_wmtool("data", "verify", path, "--json")
    assert verify.returncode == 1 and json.loads(verify.stdout)["rows_past_end"] == 15
    kept = run_wmtool("data", "repair", path)
    assert kept.returncode == 1 and "--drop-trailing" in kept.stdout
    assert file_digest(path) == before
    dry = run_wmtool("data", "repair", path, "--drop-trailing", "--dry-run")
    assert dry.returncode == 0 and "would: trimming 15 rows" in dry.stderr
    assert file_digest(path) == before
    res = run_wmtool("data", "repair", path, "--drop-trailing")
    assert res.returncode == 0 and "trimming 15 rows after the last episode" in res.stderr
    assert "trimmed 15 rows" in res.stdout and digests(path) == original
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, ACT) as w:
        assert w.recovered_rows == 0 and w.num_episodes == 5


def test_a_damaged_last_row_is_rebuilt_never_trimmed(tmp_path):
    """The last index row's length halved still fits the data and reads as one episode
    followed by an unfinished one. Its stored return gives it away: verify calls it damaged,
    the writer refuses, and repair restores the length instead of trimming the steps."""
    path = tmp_path / "d.h5"
    original = make_store(path, 20, lengths=(20, 30))
    with h5py.File(path, "a") as f:
        row = f["episodes"][19]
        true_length = int(row["length"])
        row["length"] = true_length // 2
        f["episodes"][19] = row
    verify = run_wmtool("data", "verify", path, "--json")
    found = json.loads(verify.stdout)
    assert verify.returncode == 1 and "row 19: return" in found["index_problems"][0]
    with pytest.raises(WmtoolError, match="index row 19 of 20 is damaged"):
        EpisodeWriter(path, "gym:Fake-v0", VECTOR, ACT)
    res = run_wmtool("data", "repair", path, "--json")
    assert res.returncode == 0, res.stdout
    fixed = json.loads(res.stdout)
    assert fixed["trimmed_rows"] == 0
    assert fixed["rebuilt_index_rows"][0]["changed"] == {"length": [true_length // 2,
                                                                    true_length]}
    assert digests(path) == original
    assert run_wmtool("data", "verify", path).returncode == 0


def test_failed_commit_leaves_no_rows_behind(tmp_path):
    path = tmp_path / "d.h5"
    original = make_store(path, 3)
    bad = fake_episode(VECTOR, ACT, 4, np.random.default_rng(9))
    bad.reward = np.zeros((4, 2), np.float32)  # passes the length checks, fails in h5py
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, ACT) as w:
        with pytest.raises((TypeError, ValueError)):
            w.add(bad)
    with EpisodeWriter(path, "gym:Fake-v0", VECTOR, ACT) as w:  # clean: nothing to trim
        assert w.recovered_rows == 0
    assert digests(path) == original


# -- 2. crashed, then truncated: fail fast --------------------------------------------------
@pytest.mark.slow
def test_truncated_crashed_store_fails_in_seconds(tmp_path):
    path = tmp_path / "c.h5"
    kill_collect_after(path, 300)
    for fraction in (0.5, 0.9):
        cut = tmp_path / f"cut{int(fraction * 100)}.h5"
        shutil.copy(path, cut)
        os.truncate(cut, int(cut.stat().st_size * fraction))
        start = time.time()
        res = run_wmtool("data", "info", cut, timeout=60)
        assert res.returncode == 1
        line = one_error_line(res.stderr)
        assert str(cut) in line and ("truncated" in line or "corrupt" in line), line
        assert time.time() - start < 30
        with pytest.raises(WmtoolError):
            EpisodeReader(cut)
    assert len(digests(path)) >= 300  # the whole file is fine


# -- 3. disk full -----------------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(tmp_path, size="2m", options=""):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs",
                          str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_read_only_place_is_named_as_such_not_as_busy(tmp_path):
    """Read-only (here a read-only mount, which binds root too): one line naming the path
    and the fix, for a store and for a run directory; nothing else."""
    with small_disk(tmp_path, options=",ro") as mnt:
        res = run_wmtool("collect", "--env", "gym:CartPole-v1", "--episodes", "1", "--out",
                         mnt / "x.h5", "--quiet")
        line = one_error_line(res.stderr)
        assert res.returncode == 1 and "being written by another process" not in line
        assert f"cannot write {mnt / 'x.h5'}" in line and "you can write to" in line
        res = run_wmtool("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--size",
                         "debug", "--steps", "10", "--run-dir", mnt / "run", "--quiet")
        line = one_error_line(res.stderr)
        assert f"cannot write {mnt / 'run'}: the file system is read-only" in line


def assert_disk_full_exit(res, mnt):
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    line = one_error_line(res.stderr)
    assert "disk full" in line and "free space or write elsewhere" in line, line
    assert sorted(p.name for p in mnt.iterdir()) == ["x.h5"]  # no stray files


@pytest.mark.slow
def test_collect_onto_a_full_disk_stops_with_one_line(tmp_path):
    with small_disk(tmp_path) as mnt:
        out = mnt / "x.h5"
        res = subprocess.run(collect_cmd(out), capture_output=True, text=True, timeout=300)
        assert_disk_full_exit(res, mnt)
        kept = digests(out)
        assert len(kept) > 0
        assert run_wmtool("data", "verify", out).returncode == 0
        # append onto the same (still full) disk: refused the same way, nothing lost
        res = subprocess.run(collect_cmd(out), capture_output=True, text=True, timeout=300)
        assert_disk_full_exit(res, mnt)
        assert digests(out)[:len(kept)] == kept


@pytest.mark.slow
def test_append_when_a_filler_fills_the_disk(tmp_path):
    with small_disk(tmp_path, "4m") as mnt:
        out = mnt / "x.h5"
        first = run_wmtool("collect", "--env", "gym:CartPole-v1", "--obs", "both",
                           "--episodes", "3", "--out", out, "--quiet")
        assert first.returncode == 0, first.stderr
        kept = digests(out)
        filler = mnt / "filler"
        with open(filler, "wb") as fh:  # fill what is left, then leave a sliver
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
        os.truncate(filler, filler.stat().st_size - (600 << 10))
        res = subprocess.run(collect_cmd(out), capture_output=True, text=True, timeout=300)
        filler.unlink()
        assert_disk_full_exit(res, mnt)
        after = digests(out)
        assert after[:len(kept)] == kept
        again = run_wmtool("collect", "--env", "gym:CartPole-v1", "--obs", "both",
                           "--episodes", "2", "--out", out, "--quiet")
        assert again.returncode == 0, again.stderr
        assert digests(out)[:len(after)] == after and len(digests(out)) == len(after) + 2


def test_write_failure_after_the_space_check_is_survived(tmp_path, monkeypatch):
    """The space check can be raced (another process fills the disk): the write that fails
    then must give a one-line error, no segfault, and leave the file recoverable."""
    code = r"""
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_store import DICT, fake_episode
from wmtool import spaces
from wmtool.data import writer
from wmtool.errors import WmtoolError
writer.EpisodeWriter._check_space = lambda self, columns: None  # lose the race on purpose
rng = np.random.default_rng(0)
w = writer.EpisodeWriter({out!r}, "gym:Fake-v0", DICT, spaces.discrete(2))
try:
    for i in range(10000):
        w.add(fake_episode(DICT, spaces.discrete(2), 20, rng))
except WmtoolError as exc:
    print(exc, flush=True)
    try:
        w.add(fake_episode(DICT, spaces.discrete(2), 20, rng))
    except WmtoolError as again:
        print("again:", again, flush=True)
    w.close()
    print("COMMITTED=%d" % w.num_episodes, flush=True)
"""
    with small_disk(tmp_path) as mnt:
        out = mnt / "x.h5"
        res = subprocess.run([str(Path(BIN).parent / "python"), "-c",
                              code.format(tests=str(Path(__file__).parent), out=str(out))],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "disk full" in res.stdout and "again: " in res.stdout, res.stdout
        assert "Exception ignored" not in res.stderr and "Traceback" not in res.stderr
        committed = int(res.stdout.split("COMMITTED=")[1])
        assert committed > 0 and writer_mark_set(out)  # left as after a crash ...
        assert len(digests(out)) == committed  # ... with every committed episode readable
        assert run_wmtool("data", "repair", out).returncode == 0
        with h5py.File(out, "r") as f:  # plain h5py again
            assert f["episodes"].shape[0] == committed


# -- 4. checksums -----------------------------------------------------------------------------
def flip_bit_in_chunk(path, dataset, chunk_index, at=None):
    """Flip one bit of a stored chunk, at byte `at` of it (default: its middle)."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk_index)
    where = info.byte_offset + (info.size // 2 if at is None else at)
    with open(path, "r+b") as fh:
        fh.seek(where)
        byte = fh.read(1)[0]
        fh.seek(where)
        fh.write(bytes([byte ^ 0x10]))


def test_new_stores_checksum_every_dataset(tmp_path):
    make_store(tmp_path / "d.h5", 3, DICT)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        names = ["episodes", "action", "reward", "terminated", "truncated", "obs/image",
                 "obs/vector"]
        assert all(f[n].fletcher32 for n in names)


def test_bit_flip_is_caught_by_reader_verify_and_writer(tmp_path):
    path = tmp_path / "d.h5"
    make_store(path, 60, DICT, lengths=(30, 60))  # obs/image: 16 frames per chunk
    with h5py.File(path, "r") as f:
        index = f["episodes"][()]
    flip_bit_in_chunk(path, "obs/image", 5)  # frames 80..95: episodes 1 and/or 2
    hit = [i for i, r in enumerate(index)
           if r["obs_start"] < 96 and r["obs_start"] + r["length"] + 1 > 80]
    with EpisodeReader(path) as r:
        with pytest.raises(WmtoolError) as err:
            r.episode(hit[0])
        message = str(err.value)
        assert str(path) in message and f"episode {hit[0]}" in message
        assert "/obs/image is damaged" in message and "wmtool data verify" in message
        r.episode(59)  # the rest still reads
    res = run_wmtool("data", "verify", path, "--json")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["damaged_episodes"] == hit and not out["ok"]
    assert out["damaged_chunks"] == [{"dataset": "obs/image", "rows": [80, 96]}]
    human = run_wmtool("data", "verify", path)
    assert human.returncode == 1 and "damaged episodes" in human.stdout

    with h5py.File(path, "r") as f:
        last = f["reward"].id.get_num_chunks() - 1
    flip_bit_in_chunk(path, "reward", last)  # where the next append would write
    before = file_digest(path)
    with pytest.raises(WmtoolError, match="/reward fails its checksum"):
        EpisodeWriter(path, "gym:Fake-v0", DICT, ACT)
    assert file_digest(path) == before


def test_salvage_keeps_every_episode_whose_own_bytes_are_intact(tmp_path):
    """One flipped byte in a reward chunk (all 200 episodes share it) and one in an image
    chunk: HDF5 refuses every episode touching them, repair says so (exit 1) instead of
    "nothing to repair", and salvage decodes past the chunk checksums, keeping each episode
    whose columns match their CRC-32, byte for byte; the ones hit are listed by episode."""
    path, out = tmp_path / "d.h5", tmp_path / "saved.h5"
    original = make_store(path, 200, DICT, lengths=(5, 12))
    with h5py.File(path, "r") as f:
        index = f["episodes"][()]
        assert f["reward"].id.get_num_chunks() == 1
    # a byte of episode 100's second reward (float32: 4 bytes a row, uncompressed)
    flip_bit_in_chunk(path, "reward", 0, at=4 * int(index[100]["step_start"]) + 6)
    flip_bit_in_chunk(path, "obs/image", 20)  # frames 320..335
    before = file_digest(path)
    verify = json.loads(run_wmtool("data", "verify", path, "--json").stdout)
    assert len(verify["damaged_episodes"]) == 200
    repair = run_wmtool("data", "repair", path)
    assert repair.returncode == 1 and "damaged episodes" in repair.stdout
    assert "wmtool data salvage" in repair.stdout and file_digest(path) == before

    res = run_wmtool("data", "salvage", path, "--out", out, "--json")
    assert res.returncode == 1, res.stderr  # some were lost
    report = json.loads(res.stdout)
    lost = {int(k): v for k, v in report["lost"].items()}
    assert 1 <= len(lost) <= 3 and report["copied"] == 200 - len(lost)
    assert lost[100] == "/reward: its own bytes are damaged (CRC-32 differs)"
    image_hit = {i for i, r in enumerate(index)
                 if r["obs_start"] < 336 and r["obs_start"] + r["length"] + 1 > 320}
    assert any(i in image_hit for i in lost)
    assert digests(out) == [d for i, d in enumerate(original) if i not in lost]
    assert file_digest(path) == before  # the source is only read
    again = run_wmtool("data", "salvage", path, "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_salvage_finds_episodes_past_damaged_index_rows_by_their_checksums(tmp_path):
    """Two adjacent damaged rows (repair cannot tell where one ends) and a last row whose
    length was halved: salvage finds each episode again from where the one before ends,
    by its stored CRC-32, and copies all 30 byte for byte, in order."""
    path, out = tmp_path / "d.h5", tmp_path / "saved.h5"
    original = make_store(path, 30, VECTOR, lengths=(5, 40))
    with h5py.File(path, "a") as f:
        rows = f["episodes"][10:12]
        rows["step_start"] = 7
        f["episodes"][10:12] = rows
        last = f["episodes"][29]
        last["length"] = int(last["length"]) // 2
        f["episodes"][29] = last
    before = file_digest(path)
    res = run_wmtool("data", "salvage", path, "--out", out, "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["lost"] == {}, res.stdout
    assert report["rebuilt_index_rows"] == [10, 11, 29]
    assert digests(out) == original and file_digest(path) == before


def test_a_reader_refuses_rows_past_the_last_episode_of_a_closed_store(tmp_path):
    """A last index row whose length shrank leaves its steps past the end: training on the
    store would read part of an episode as a whole one, so readers refuse, naming repair."""
    path = tmp_path / "d.h5"
    make_store(path, 5, lengths=(10, 20))
    with h5py.File(path, "a") as f:
        last = f["episodes"][4]
        last["length"] = int(last["length"]) // 2
        f["episodes"][4] = last
    with pytest.raises(WmtoolError, match="rows after its last episode") as err:
        EpisodeReader(path)
    assert "wmtool data repair" in str(err.value)
    with EpisodeReader(path, strict=False) as r:  # info / verify still read it
        assert len(r) == 5


def test_salvage_of_a_store_without_episode_checksums_lists_what_it_cannot_check(tmp_path):
    path, out = tmp_path / "d.h5", tmp_path / "saved.h5"
    make_store(path, 30, VECTOR, lengths=(5, 12))
    with h5py.File(path, "a") as f:
        del f["episode_crc"]  # as stores written by 0.2.0
    flip_bit_in_chunk(path, "reward", 0, at=8)
    res = run_wmtool("data", "salvage", path, "--out", out, "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 1 and report["copied"] == 0 and len(report["lost"]) == 30
    assert "no per-episode checksums" in report["lost"]["0"]


def test_old_stores_without_checksums_still_read_and_append(tmp_path, monkeypatch):
    orig = h5py.Group.create_dataset

    def no_checksums(self, name, *args, **kwargs):
        kwargs.pop("fletcher32", None)
        return orig(self, name, *args, **kwargs)

    path = tmp_path / "old.h5"
    monkeypatch.setattr(h5py.Group, "create_dataset", no_checksums)
    original = make_store(path, 4, DICT)
    monkeypatch.undo()
    with h5py.File(path, "r") as f:
        assert not f["reward"].fletcher32
    more = fake_episode(DICT, ACT, 5, np.random.default_rng(3))
    with EpisodeWriter(path, "gym:Fake-v0", DICT, ACT) as w:
        w.add(more)
    assert digests(path) == original + [episode_digest(more)]
    res = run_wmtool("data", "verify", path, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["checksums"] is False


# -- 5. non-finite data -------------------------------------------------------------------------
def test_nonfinite_episodes_are_named(tmp_path):
    rng = np.random.default_rng(4)
    episodes = [fake_episode(DICT, spaces.continuous(2), 6, rng) for _ in range(10)]
    episodes[3].reward[2] = np.nan
    episodes[7].obs["vector"][0, 1] = np.inf
    episodes[8].action[1, 0] = -np.inf
    path = tmp_path / "n.h5"
    with EpisodeWriter(path, "gym:Fake-v0", DICT, spaces.continuous(2)) as w:
        w.add_many(episodes)
    assert [nonfinite_fields(e) for e in episodes[2:9]] == [
        [], ["reward"], [], [], [], ["obs/vector"], ["action"]]
    res = run_wmtool("data", "info", path, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["nonfinite_episodes"] == [3, 7, 8]
    assert out["nonfinite_fields"] == {"3": ["reward"], "7": ["obs/vector"], "8": ["action"]}
    human = run_wmtool("data", "info", path)
    assert "non-finite data" in human.stdout and "3, 7, 8" in human.stdout
    res = run_wmtool("data", "verify", path, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["nonfinite_episodes"] == [3, 7, 8]


def test_nonfinite_fields_of_integer_and_observation_only_episodes():
    ep = Episode({"image": np.zeros((3, 4, 4, 3), np.uint8)}, None, np.zeros(2, np.float32),
                 np.zeros(2, bool), np.zeros(2, bool))
    assert nonfinite_fields(ep) == []
    ep.reward[0] = np.nan
    assert nonfinite_fields(ep) == ["reward"]


# -- 6. niceness --------------------------------------------------------------------------------
def thread_niceness(pid):
    nice = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            nice[task.name] = int(stat.rsplit(")", 1)[1].split()[16])
    return nice


@pytest.mark.slow
def test_writer_thread_never_lowers_niceness(tmp_path):
    out = tmp_path / "n.h5"
    proc = subprocess.Popen(["nice", "-n", "15", *collect_cmd(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        seen = {}
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            with contextlib.suppress(WmtoolError, OSError):
                with EpisodeReader(out) as r:
                    if len(r) >= 5:  # the writer thread has run and committed
                        seen = thread_niceness(proc.pid)
                        break
            time.sleep(0.1)
        assert len(seen) > 1 and min(seen.values()) == 15, seen
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_writer_thread_raises_niceness_to_10_only_when_lower(tmp_path):
    import threading

    from wmtool.data.background import BackgroundWriter

    def niceness_of_writer(start_nice):
        result = {}

        def body():
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, start_nice)  # inherited by new threads
            w = BackgroundWriter(EpisodeWriter(tmp_path / f"{start_nice}.h5", "gym:Fake-v0",
                                               VECTOR, ACT))
            w.add(fake_episode(VECTOR, ACT, 3, np.random.default_rng(0)))
            w.flush()
            result["nice"] = os.getpriority(os.PRIO_PROCESS, w._thread.native_id)
            w.close()

        t = threading.Thread(target=body)
        t.start()
        t.join()
        return result["nice"]

    assert niceness_of_writer(15) == 15
    assert niceness_of_writer(5) == 10


# -- 7. plain h5py after a crash ---------------------------------------------------------------
@pytest.mark.slow
def test_repair_makes_a_crashed_store_plain_h5py_readable(tmp_path):
    path = tmp_path / "c.h5"
    kill_collect_after(path, 20)
    with pytest.raises(OSError):
        h5py.File(path, "r")
    kept = digests(path)
    res = run_wmtool("data", "repair", path, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["writer_mark_cleared"] and out["ok"] and out["episodes"] == len(kept)
    with h5py.File(path, "r") as f:
        assert f["episodes"].shape[0] == len(kept)
    assert digests(path) == kept
    human = run_wmtool("data", "repair", path)
    assert human.returncode == 0 and "nothing to repair" in human.stdout


@pytest.mark.slow
def test_repair_refuses_while_a_writer_runs(tmp_path):
    path = tmp_path / "live.h5"
    proc = subprocess.Popen(collect_cmd(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (path.exists() and writer_mark_set(path)) and time.time() < deadline:
            time.sleep(0.1)
        res = run_wmtool("data", "repair", path)
        assert res.returncode == 1
        assert "being written by another process" in one_error_line(res.stderr)
        assert proc.poll() is None  # the writer was not disturbed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
