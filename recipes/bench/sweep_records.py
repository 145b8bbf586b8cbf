"""A record for every run a benchmark sweep started, finished or not (recipes/bench/
heldout_suite.sh): a finished run's record holds its results, an interrupted or failed one's
says so, so an abandoned or rerun attempt leaves a trace in benchmarks/results/.

    python recipes/bench/sweep_records.py SWEEP_ROOT --command "..." --commit SHA
        --describe DESCRIBE [--concurrent "..."] [--out benchmarks/results]

Reads the sweep's index (SWEEP_ROOT/sweep.json). A run whose record already says finished is
left alone; the others' records are (re)written, under the same name, as their runs move on.
A run that failed before its directory held a run.json gets a short record with its
command's log tail. Prints each record written.
"""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from wmtool.benchmarks.record import machine, record, record_name


def stub(root: Path, run: dict, sweep: dict, command: str, commit: str, describe: str,
         concurrent: str) -> dict:
    """A run that never got as far as its run directory: what was tried, and how it ended."""
    log = root / f"{run['name']}.log"
    tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
    return {"record_version": 2, "run": str(root / run["name"]), "mode": "online",
            "command": command, "commit": commit,
            "describe": {"started": describe, "recorded": describe},
            # the log's time: the same record name however often the sweep is recorded
            "date": datetime.datetime.fromtimestamp(
                log.stat().st_mtime if log.exists() else datetime.datetime.now().timestamp()
            ).isoformat(timespec="seconds"),
            "machine": machine(1, concurrent), "algo": sweep["algo"],
            "env": next((s.partition("=")[2] for s in run["sets"] if s.startswith("env.id=")),
                        sweep["env"]),
            "seed": run["seed"], "status": run["status"], "exit_code": run["exit_code"],
            "log_tail": tail, "config": None, "variant": "", "budget": None,
            "evaluations": [], "final": None, "best": None, "training_episodes": []}


def write(root: Path, command: str, commit: str, describe: str, concurrent: str,
          out: Path) -> list[Path]:
    sweep = json.loads((root / "sweep.json").read_text())
    written = []
    for run in sweep["runs"]:
        directory = root / run["name"]
        marker = directory / "record.path"
        if run["status"] == "pending" and not (directory / "run.json").exists():
            continue  # never started
        if marker.exists() and Path(marker.read_text().strip()).exists() and \
                json.loads(Path(marker.read_text().strip()).read_text())["status"] == "finished":
            continue
        if (directory / "run.json").exists():
            rec = record(directory, command, commit, concurrent, None, started_as=describe)
            rec["sweep"] = {"root": str(root), "name": run["name"], "status": run["status"],
                            "exit_code": run["exit_code"], "resumed": run["resumed"]}
        else:
            rec = stub(root, run, sweep, command, commit, describe, concurrent)
        out.mkdir(parents=True, exist_ok=True)
        path = record_name(rec, out)
        path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
        if directory.exists():
            marker.write_text(f"{path}\n")
        written.append(path)
        print(path)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--command", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--describe", required=True)
    p.add_argument("--concurrent", default="")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    write(a.root, a.command, a.commit, a.describe, a.concurrent, a.out)


if __name__ == "__main__":
    main()
