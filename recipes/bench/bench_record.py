"""Keep `wmtool bench --json` results as one record under benchmarks/results/.

    python recipes/bench/bench_record.py NAME RESULT.json... --command "..." [--out DIR]

The record holds the command, the commit, the date, the machine (CPU model, cores) and every
result as printed (each already names torch's cpu capability, threads and the matmul peaks
of its own process); `make tables` lists them under "wmtool bench". For comparisons, run the
settings alternately in one session and give every result file here.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="what the results compare, e.g. compile-on-vs-off")
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--command", required=True, help="the commands that made the results")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    record = {"kind": "bench", "name": a.name, "command": a.command, "commit": commit,
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpu": model, "cores": os.cpu_count(), "concurrent": "nothing"},
              "results": [json.loads(f.read_text()) for f in a.results]}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"bench-{a.name}-{datetime.date.today().isoformat()}-{commit[:7]}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
