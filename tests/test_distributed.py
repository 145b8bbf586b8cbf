"""Data-parallel training on real torch.distributed process groups (gloo on CPU), started by
torchrun and by `wmtool train --nproc`: the same update as one process with the whole
batch, a whole Trainer run's per-rank replays, summed clock and train ratio, a run that
loses a rank and resumes, and a two-node rendezvous on localhost."""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("dp_update.py")
ENV = {**os.environ, "TORCH_CPP_LOG_LEVEL": "ERROR", "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def updates(tmp_path: Path, algo: str, ranks: int) -> dict:
    out = tmp_path / f"{algo}-{ranks}.npz"
    done = torchrun("--standalone", f"--nproc-per-node={ranks}", str(WORKER), algo, "8", "3",
                    str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out, allow_pickle=True))


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dreamerv3", "tdmpc2"])
def test_two_ranks_with_half_batches_make_the_one_process_update(tmp_path, algo):
    """2 ranks x batch 4 vs 1 process x batch 8, three updates: every gradient an optimiser
    stepped with (world model, actor, critic; TD-MPC2's model, encoder and prior) agrees to
    float reassociation, and so do the weights after. Latent samples, imagined actions,
    dropout, return percentiles and TD-MPC2's masked means all cover the whole batch."""
    one, two = updates(tmp_path, algo, 1), updates(tmp_path, algo, 2)
    grads = sorted(k for k in one if k.startswith("grad_"))
    assert grads and grads == sorted(k for k in two if k.startswith("grad_"))
    assert len(grads) == 9  # 3 optimisers x 3 updates
    for key in grads:
        error = np.linalg.norm(one[key] - two[key]) / np.linalg.norm(one[key])
        assert error < 1e-3, f"{key}: relative difference {error:.2e}"
    assert np.abs(one["weights"] - two["weights"]).max() < 1e-4


