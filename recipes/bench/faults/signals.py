"""Signals x every command that runs for a while. Ctrl-C goes to the whole process group
(as a terminal sends it), SIGTERM to the command's own process (as `kill PID` or a
scheduler sends it), SIGKILL to the group (a job killed hard) and, for commands with
worker processes, SIGKILL to the launcher alone.

Each trial starts the command, waits until it is doing real work (a checkpoint written,
episodes committed, a video half written) and signals it. It holds when: the exit code is
130 / 143 (Ctrl-C / SIGTERM), no process of the job is left running, no file is left
half-written under its final name, a run stopped by Ctrl-C or SIGTERM wrote a checkpoint
at the stop and resumes from it (not from 0 updates), a run killed hard resumes, and a
store stays readable with every episode committed before the signal.
"""
from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from faults.common import TINY, Outcome, Result, judge, start, wait_for, wm

FOREVER = "100000"  # commands stopped long before their end
BUDGET = "500"      # runs: stopped after a checkpoint at 200 steps, then resumed to finish
SIGNALS = {"Ctrl-C to the group": (signal.SIGINT, True, 130),
           "SIGTERM to the process": (signal.SIGTERM, False, 143),
           "SIGKILL to the group": (signal.SIGKILL, True, -9)}
KILL_LAUNCHER = {"SIGKILL to the launcher": (signal.SIGKILL, False, -9)}


