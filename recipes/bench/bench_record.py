"""Keep `wmtool bench --json` results as one record under benchmarks/results/.

    python recipes/bench/bench_record.py NAME RESULT.json... --command "..." [--out DIR]

The record holds the command, the commit, the date, the machine (CPU model, cores) and every
result as printed (each already names torch's cpu capability, threads and the matmul peaks
of its own process); `make tables` lists them under "wmtool bench". For comparisons, run the
settings alternately in one session and give every result file here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from wmtool.benchmarks.record import header, save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="what the results compare, e.g. compile-on-vs-off")
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--command", required=True, help="the commands that made the results")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    record = {**header("bench", a.command, "nothing"), "name": a.name,
              "results": [json.loads(f.read_text()) for f in a.results]}
    save(record, a.out, f"bench-{a.name}")


if __name__ == "__main__":
    main()
