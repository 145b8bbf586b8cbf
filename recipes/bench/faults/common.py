"""What every fault trial shares: running wmtool, judging what it said, finding orphans."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent / "wmtool"
# Progress lines every half second even off a terminal, so a trial can wait for a phase.
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
       "WANDB_MODE": "offline", "WMTOOL_PROGRESS_EVERY": "0.5"}
TINY = ["--size", "debug", "--set", "train.batch=4", "--set", "train.length=16",
        "--set", "train.train_ratio=16", "--set", "train.eval_episodes=1",
        "--set", "train.prefill=100", "--set", "train.checkpoint_every=100"]
# Words with which an error names its fix.
FIX_WORDS = ("use ", "run ", "--", "rerun", "give ", "add ", "remove", "delete", "free ",
             "write to", "try ", "pass ", "choose", "lower", "check ", "see ", "wait",
             "install", "restart", "start ", "copy ", "collect ", "wmtool ", "valid:", "one of")


@dataclass
class Outcome:
    verdict: str  # held | weak | failed | skipped
    detail: str = ""
    lost: int = 0  # committed episodes (stores) or finished steps (runs) made unrecoverable
    seconds: float = 0.0
    stderr: str = field(default="", repr=False)


@dataclass
class Result:
    code: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float


def wm(*args, cwd: Path | None = None, timeout: float = 180, env: dict | None = None) -> Result:
    t = time.perf_counter()
    try:
        p = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True,
                           cwd=cwd, timeout=timeout, env={**ENV, **(env or {})})
        return Result(p.returncode, p.stdout, p.stderr, time.perf_counter() - t)
    except subprocess.TimeoutExpired as e:
        return Result(None, str(e.stdout or ""), str(e.stderr or ""), time.perf_counter() - t)


def start(*args, log: Path, env: dict | None = None) -> subprocess.Popen:
    """A wmtool process in its own process group (as a shell job is), Ctrl-C deliverable;
    stdout and stderr to LOG so a trial can wait for what it prints."""
    fh = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([str(BIN), *map(str, args)], stdout=fh, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env={**ENV, **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(check, proc: subprocess.Popen | None = None, timeout: float = 180) -> bool:
    """True once check() holds; False if the process ended first or time ran out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - files appear while we look
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error")]


def judge(res: Result, codes: tuple[int, ...], needles: tuple[str, ...] = (),
          limit: float = 60.0, report: bool = False) -> Outcome:
    """The usual verdict: failed on a hang, a traceback or the wrong exit code; weak when a
    refusal is not one line naming a fix (and `needles`), or it took over `limit` s.
    `report`: a command whose exit 1 is a finding (verify, repair, salvage) answers on
    stdout, which must then name what to do next (an error line may stand in for it)."""
    out = Outcome("held", seconds=round(res.seconds, 1), stderr=res.stderr[-2000:])
    if res.code is None:
        out.verdict, out.detail = "failed", f"hung ({res.seconds:.0f} s)"
    elif "Traceback" in res.stderr:
        out.verdict, out.detail = "failed", "traceback: " + res.stderr.strip().splitlines()[-1]
    elif res.code not in codes:
        out.verdict = "failed"
        out.detail = f"exit {res.code}, expected {codes}: {res.stderr.strip()[-300:]}"
    elif res.code != 0 and report and res.stdout.strip():
        text = res.stdout.strip()
        if not any(w in text.lower() for w in FIX_WORDS):
            out.verdict, out.detail = "weak", "the report names no next step: " + text[-200:]
        else:
            out.detail = text.splitlines()[-1]
    elif res.code != 0:
        errors = error_lines(res.stderr)
        text = " ".join(errors)
        if len(errors) != 1:
            out.verdict, out.detail = "weak", f"{len(errors)} error lines"
        elif len(text) > 400:
            out.verdict, out.detail = "weak", f"an error line of {len(text)} characters"
        elif not any(w in text.lower() for w in FIX_WORDS):
            out.verdict, out.detail = "weak", "names no fix: " + text
        elif missing := [n for n in needles if n not in text]:
            out.verdict, out.detail = "weak", f"does not say {missing}: {text}"
        else:
            out.detail = text
    if out.verdict == "held" and (warning := next(
            (x for x in res.stderr.splitlines() if "Warning:" in x), None)):
        out.verdict, out.detail = "weak", "prints a Python warning: " + warning.strip()[:200]
    if out.verdict == "held" and res.seconds > limit:
        out.verdict, out.detail = "weak", f"took {res.seconds:.0f} s"
    return out


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).exists() else ""
