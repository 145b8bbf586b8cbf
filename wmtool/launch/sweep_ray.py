"""`wmtool sweep --ray ADDRESS`: the sweep's runs as tasks on an existing Ray cluster.

Each run is one Ray task asking for the run's CPU threads (and `--gpus-per-run` GPUs, which
Ray exposes through CUDA_VISIBLE_DEVICES); the task runs the same `wmtool train` command a
local sweep would, on whichever node Ray places it, so run directories must sit on a
filesystem every node sees and every node needs the same Python environment. Stopping the
sweep cancels the tasks; each sends its run SIGTERM, so the run checkpoints and the next
sweep resumes it. Ray is an optional extra: `pip install 'wmtool[ray]'`.
"""
from __future__ import annotations

import signal
import subprocess

from wmtool.errors import WmtoolError
from wmtool.launch.sweep import Sweep, status_on_disk


def train_task(command: list[str], log_path: str) -> int:
    """Body of one Ray task: run `command`, passing on a cancellation as SIGTERM."""
    with open(log_path, "ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            return child.wait()
        except BaseException:  # ray.cancel raises KeyboardInterrupt in the task
            child.send_signal(signal.SIGTERM)
            return child.wait()


def execute_on_ray(sweep: Sweep, address: str, threads: int, gpus_per_run: float = 0,
                   on_change=None) -> Sweep:
    try:
        import ray
    except ImportError:
        raise WmtoolError("--ray needs Ray installed", "pip install 'wmtool[ray]'") from None
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    task = ray.remote(train_task)
    pending = {}
    try:
        for run in sweep.runs:
            run.status = status_on_disk(sweep.root / run.name)
            if run.status == "finished":
                continue
            command = sweep.command(run, threads)
            ref = task.options(num_cpus=threads, num_gpus=gpus_per_run).remote(
                command, str(sweep.root / f"{run.name}.log"))
            pending[ref] = run
            run.status = "running"
        sweep.save()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                run = pending.pop(ref)
                sweep.settle(run, ray.get(ref))
                if on_change:
                    on_change(run)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=120)
        for run in pending.values():
            run.status = status_on_disk(sweep.root / run.name)
        sweep.save()
        raise
    finally:
        ray.shutdown()
    return sweep
