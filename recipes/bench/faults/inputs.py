"""Bad input and hostile surroundings: typos, impossible numbers, missing or damaged files,
read-only and full disks, an env that never answers, a second process on the same run.
Each holds when wmtool refuses with the right exit code and one line naming the problem
and its fix, creates nothing it should not, and loses nothing already written."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import yaml

from faults.common import TINY, Outcome, file_digest, judge, start, wait_for, wm
from faults.signals import fixtures

TRAIN = ["train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1"]

# name: (arguments with {work}/{data}/{run} filled in, exit codes, words the error must say)
SIMPLE: dict[str, tuple[list[str], tuple[int, ...], tuple[str, ...]]] = {
    "unknown --algo": (["train", "--algo", "dreamerv9", "--env", "gym:CartPole-v1",
                        "--steps", "10", "--run-dir", "{work}/r"], (2,), ("dreamerv9",)),
    "unknown --size": ([*TRAIN, "--size", "huge", "--steps", "10", "--run-dir", "{work}/r"],
                       (2,), ("huge",)),
    "missing --data file": (["train", "--algo", "dreamerv3", "--data", "{work}/none.h5",
                             "--steps", "10", "--run-dir", "{work}/r"], (1, 2), ("none.h5",)),
    "--set to inf": ([*TRAIN, "--steps", "10", "--set", "wm.lr=inf", "--run-dir",
                      "{work}/r"], (1, 2), ("inf",)),
    "--set to NaN": ([*TRAIN, "--steps", "10", "--set", "actor.lr=nan", "--run-dir",
                      "{work}/r"], (1, 2), ("nan",)),
    "a batch of 10^12": ([*TRAIN, "--steps", "10", "--set", "train.batch=1000000000000",
                          "--run-dir", "{work}/r"], (1, 2), ("batch",)),
    "unknown --set key": ([*TRAIN, "--steps", "10", "--set", "train.bacth=8", "--run-dir",
                           "{work}/r"], (1, 2), ("bacth",)),
    "--steps 0": ([*TRAIN, "--steps", "0", "--run-dir", "{work}/r"], (2,), ("--steps",)),
    "unknown env suite": (["train", "--algo", "dreamerv3", "--env", "mujoco:ant", "--steps",
                           "10", "--run-dir", "{work}/r"], (1, 2), ("mujoco",)),
    "unknown gym env": (["collect", "--env", "gym:NoSuchEnv-v0", "--episodes", "1", "--out",
                         "{work}/x.h5"], (1, 2), ("NoSuchEnv",)),
    "--resume of a missing directory": (["train", "--resume", "{work}/nowhere"], (1, 2),
                                        ("nowhere",)),
    "train --data of a text file": (["train", "--algo", "dreamerv3", "--data", "{work}/x.txt",
                                     "--steps", "10", "--run-dir", "{work}/r"], (1, 2),
                                    ("x.txt",)),
    "eval of a missing run": (["eval", "--run", "{work}/nowhere"], (1, 2), ("nowhere",)),
    "dream --render to an unknown format": (["dream", "--run", "{run}", "--render",
                                             "{work}/out.avi"], (1, 2), (".avi",)),
    "export to an unknown format": (["export", "--run", "{run}", "--format", "pickle",
                                     "--out", "{work}/p"], (2,), ("pickle",)),
    "salvage onto an existing file": (["data", "salvage", "{data}", "--out", "{data}"], (2,),
                                      ("already exists",)),
    "sweep with an unknown --grid key": (["sweep", "--algo", "dreamerv3", "--env",
                                          "gym:CartPole-v1", "--steps", "10", "--seeds", "0",
                                          "--grid", "nope.key=1,2", "--root", "{work}/sw"],
                                         (1, 2), ("nope",)),
}


def simple(root: Path, name: str) -> Outcome:
    work = _work(root, name)
    data, run = fixtures(root)
    (work / "x.txt").write_text("not a store\n")
    before = file_digest(data)
    args, codes, needles = SIMPLE[name]
    res = wm(*[a.format(work=work, data=data, run=run) for a in args])
    out = judge(res, codes, needles)
    if (work / "r").exists() and _status(work / "r") in ("running", None):
        out = Outcome("failed", f"left {work / 'r'} marked {_status(work / 'r')!r}")
    if file_digest(data) != before:
        out = Outcome("failed", "the store given as input changed", lost=1)
    return out


def _status(run: Path) -> str | None:
    try:
        return json.loads((run / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def _work(root: Path, name: str) -> Path:
    work = root / name.replace(" ", "_").replace("/", "_")
    work.mkdir(parents=True)
    return work


def _copy_run(root: Path, work: Path) -> Path:
    run = work / "run"
    shutil.copytree(fixtures(root)[1], run)
    (run / ".lock").unlink(missing_ok=True)
    return run


# -- damaged run files ------------------------------------------------------------------------
def damaged_config_with_checkpoints(root: Path) -> Outcome:
    work = _work(root, "damaged config, checkpoints")
    run = _copy_run(root, work)
    (run / "config.yaml").write_text("train: {steps: [\n")
    res = wm("train", "--resume", run, "--steps", "360", "--quiet", timeout=300)
    return judge(res, (0,), limit=200)


def damaged_config_no_checkpoint(root: Path) -> Outcome:
    work = _work(root, "damaged config, no checkpoint")
    run = work / "run"
    args = [*TRAIN, *TINY, "--steps", "150", "--run-dir", run, "--quiet"]
    first = wm(*args)
    shutil.rmtree(run / "checkpoints")
    (run / "config.yaml").write_text("{{{")
    refused = wm("train", "--resume", run)
    out = judge(refused, (1, 2))
    if out.verdict == "held" and wm(*args).code != 0:
        return Outcome("failed", "the same command does not start the run again")
    return out if first.code == 0 else Outcome("error", first.stderr[-300:])


def truncated_checkpoint(root: Path) -> Outcome:
    work = _work(root, "truncated latest.pt")
    run = _copy_run(root, work)
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    res = wm("train", "--resume", run, "--steps", "360", "--quiet", timeout=300)
    return judge(res, (0,), limit=200)


def corrupt_run_json(root: Path) -> Outcome:
    work = _work(root, "corrupt run.json")
    run = _copy_run(root, work)
    (run / "run.json").write_text('{"algo": "dreamerv3", "status": ')
    res = wm("runs", work)
    out = judge(res, (0,))
    if out.verdict == "held" and "corrupt" not in res.stdout:
        return Outcome("weak", "`runs` does not mark the run corrupt: " + res.stdout[-200:])
    return out


def failed_start_then_eval(root: Path) -> Outcome:
    work = _work(root, "eval of a run that failed to start")
    wm("train", "--algo", "dreamerv3", "--data", work / "none.h5", "--steps", "10",
       "--run-dir", work / "r")
    if not (work / "r").exists():
        return Outcome("held", "no run directory was made")
    res = wm("eval", "--run", work / "r")
    out = judge(res, (1, 2))
    if "wait" in res.stderr and "checkpoint" in res.stderr:
        return Outcome("failed", "eval advises waiting for a checkpoint: " + res.stderr[-200:])
    return out


def code_in_run_dir(root: Path) -> Outcome:
    work = _work(root, "run dir that imports code")
    run = _copy_run(root, work)
    config = run / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["env"]["imports"] = ["os"]
    config.write_text(yaml.safe_dump(cfg))
    res = wm("eval", "--run", run, "--episodes", "1")
    return judge(res, (1, 2), ("--trust-run",))


# -- two processes, one run -------------------------------------------------------------------
def second_resume(root: Path) -> Outcome:
    work = _work(root, "second resume while training")
    run = work / "run"
    live = start(*TRAIN, *TINY, "--steps", "400", "--run-dir", run, log=work / "live.txt")
    if not wait_for(lambda: (run / "checkpoints" / "step_000000100.pt").exists(), live):
        return Outcome("skipped", "the run ended before the second resume")
    res = wm("train", "--resume", run)
    out = judge(res, (1, 2))
    if live.wait(timeout=600) != 0 or _status(run) != "finished":
        return Outcome("failed", "the live run did not finish: "
                       + (work / "live.txt").read_text()[-300:])
    return out


# -- the file system ----------------------------------------------------------------------------
@contextmanager
def tmpfs(work: Path, options: str):
    mnt = work / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    try:
        yield mnt if res.returncode == 0 else None
    finally:
        if res.returncode == 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def read_only(root: Path, what: str) -> Outcome:
    work = _work(root, f"read-only place for {what}")
    with tmpfs(work, "size=2m,ro") as mnt:
        if mnt is None:
            return Outcome("skipped", "cannot mount a tmpfs here (needs root)")
        args = (["collect", "--env", "gym:CartPole-v1", "--episodes", "1", "--out",
                 mnt / "x.h5"] if what == "a store" else
                [*TRAIN, "--size", "debug", "--steps", "10", "--run-dir", mnt / "run"])
        res = wm(*args)
        out = judge(res, (1,), ("read-only" if what != "a store" else "cannot write",))
        if "another process" in res.stderr:
            out = Outcome("failed", "a read-only place reported as busy")
    return out


def full_disk(root: Path) -> Outcome:
    work = _work(root, "disk full under collect")
    with tmpfs(work, "size=3m") as mnt:
        if mnt is None:
            return Outcome("skipped", "cannot mount a tmpfs here (needs root)")
        path = mnt / "x.h5"
        res = wm("collect", "--env", "gym:CartPole-v1", "--obs", "both", "--steps",
                 "1000000", "--out", path, "--quiet", timeout=600)
        out = judge(res, (1,), ("disk full",), limit=300)
        shutil.copy(path, work / "kept.h5")
    fix = wm("data", "repair", work / "kept.h5")
    check = wm("data", "verify", work / "kept.h5", "--json")
    if fix.code != 0 or check.code != 0 or json.loads(check.stdout)["episodes"] == 0:
        return Outcome("failed", "the store written before the disk filled is not intact",
                       lost=1)
    return out


# -- other sources ------------------------------------------------------------------------------
def minari_into_existing(root: Path) -> Outcome:
    work = _work(root, "import-minari into an existing store")
    data = fixtures(root)[0]
    made = wm("data", "export-minari", data, "--out", work / "minari", "--id",
              "wmtool/CartPole/faults-v0")
    if made.code != 0:
        return Outcome("error", "export-minari failed: " + made.stderr[-300:])
    target = work / "existing.h5"
    shutil.copy(data, target)
    before = file_digest(target)
    res = wm("data", "import-minari", work / "minari" / "wmtool/CartPole/faults-v0", "--out",
             target)
    out = judge(res, (2,), ("already exists",))
    if file_digest(target) != before:
        return Outcome("failed", "the existing store changed", lost=1)
    return out


def minari_missing(root: Path) -> Outcome:
    work = _work(root, "import-minari of a missing dataset")
    res = wm("data", "import-minari", work / "minari" / "nobody/nothing/here-v0", "--out",
             work / "x.h5", timeout=120)
    out = judge(res, (1, 2), ("here-v0",))
    if (work / "x.h5").exists():
        return Outcome("failed", "a partial store was left at --out")
    return out


BLOCKING = """
import time
import gymnasium
import numpy as np