def rank_pid(launcher: int, rank: int) -> int | None:
    """The worker process of `rank` that the launcher started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(status.split("PPid:")[1].split()[0])
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def wmtool(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wmtool", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


TRAIN = ["train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", "--size", "debug",
         "--steps", "2000", "--set", "train.prefill=500", "--set", "train.train_ratio=128",
         "--set", "train.checkpoint_every=500", "--set", "train.log_every=250",
         "--set", "train.eval_every=0", "--set", "train.eval_episodes=2"]


@pytest.mark.slow
def test_a_run_on_two_ranks_loses_one_resumes_and_finishes(tmp_path):
    run = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "wmtool", *TRAIN, "--run-dir", str(run),
                                 "--nproc", "2"], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((run / "checkpoints").glob("step_000001*.pt")):  # past the prefill
        assert launcher.poll() is None and time.time() < deadline, launcher.communicate()[1]
        time.sleep(0.2)
    pid = rank_pid(launcher.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1
    failures = [line for line in err.splitlines() if "failed" in line]
    assert failures == [failures[0]] and "rank 1 of 2 failed (killed by SIGKILL)" in failures[0]
    assert "Traceback" not in err
    meta = json.loads((run / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["status"] != "finished"

    wrong = wmtool("train", "--resume", str(run))
    assert wrong.returncode == 1 and "trained by 2 data-parallel rank(s)" in wrong.stderr
    assert "--nproc 2" in wrong.stderr

    done = wmtool("train", "--resume", str(run), "--nproc", "2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["agent_steps"] >= 2000 and result["updates"] >= 90
    assert result["eval"]["episodes"] == 2
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and meta["runtime"]["ranks"] == 2
    stores = sorted(p.name for p in (run / "replay").glob("*.h5"))
    assert stores == ["episodes.h5", "episodes.rank1.h5"]
    from wmtool.data.store import EpisodeReader

    stored = 0
    for name in stores:
        with EpisodeReader(run / "replay" / name) as reader:
            stored += reader.num_steps
    assert stored == result["agent_steps"]  # the run's clock is every rank's stored steps

    scored = wmtool("eval", "--run", str(run), "--episodes", "2", "--json")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["episodes"] == 2


def ranks_alive(launcher: int) -> list[int]:
    return [pid for pid in (rank_pid(launcher, r) for r in (0, 1)) if pid is not None]


def processes_running(needle: str) -> list[int]:
    """Processes whose command line holds `needle` (a run directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_ctrl_c_and_a_killed_launcher_stop_both_ranks_at_a_checkpoint(tmp_path):
    """Ctrl-C to `train --nproc 2` (no periodic checkpoints) stops both ranks at the same step
    with a checkpoint past the prefill, and resume continues from it; SIGKILL to the
    launcher's whole process group ends both ranks (they run in their own sessions), again
    at a checkpoint."""
    from wmtool import ckpt

    run = tmp_path / "run"
    args = [*TRAIN, "--set", "train.checkpoint_every=0", "--set", "runtime.threads=1",
            "--run-dir", str(run), "--nproc", "2"]

    def start_and_wait_for_updates():
        launcher = subprocess.Popen([sys.executable, "-m", "wmtool", *args], env=ENV,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        deadline = time.time() + 300
        while True:  # a log row past the prefill: updates are under way
            assert launcher.poll() is None and time.time() < deadline, launcher.communicate()
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                    ] if (run / "metrics.jsonl").exists() else []
            if any(r.get("counters/updates", 0) > 0 for r in rows):
                return launcher
            time.sleep(0.2)

    launcher = start_and_wait_for_updates()
    os.kill(launcher.pid, signal.SIGINT)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 130 and "interrupted by Ctrl-C" in err, err[-2000:]
    saved = ckpt.load(run / "checkpoints" / "latest.pt")["counters"]
    assert saved["updates"] > 0 and saved["agent_steps"] > 500
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"

    args = ["train", "--resume", str(run), "--nproc", "2"]
    launcher = subprocess.Popen([sys.executable, "-m", "wmtool", *args], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    deadline = time.time() + 300
    while not (rows := ranks_alive(launcher.pid)) or len(rows) < 2 or not any(
            r.get("counters/updates", 0) > saved["updates"] for r in
            map(json.loads, (run / "metrics.jsonl").read_text().splitlines())):
        assert launcher.poll() is None and time.time() < deadline, launcher.communicate()
        time.sleep(0.2)
    os.killpg(launcher.pid, signal.SIGKILL)
    deadline = time.time() + 120
    while processes_running(str(run)):
        assert time.time() < deadline, "ranks outlived their killed launcher"
        time.sleep(0.2)
    resumed = ckpt.load(run / "checkpoints" / "latest.pt")["counters"]
    assert resumed["updates"] > saved["updates"], launcher.communicate()[1][-3000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_rendezvous_on_localhost(tmp_path):
    """Two torchrun agents (`--nnodes 2`, one rank each, node 0 hosting the rendezvous at
    127.0.0.1) train one run together, as two machines sharing the run directory would."""
    run, port = tmp_path / "run", free_port()

    def node(rank: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                "--nproc-per-node=1", f"--node-rank={rank}", f"--rdzv-endpoint=127.0.0.1:{port}",
                "-m", "wmtool", "train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1",
                "--size", "debug", "--steps", "600", "--set", "train.prefill=300",
                "--set", "train.train_ratio=64", "--run-dir", str(run), "--json"]

    nodes = [subprocess.Popen(node(rank), env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    results = [json.loads(out) for out, _ in outputs if out.strip()]
    assert len(results) == 1  # rank 0 alone reports
    assert results[0]["agent_steps"] >= 600 and results[0]["updates"] > 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and meta["world_size"] == 2
    assert (run / "replay" / "episodes.rank1.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("replay", ["memory", "stream"])
def test_staged_offline_training_on_two_ranks_keeps_their_weights_equal(tmp_path, replay):
    """Genie's three phases from frames on 2 ranks, with the tokenizer's dead codes restarted
    every 2 updates (state changed outside the gradients): every checkpoint first checks that
    the ranks' weights agree, so finishing proves they stayed equal. Streamed, each rank
    reads its own share of the episodes (and computes the dynamics phase's tokens per
    batch)."""
    data, frames = tmp_path / "pong.h5", tmp_path / "frames.h5"
    for args in (["collect", "--env", "atari:pong", "--episodes", "1", "--set",
                  "env.atari.max_frames=400", "--out", str(data), "--quiet"],
                 ["data", "drop-actions", str(data), "--out", str(frames), "--json"]):
        assert wmtool(*args).returncode == 0
    done = wmtool("train", "--algo", "genie", "--data", str(frames), "--size", "debug",
                  "--set", "genie.restart_every=2", "--set", "train.checkpoint_every=2",
                  "--set", f"train.replay={replay}", "--set", "train.length=8",
                  "--run-dir", str(tmp_path / "run"), "--nproc", "2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["updates/tokenizer"] == result["updates/lam"] == result["updates/dynamics"] == 4
    assert json.loads((tmp_path / "run" / "run.json").read_text())["replay"]["mode"] == replay


TRAINER = Path(__file__).with_name("dp_trainer.py")
# batch 4 x length 16 and train ratio 24: 24 / (4 x 16 x 2 ranks) = 0.1875 updates per agent
# step on 2 ranks (0.375 in one process), so no count below comes out round by chance
DP_RUN = {"train.steps": 600, "train.prefill": 200, "train.batch": 4, "train.length": 16,
          "train.train_ratio": 24, "train.prefill_updates": 3, "train.log_every": 100,
          "train.checkpoint_every": 0, "train.eval_every": 0, "train.eval_episodes": 0,
          "runtime.threads": 1}
STORES = ["episodes.h5", "episodes.rank1.h5"]  # rank 0's, rank 1's (engine/session.py)


def window_starts(windows: np.ndarray, replay: np.ndarray) -> np.ndarray:
    """Where each sampled window (update, sequence, row, column) starts among `replay`'s rows
    (row, column): -1 for a window that no run of rows of `replay` equals."""
    at = {row.tobytes(): i for i, row in reversed(list(enumerate(replay)))}
    length = windows.shape[2]
    starts = []
    for window in windows.reshape(-1, length, windows.shape[-1]):
        s = at.get(window[0].tobytes(), -1)
        starts.append(s if s >= 0 and np.array_equal(replay[s:s + length], window) else -1)
    return np.array(starts)


def torchrun_or_stop(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """torchrun, stopped with its ranks after `timeout` s: ranks that disagree on when to
    meet in a collective wait for each other (parallel.TIMEOUT) rather than fail."""
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        out, err = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        launcher.terminate()  # torchrun stops its workers on SIGTERM
        _, err = launcher.communicate(timeout=120)
        pytest.fail(f"the ranks did not finish in {timeout} s (one waits in a collective the "
                    f"other never reaches?); stderr: {err[-2000:]}")
    return subprocess.CompletedProcess(launcher.args, launcher.returncode, out, err)


@pytest.mark.slow
def test_two_rank_trainer_keeps_its_own_replays_a_summed_clock_and_the_train_ratio(tmp_path):
    """A whole online run of the Trainer on 2 ranks (CartPole, debug DreamerV3), built as
    `wmtool train` builds it; tests/dp_trainer.py records what each rank did: its replay, its
    env steps, the batches its updates trained on, its counters and weights."""
    from dp_trainer import flat_rows

    from wmtool import config
    from wmtool.data.replay import episode_rows
    from wmtool.data.store import EpisodeReader
    from wmtool.engine.plan import updates_per_agent_step
    from wmtool.parallel import RANK_SEED_STRIDE

    sets = [f"{key}={value}" for key, value in DP_RUN.items()]
    done = torchrun_or_stop("--standalone", "--nproc-per-node=2", str(TRAINER), str(tmp_path),
                            *[arg for s in sets for arg in ("--set", s)], timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    cfg = config.compose({"env": {"id": "gym:CartPole-v1"}}, algo="dreamerv3", size="debug",
                         sets=sets)
    c, run = cfg.train, tmp_path / "run"

    # each rank's replay holds its own rows: the episodes its own store kept (rank 1's in
    # episodes.rank1.h5), reset from seeds no other rank used, with contents of their own
    resets = []
    for rank, name in zip(ranks, STORES):
        with EpisodeReader(run / "replay" / name) as reader:
            episodes = list(reader)
            stored = np.concatenate([flat_rows(episode_rows(ep, reader.act_space), 1)
                                     for ep in episodes])
        np.testing.assert_array_equal(rank["replay"], stored)
        assert list(rank["episode_lengths"]) == [ep.length + 1 for ep in episodes]
        assert int(rank["env_steps"]) == sum(ep.length for ep in episodes) \
            == len(rank["replay"]) - len(episodes)
        resets.append({ep.seed for ep in episodes if ep.seed >= 0})
    assert resets[0] and resets[1] and not resets[0] & resets[1]
    mine = [{row.tobytes() for row in rank["replay"]} for rank in ranks]
    assert not mine[0] & mine[1]  # not one row in common

    # every batch a rank's update trained on is windows of its own replay, never the other's,
    # at the positions its own sampling generator drew: rank r's is seeded with the run seed
    # + r x RANK_SEED_STRIDE (rank 0: the run seed), not the other rank's
    seeds = [cfg.seed + r * RANK_SEED_STRIDE for r in range(2)]
    for r, rank in enumerate(ranks):
        windows, replay = rank["windows"], rank["replay"]
        assert windows.shape[1:3] == (c.batch, c.length)  # DreamerV3 reads no history
        where = window_starts(windows, replay)
        assert (where >= 0).all(), f"rank {r} trained on rows its replay does not hold"
        assert (window_starts(windows, ranks[1 - r]["replay"]) == -1).all()
        ends = np.cumsum(rank["episode_lengths"])
        assert len(np.unique(np.searchsorted(ends, where, side="right"))) > 1  # many episodes
        rng = np.random.default_rng(seeds[r])
        drawn = np.concatenate([rng.integers(0, rows - c.length + 1, c.batch)
                                for rows in rank["update_replay"]])
        np.testing.assert_array_equal(where, drawn, f"rank {r} sampled with another seed")

    # the clock is summed over ranks: the run's agent steps are both ranks' env steps, both
    # ranks stop at that step (the first at or past train.steps), the episodes are both ranks'
    steps, updates, episodes = (int(x) for x in r0["counters"])
    assert list(r1["counters"]) == list(r0["counters"])
    assert steps == int(r0["env_steps"]) + int(r1["env_steps"])
    assert c.steps <= steps < c.steps + 2
    assert episodes == int(r0["rank_episodes"]) + int(r1["rank_episodes"]) \
        == len(r0["episode_lengths"]) + len(r1["episode_lengths"])
    result = json.loads(str(r0["result"]))
    meta = json.loads((run / "run.json").read_text())
    assert (result["agent_steps"], result["updates"], result["episodes"]) == \
        (steps, updates, episodes)
    assert meta["counters"] == {"agent_steps": steps, "updates": updates, "episodes": episodes}

    # the train ratio (replayed rows per agent step): an update replays N x batch x length
    # rows on N ranks, so after the prefill a run owes
    #   due(A, N) = floor((A - prefill) x train_ratio / (N x batch x length)) + prefill_updates
    # updates at A agent steps: on 2 ranks, half (rounded down) of one process's updates
    # after the prefill for the same agent steps at the same batch
    def due(at: int, ranks: int = 2) -> int:
        return math.floor((at - c.prefill) * c.train_ratio / (ranks * c.batch * c.length)) \
            + c.prefill_updates

    assert updates_per_agent_step(cfg, ranks=2) == c.train_ratio / (2 * c.batch * c.length)
    assert updates_per_agent_step(cfg, ranks=1) == 2 * updates_per_agent_step(cfg, ranks=2)
    assert updates == due(steps) == 78  # floor(400 or 401 x 0.1875) + 3
    assert updates - c.prefill_updates == (due(steps, ranks=1) - c.prefill_updates) // 2
    for rank in ranks:  # each rank made every update, as each was due: no sooner, no later
        clock = rank["update_clock"]
        assert len(clock) == len(rank["windows"]) == updates
        assert (clock >= c.prefill).all()
        for at in np.unique(clock):
            assert (clock <= at).sum() == due(at)
    np.testing.assert_array_equal(r0["update_clock"], r1["update_clock"])

    # the averaged gradients kept the ranks' weights equal, bit for bit
    np.testing.assert_array_equal(r0["weights"], r1["weights"])
