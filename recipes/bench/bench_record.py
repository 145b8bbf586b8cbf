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
from pathlib import Path

from record import head_commit, machine  # recipes/bench/record.py


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="what the results compare, e.g. compile-on-vs-off")
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--command", required=True, help="the commands that made the results")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    commit = head_commit()
    record = {"kind": "bench", "name": a.name, "command": a.command, "commit": commit,
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine(None, "nothing"),
              "results": [json.loads(f.read_text()) for f in a.results]}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"bench-{a.name}-{datetime.date.today().isoformat()}-{commit[:7]}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