class BlockingEnv(gymnasium.Env):
    observation_space = gymnasium.spaces.Box(-1, 1, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        time.sleep(3600)
"""


def blocking_env(root: Path) -> Outcome:
    work = _work(root, "envs check of an env that blocks")
    (work / "blocking_env.py").write_text(BLOCKING)
    t = time.perf_counter()
    res = wm("envs", "check", "gym:blocking_env:BlockingEnv", "--timeout", "2",
             env={"PYTHONPATH": str(work)}, timeout=120)
    out = judge(res, (1,), ("--timeout",), limit=30)
    if time.perf_counter() - t > 30 and out.verdict == "held":
        out = Outcome("weak", "the check took over 30 s")
    return out


def damaged_sweep_json(root: Path) -> Outcome:
    work = _work(root, "damaged sweep.json")
    sw = work / "sw"
    sw.mkdir()
    (sw / "sweep.json").write_text('{"runs": [')
    res = wm("sweep", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", *TINY, "--steps",
             "10", "--seeds", "0", "--root", sw)
    return judge(res, (1, 2), ("sweep.json",))


OTHERS: dict[str, Callable[[Path], Outcome]] = {
    "damaged config.yaml, run with checkpoints": damaged_config_with_checkpoints,
    "damaged config.yaml, no checkpoint": damaged_config_no_checkpoint,
    "truncated latest.pt": truncated_checkpoint,
    "corrupt run.json under `wmtool runs`": corrupt_run_json,
    "eval of a run that failed to start": failed_start_then_eval,
    "a run directory that imports code": code_in_run_dir,
    "a second --resume while the run trains": second_resume,
    "collect into a read-only place": lambda root: read_only(root, "a store"),
    "train into a read-only place": lambda root: read_only(root, "a run"),
    "the disk fills under collect": full_disk,
    "import-minari into an existing --out": minari_into_existing,
    "import-minari of a missing dataset": minari_missing,
    "envs check of an env that never returns": blocking_env,
    "a damaged sweep.json": damaged_sweep_json,
}


def trials() -> list[tuple[str, str, Callable[[Path], Outcome]]]:
    return ([("input", name, lambda root, n=name: simple(root, n)) for name in SIMPLE]
            + [("input", name, fn) for name, fn in OTHERS.items()])
