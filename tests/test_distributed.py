"""Data-parallel training on real torch.distributed process groups (gloo on CPU), started by
torchrun and by `wmtool train --nproc`: the same update as one process with the whole
batch, a run that loses a rank and resumes, and a two-node rendezvous on localhost."""
import json
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
def test_staged_offline_training_on_two_ranks_keeps_their_weights_equal(tmp_path):
    """Genie's three phases from frames on 2 ranks, with the tokenizer's dead codes restarted
    every 2 updates (state changed outside the gradients): every checkpoint first checks that
    the ranks' weights agree, so finishing proves they stayed equal."""
    data, frames = tmp_path / "pong.h5", tmp_path / "frames.h5"
    for args in (["collect", "--env", "atari:pong", "--episodes", "1", "--set",
                  "env.atari.max_frames=400", "--out", str(data), "--quiet"],
                 ["data", "drop-actions", str(data), "--out", str(frames), "--json"]):
        assert wmtool(*args).returncode == 0
    done = wmtool("train", "--algo", "genie", "--data", str(frames), "--size", "debug",
                  "--set", "genie.restart_every=2", "--set", "train.checkpoint_every=2",
                  "--run-dir", str(tmp_path / "run"), "--nproc", "2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["updates/tokenizer"] == result["updates/lam"] == result["updates/dynamics"] == 4
