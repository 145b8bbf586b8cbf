"""The fault matrix: every fault issue 43 names (and those before it), tried on today's
code with real processes and real files, each trial judged held / weak / failed with the
data it lost.

    python recipes/bench/fault_matrix.py [--group store|signals|input] [--match TEXT]
        [--workdir DIR] [--record] [--concurrent "..."]

held: the right exit code, one error line that names its fix, nothing lost, no orphan
process. weak: the right outcome said poorly (several lines, no fix, a Python warning, slow).
failed: a hang, a traceback, the wrong outcome, an orphan, or data lost (committed episodes,
or a run's finished work, that nothing can get back). skipped: the fault could not be made
here (e.g. the command finished before the signal). Prints one line per trial and a JSON
summary; `--record` writes benchmarks/results/faults-DATE-COMMIT.json (docs/faults.md's
table comes from it: `python recipes/bench/tables.py`).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from faults import inputs, signals, store
from faults.common import Outcome

from wmtool.benchmarks.record import header, save

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {"store": store, "signals": signals, "input": inputs}


def run(groups: list[str], match: str, workdir: Path) -> list[dict]:
    rows = []
    for group in groups:
        for _, name, fn in GROUPS[group].trials():
            if match and match not in name:
                continue
            t = time.perf_counter()
            try:
                out = fn(workdir / group)
            except Exception:  # noqa: BLE001 - the harness's own error, kept apart
                out = Outcome("error", traceback.format_exc(limit=3)[-600:])
            out.seconds = round(time.perf_counter() - t, 1)
            rows.append({"group": group, "trial": name, "verdict": out.verdict,
                         "lost": out.lost, "detail": out.detail[:500],
                         "seconds": out.seconds})
            print(f"{out.verdict:7s} {out.seconds:6.1f} s  {group}: {name}"
                  + (f"  -- {out.detail[:160]}" if out.verdict != "held" else ""),
                  file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    counts = Counter(r["verdict"] for r in rows)
    return {"trials": len(rows), **{k: counts.get(k, 0) for k in
                                    ("held", "weak", "failed", "skipped", "error")},
            "data_lost": sum(r["lost"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", choices=sorted(GROUPS))
    ap.add_argument("--match", default="", help="only trials whose name contains this")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--concurrent", default="nothing")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wmtool-faults-"))
    rows = run(args.group or list(GROUPS), args.match, workdir)
    # a subset reruns some trials (e.g. after fixing one); tables headline the full runs
    result = {"summary": summary(rows), "trials": rows,
              "subset": bool(args.group or args.match)}
    print(json.dumps(result["summary"]))
    if args.record:
        command = "python recipes/bench/fault_matrix.py" + "".join(
            f" --group {g}" for g in args.group or []) + (f" --match '{args.match}'"
                                                           if args.match else "")
        save({**header("faults", command, args.concurrent), **result},
             ROOT / "benchmarks" / "results", "faults")


if __name__ == "__main__":
    main()
