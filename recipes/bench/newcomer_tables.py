"""Sections of docs/benchmarks-all.md for the records of recipes/bench/tour.py (README's
tour, timed) and recipes/bench/fault_matrix.py (the fault matrix), newest first."""
from __future__ import annotations

from collections import Counter

VERDICTS = ("held", "weak", "failed", "skipped", "error")


def _machine(r: dict) -> str:
    m = r["machine"]
    return f"{m['cpu']}, {m['cores']} cores, {m['cpu_capability']}"


def tour_lines(records: list[dict]) -> list[str]:
    tours = sorted((r for r in records if r.get("kind") == "tour" and not r.get("small")),
                   key=lambda r: r["date"], reverse=True)
    if not tours:
        return []
    newest = tours[0]
    lines = ["", "## README's tour, timed", "",
             "Every line of README's tour run as written in an empty directory "
             "(`python recipes/bench/tour.py --record`); the newest record, line by line, "
             "then every record's total.", "",
             f"Record `{newest['_record']}` ({_machine(newest)}; beside it: "
             f"{newest['machine']['concurrent']}).", "",
             "| line | exit | seconds |", "|---|---|---|"]
    lines += [f"| `{row['line']}` | {row['exit']} | {row['seconds']:.1f} |"
              for row in newest["lines"]]
    learned = newest.get("learning", {})
    if learned:
        final, step = learned.get("final_eval_return", "-"), learned.get("final_eval_step", "-")
        lines += ["", f"The tour's model: final greedy evaluation {final} at {step} "
                  f"agent steps; the random policy's episodes it collected: "
                  f"{learned.get('random_return', '-')}."]
    lines += ["", "| record | machine | all lines pass | total minutes |", "|---|---|---|---|"]
    lines += [f"| `{r['_record']}` | {_machine(r)} | {'yes' if r['passed'] else 'no'} | "
              f"{r['seconds'] / 60:.1f} |" for r in tours]
    return lines


def fault_lines(records: list[dict]) -> list[str]:
    runs = sorted((r for r in records if r.get("kind") == "faults"),
                  key=lambda r: r["date"], reverse=True)
    if not runs:
        return []
    newest = runs[0]
    lines = ["", "## Fault matrix", "",
             "Damaged stores, signals to every long-running command, bad input "
             "(`python recipes/bench/fault_matrix.py --record`; what each verdict means is in "
             "its docstring and [faults](faults.md)). Data lost: committed episodes or "
             "finished steps that nothing can get back.", "",
             "| record | machine | trials | " + " | ".join(VERDICTS) + " | data lost |",
             "|---|---|---|" + "---|" * len(VERDICTS) + "---|"]
    for r in runs:
        s = r["summary"]
        lines.append(f"| `{r['_record']}` | {_machine(r)} | {s['trials']} | "
                     + " | ".join(str(s.get(v, 0)) for v in VERDICTS) + f" | {s['data_lost']} |")
    by_group: dict[str, Counter] = {}
    for t in newest["trials"]:
        by_group.setdefault(t["group"], Counter())[t["verdict"]] += 1
    lines += ["", f"The newest by group (`{newest['_record']}`):", "",
              "| group | " + " | ".join(VERDICTS) + " |", "|---|" + "---|" * len(VERDICTS)]
    lines += [f"| {g} | " + " | ".join(str(c.get(v, 0)) for v in VERDICTS) + " |"
              for g, c in by_group.items()]
    open_ = [t for t in newest["trials"] if t["verdict"] != "held"]
    if open_:
        lines += ["", "Every trial that did not hold:", "", "| trial | verdict | what happened |",
                  "|---|---|---|"]
        lines += [f"| {t['group']}: {t['trial']} | {t['verdict']} | "
                  f"{t['detail'][:200].replace('|', '/').replace(chr(10), ' ')} |"
                  for t in open_]
    return lines