def children(pid: int) -> set[int]:
    """Every live descendant of pid (ranks, workers, their helpers)."""
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(proc.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def stop(proc, how: str, ready: Callable[[], bool], timeout: float = 150):
    """Wait until ready(), signal as `how` says; (exit code or None if it ignored the signal
    for 3 minutes, the job's processes seen before the signal, seconds from the signal to
    the exit), or None if the command ended first."""
    if not wait_for(ready, proc, timeout):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    job = children(proc.pid) | {proc.pid}
    sig, group, _ = {**SIGNALS, **KILL_LAUNCHER}[how]
    signalled = time.perf_counter()
    (os.killpg if group else os.kill)(proc.pid, sig)
    try:
        code = proc.wait(timeout=180)
    except Exception:  # noqa: BLE001 - a job that ignores the signal: kill it, call it hung
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    return code, job, time.perf_counter() - signalled


def orphans(job: set[int]) -> list[int]:
    """Processes of the job still running a few seconds after it ended; killed here."""
    time.sleep(3)
    left = [pid for pid in job if alive(pid)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def stopped(work: Path, how: str, args: list, ready: Callable[[], bool]) -> Outcome:
    """Run `wmtool ARGS`, stop it as `how` says, judge the exit and the job's processes."""
    log = work / "log.txt"
    proc = start(*args, log=log)
    got = stop(proc, how, ready)
    if got is None:
        return Outcome("skipped", "it finished (or failed) before the signal: "
                       + log.read_text()[-300:])
    code, job, seconds = got
    res = Result(code, "", log.read_text(), seconds)
    expected = {**SIGNALS, **KILL_LAUNCHER}[how][2]
    out = judge(res, (expected,), limit=60)
    if out.verdict == "weak" and expected < 0:  # killed hard: it had no chance to say anything
        out.verdict, out.detail = "held", ""
    if out.verdict == "weak" and "error lines" in out.detail:
        out.verdict, out.detail = "held", ""  # a stop is announced on one line, not an error
    left = orphans(job)
    if left:
        out.verdict, out.detail = "failed", f"{len(left)} processes of the job kept running"
    return out


# -- what is left behind ------------------------------------------------------------------------
def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def check_run(out: Outcome, run: Path, how: str, signalled_at: float) -> Outcome:
    """A run stopped by Ctrl-C/SIGTERM: status interrupted, a checkpoint at the stop, updates
    kept; any stopped run: `train --resume --steps` finishes from where it was."""
    if out.verdict in ("failed", "skipped"):
        return out
    graceful = {**SIGNALS, **KILL_LAUNCHER}[how][2] > 0
    info = run_json(run)
    updates = info["counters"]["updates"]
    if graceful:
        latest = run / "checkpoints" / "latest.pt"
        if info["status"] != "interrupted":
            return Outcome("failed", f"status {info['status']!r} after the stop")
        if not latest.exists() or latest.stat().st_mtime < signalled_at:
            return Outcome("failed", "no checkpoint written at the stop")
        if updates == 0:
            return Outcome("failed", "the checkpoint holds 0 updates")
    ranks = ["--nproc", str(info["world_size"])] if info.get("world_size", 1) > 1 else []
    res = wm("train", "--resume", run, *ranks, "--quiet", timeout=600)
    if res.code != 0:
        return Outcome("failed", "resume failed: " + res.stderr.strip()[-300:], lost=1)
    after = run_json(run)["counters"]
    done = after["agent_steps"] if info.get("mode") == "online" else after["updates"]
    if done < int(BUDGET) or after["updates"] < updates:
        return Outcome("failed", f"resume ended at {after} from {updates} updates", lost=1)
    return out


def check_store(out: Outcome, path: Path, seen: int, how: str) -> Outcome:
    """Every episode committed before the signal is there; the store reads without repair
    after Ctrl-C/SIGTERM, and after `data repair` when killed hard."""
    if out.verdict in ("failed", "skipped"):
        return out
    if {**SIGNALS, **KILL_LAUNCHER}[how][2] < 0:
        fix = wm("data", "repair", path)
        if fix.code != 0:
            return Outcome("failed", "repair after the kill failed: " + fix.stdout[-200:])
    check = wm("data", "verify", path, "--json")
    if check.code != 0:
        return Outcome("failed", "the store does not verify: " + check.stdout[-300:])
    episodes = json.loads(check.stdout)["episodes"]
    if episodes < seen:
        return Outcome("failed", f"{seen - episodes} committed episodes gone", lost=seen - episodes)
    return out


def check_file(out: Outcome, path: Path, how: str) -> Outcome:
    """Nothing half-written under the final name; no temp file left by a graceful stop."""
    if out.verdict in ("failed", "skipped"):
        return out
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    if path.exists():
        if not whole(path):
            return Outcome("failed", f"{path.name} exists after the stop, half-written")
        # renamed into place whole between the signal's trigger and its landing: the
        # command finished first, as in a skipped trial
        return Outcome("skipped", f"it finished before the signal landed ({path.name} whole)")
    if partial.exists() and {**SIGNALS, **KILL_LAUNCHER}[how][2] > 0:
        return Outcome("weak", f"{partial.name} left behind")
    return out


def whole(path: Path) -> bool:
    """Whether a written file reads back whole in its own format."""
    try:
        if path.suffix == ".onnx":
            import onnx

            onnx.checker.check_model(onnx.load(str(path)))
        elif path.suffix in (".gif", ".mp4"):
            import imageio.v3 as iio

            return len(iio.imread(path)) > 0
        return path.stat().st_size > 0
    except Exception:  # noqa: BLE001 - any failure to read it back means not whole
        return False
    return True


# -- the commands --------------------------------------------------------------------------------
def checkpointed(run: Path, step: int = 200) -> Callable[[], bool]:
    """True once the run has a checkpoint at `step` agent steps or later (past its prefill:
    it has updates to lose)."""
    return lambda: any(int(p.stem.split("_")[1]) >= step
                       for p in (run / "checkpoints").glob("step_*.pt"))


def episodes_in(path: Path) -> int:
    from wmtool.data.store import EpisodeReader

    try:
        with EpisodeReader(path) as r:
            return len(r)
    except Exception:  # noqa: BLE001 - the file may be mid-creation
        return 0


def fixtures(root: Path) -> tuple[Path, Path]:
    """(a store of CartPole episodes, a trained run) shared by the trials."""
    root.mkdir(parents=True, exist_ok=True)
    data, run = root / "data.h5", root / "trained"
    if not data.exists():
        assert wm("collect", "--env", "gym:CartPole-v1", "--episodes", "30", "--out", data,
                  "--quiet").code == 0
    if not (run / "checkpoints" / "latest.pt").exists():
        res = wm("train", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", *TINY,
                 "--steps", "300", "--run-dir", run, "--quiet", timeout=600)
        assert res.code == 0, res.stderr
    return data, run


def train_trial(root: Path, how: str, extra: list, offline: bool = False) -> Outcome:
    work = _work(root, how, "train" + "-".join(extra) + ("-data" if offline else ""))
    run = work / "run"
    source = ["--data", fixtures(root)[0]] if offline else ["--env", "gym:CartPole-v1"]
    args = ["train", "--algo", "dreamerv3", *source, *TINY, "--steps", BUDGET,
            "--run-dir", run, *extra]
    t = time.time()
    out = stopped(work, how, args, checkpointed(run))
    return check_run(out, run, how, t)


def sweep_trial(root: Path, how: str) -> Outcome:
    work = _work(root, how, "sweep")
    sw = work / "sw"
    args = ["sweep", "--algo", "dreamerv3", "--env", "gym:CartPole-v1", *TINY, "--steps",
            BUDGET, "--seeds", "0,1", "--root", sw, "--jobs", "2"]
    t = time.time()
    out = stopped(work, how, args,
                     lambda: checkpointed(sw / "seed0")() and checkpointed(sw / "seed1")())
    for seed in ("seed0", "seed1"):
        out = check_run(out, sw / seed, how, t)
    return out


def collect_trial(root: Path, how: str, extra: list) -> Outcome:
    work = _work(root, how, "collect" + "-".join(extra))
    path = work / "c.h5"
    seen = [0]

    def three() -> bool:
        seen[0] = episodes_in(path)
        return seen[0] >= 3
    args = ["collect", "--env", "gym:CartPole-v1", "--obs", "both", "--steps", "10000000",
            "--out", path, *extra]
    out = stopped(work, how, args, three)
    return check_store(out, path, seen[0], how)


def file_trial(root: Path, how: str, name: str, args_of: Callable[[Path, Path], list]) -> Outcome:
    work = _work(root, how, name)
    target = work / name
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    run = fixtures(root)[1]
    out = stopped(work, how, args_of(run, target), partial.exists)
    return check_file(out, target, how)


def imagine_trial(root: Path, how: str) -> Outcome:
    work = _work(root, how, "imagine")
    run = fixtures(root)[1]
    new = work / "im"
    args = ["imagine", "--run", run, "--steps", FOREVER, "--run-dir", new]
    t = time.time()
    out = stopped(work, how, args, lambda: " upd (" in (work / "log.txt").read_text())
    if out.verdict in ("failed", "skipped") or {**SIGNALS, **KILL_LAUNCHER}[how][2] < 0:
        return out
    info = run_json(new)
    latest = new / "checkpoints" / "latest.pt"
    if info["status"] != "interrupted" or latest.stat().st_mtime < t:
        return Outcome("failed", f"status {info['status']!r}, no checkpoint at the stop")
    return out


def _work(root: Path, how: str, name: str) -> Path:
    work = root / f"{name}-{how}".replace(" ", "_")
    work.mkdir(parents=True)
    return work


COMMANDS: dict[str, tuple[Callable[[Path, str], Outcome], bool]] = {
    # name: (trial, has worker processes)
    "train": (lambda root, how: train_trial(root, how, []), False),
    "train --nproc 2": (lambda root, how: train_trial(root, how, ["--nproc", "2"]), True),
    "train --data": (lambda root, how: train_trial(root, how, [], offline=True), False),
    "sweep --parallel 2": (sweep_trial, True),
    "collect": (lambda root, how: collect_trial(root, how, []), False),
    "collect --workers 2": (lambda root, how: collect_trial(root, how, ["--workers", "2"]),
                            True),
    "imagine": (imagine_trial, False),
    "eval --video": (lambda root, how: file_trial(
        root, how, "eval.mp4", lambda run, out: ["eval", "--run", run, "--episodes", "400",
                                                 "--video", out]), False),
    "dream --render mp4": (lambda root, how: file_trial(
        root, how, "dream.mp4", lambda run, out: ["dream", "--run", run, "--render", out,
                                                  "--free", "--sequences", "8", "--horizon",
                                                  "400"]), False),
    "dream --render gif": (lambda root, how: file_trial(
        root, how, "dream.gif", lambda run, out: ["dream", "--run", run, "--render", out,
                                                  "--free", "--sequences", "8", "--horizon",
                                                  "400"]), False),
    "export onnx": (lambda root, how: file_trial(
        root, how, "policy.onnx", lambda run, out: ["export", "--run", run, "--format",
                                                    "onnx", "--out", out]), False),
}


def trials() -> list[tuple[str, str, Callable[[Path], Outcome]]]:
    out = []
    for name, (fn, workers) in COMMANDS.items():
        for how in (*SIGNALS, *(KILL_LAUNCHER if workers else ())):
            out.append(("signals", f"{name} / {how}", lambda root, f=fn, h=how: f(root, h)))
    return out
