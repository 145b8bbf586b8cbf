"""`wmtool sweep`: a grid of training runs (seeds x `--set` values x recipes), K at a time.

Every grid point is an ordinary `wmtool train` run in its own directory under the sweep's
root, so each one can be inspected, resumed or compared on its own. The root's `sweep.json`
is the sweep's index: the grid, every run's command and its last known status. Running the
same sweep again skips finished runs, resumes interrupted ones from their checkpoints and
starts the rest; a different grid for the same root is refused. Runs are separate
processes: K at a time on this machine through a standard-library process pool, each with
its CPU threads pinned (cores / K unless given) and, with `--gpus`, one GPU each through
CUDA_VISIBLE_DEVICES.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wmtool import rundir
from wmtool.errors import STOPPED_BY_CTRL_C, STOPPED_BY_SIGTERM, WmtoolError
from wmtool.rundir import write_atomic
from wmtool.runtime import choose_threads

INDEX = "sweep.json"
SAVING = threading.Lock()  # runs finish on several threads; the index is written whole, once


@dataclass
class SweepRun:
    name: str
    seed: int
    sets: list[str]
    recipe: str | None
    status: str = "pending"  # pending | running | finished | interrupted | failed
    exit_code: int | None = None
    resumed: int = 0  # times this sweep resumed it


@dataclass
class Sweep:
    root: Path
    algo: str
    env: str | None  # None: each run's recipe names its env
    train_args: list[str]  # the same for every run (--size, --steps, --set ...)
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def grid(self) -> dict:
        return {"algo": self.algo, "env": self.env, "train_args": self.train_args,
                "runs": [(r.name, r.seed, r.sets, r.recipe) for r in self.runs]}

    def save(self) -> None:
        with SAVING:
            data = {"algo": self.algo, "env": self.env, "train_args": self.train_args,
                    "runs": [asdict(r) for r in self.runs]}
            write_atomic(self.root / INDEX, json.dumps(data, indent=1))

    def command(self, run: SweepRun, threads: int) -> list[str]:
        """The `wmtool train` command that brings `run` forward: a resume when its directory
        exists (counted in `run.resumed`), else a fresh run with its threads pinned."""
        path = self.root / run.name
        if (path / "run.json").exists():
            run.resumed += 1
            return [sys.executable, "-m", "wmtool", "train", "--resume", str(path), "--quiet",
                    "--json"]
        recipe = ["--recipe", run.recipe] if run.recipe else []
        env = ["--env", self.env] if self.env else []
        return [sys.executable, "-m", "wmtool", "train", "--algo", self.algo, *env, *recipe,
                "--seed", str(run.seed), *self.train_args,
                *[a for s in run.sets for a in ("--set", s)], "--run-dir", str(path),
                "--set", f"runtime.threads={threads}", "--quiet", "--json"]

    def settle(self, run: SweepRun, exit_code: int) -> None:
        """A run's status after its process ended: what its directory says, or failed."""
        run.exit_code = exit_code
        run.status = status_on_disk(self.root / run.name)
        stopped = exit_code in (STOPPED_BY_CTRL_C, STOPPED_BY_SIGTERM)
        if (run.status == "pending" and not stopped) or (
                exit_code and run.status in ("running", "finished")):
            run.status = "failed"  # a run stopped before it wrote anything stays pending
        self.save()


def parse_grid(items: list[str]) -> list[list[str]]:
    """`key=v1,v2` -> [['key=v1', 'key=v2']], one list per key."""
    out = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise WmtoolError(f"--grid {item!r} is not key=value1,value2",
                              "e.g. --grid actor.lr=1e-4,3e-4")
        out.append([f"{key}={v}" for v in values.split(",")])
    return out


def run_name(seed: int, sets: list[str], recipe: str | None) -> str:
    parts = ([Path(recipe).stem] if recipe else []) + sets + [f"seed{seed}"]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))


def plan(root: Path, algo: str, env: str | None, seeds: list[int], grid: list[str],
         recipes: list[str | None], train_args: list[str]) -> Sweep:
    """The sweep at `root`: a new one, or the one already there if the grid is the same."""
    sweep = Sweep(Path(root).resolve(), algo, env, list(train_args))
    for recipe, sets, seed in itertools.product(recipes or [None],
                                                itertools.product(*parse_grid(grid)), seeds):
        sweep.runs.append(SweepRun(run_name(seed, list(sets), recipe), seed, list(sets), recipe))
    index = sweep.root / INDEX
    if index.exists():
        try:
            old = json.loads(index.read_text())
            before = Sweep(sweep.root, old["algo"], old["env"], old["train_args"],
                           [SweepRun(**r) for r in old["runs"]])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise WmtoolError(f"{index} is damaged ({type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0]})",
                              f"move it aside and run the same sweep command again: it is "
                              f"rewritten, and the run directories under {sweep.root} are "
                              "kept and resumed") from None
        if before.grid != sweep.grid:
            raise WmtoolError(f"{sweep.root} holds another sweep (its {INDEX} has a different "
                              "grid)", "pass the same options, or another --root")
        return before
    sweep.root.mkdir(parents=True, exist_ok=True)
    sweep.save()
    return sweep


def die_with_parent() -> None:
    """In a run's process, before it starts (Linux): SIGTERM when the sweep dies, even by
    SIGKILL, so no run trains on unsupervised; it checkpoints and stops as on any SIGTERM."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def status_on_disk(path: Path) -> str:
    """What a run directory says about itself (pending when it does not exist yet)."""
    if not (path / "run.json").exists():
        return "pending"
    return rundir.read_meta(path).get("status", "running")


def execute(sweep: Sweep, jobs: int, threads: int = 0, gpus: list[str] | None = None,
            on_change=None) -> Sweep:
    """Run every unfinished run, `jobs` at a time; returns the sweep with statuses."""
    threads = threads or max(1, choose_threads(0) // jobs)
    slots: queue.Queue = queue.Queue()
    for i in range(jobs):
        slots.put(gpus[i % len(gpus)] if gpus else None)
    children: set[subprocess.Popen] = set()
    stopping = threading.Event()
    starting = threading.Lock()  # a run starts wholly before a stop, or not at all

    def one(run: SweepRun) -> None:
        run.status = status_on_disk(sweep.root / run.name)
        if run.status == "finished":
            return
        gpu = slots.get()
        try:
            command = sweep.command(run, threads)
            env = dict(os.environ)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            with open(sweep.root / f"{run.name}.log", "ab") as log:
                with starting:
                    if stopping.is_set():
                        return
                    # its own session: the terminal's Ctrl-C reaches the sweep only, which
                    # passes on one SIGTERM (two signals would cut the run's checkpoint short)
                    child = subprocess.Popen(command, env=env, stdout=log, stderr=log,
                                             preexec_fn=die_with_parent,
                                             start_new_session=True)
                    children.add(child)
                run.status = "running"
                if on_change:
                    on_change(run)
                sweep.settle(run, child.wait())
                children.discard(child)
        finally:
            slots.put(gpu)
            sweep.save()
            if on_change and run.status != "pending":
                on_change(run)

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(one, run) for run in sweep.runs]:
            future.result()
    except BaseException:
        # Ctrl-C or SIGTERM: runs not started stay pending; running ones get SIGTERM, so
        # each checkpoints and stops as `wmtool train` does, and the next sweep resumes them
        with starting:
            stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for child in list(children):
            child.send_signal(signal.SIGTERM)
        pool.shutdown(wait=True)
        sweep.save()
        raise
    pool.shutdown()
    return sweep
