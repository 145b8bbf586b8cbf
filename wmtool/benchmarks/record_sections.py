"""Sections of docs/benchmarks-all.md for the records of recipes/bench/tour.py (README's
tour, timed), recipes/bench/fault_matrix.py (the fault matrix), recipes/bench/play_speed.py
(`wmtool play` in a real browser) and recipes/bench/thread_probe.py (the thread probe),
newest first."""
from __future__ import annotations

import statistics
from collections import Counter

VERDICTS = ("held", "weak", "failed", "skipped", "error")


def _machine(r: dict) -> str:
    m = r["machine"]
    return f"{m['cpu']}, {m['cores']} cores, {m['cpu_capability']}"


def newest_first(records: list[dict], kind: str) -> list[dict]:
    return sorted((r for r in records if r.get("kind") == kind), key=lambda r: r["date"],
                  reverse=True)


def table(title: str, intro: str, columns: list[str], rows: list[list]) -> list[str]:
    """A section: its title, one paragraph, and a table (nothing when there are no rows)."""
    if not rows:
        return []
    return ["", f"## {title}", "", intro, "", "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def tour_lines(records: list[dict]) -> list[str]:
    tours = [r for r in newest_first(records, "tour") if not r.get("small")]
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
    runs = newest_first(records, "faults")
    full = [r for r in runs if not r.get("subset")]
    if not full:
        return []
    newest = full[0]
    lines = ["", "## Fault matrix", "",
             "Damaged stores, signals to every long-running command, bad input "
             "(`python recipes/bench/fault_matrix.py --record`; what each verdict means is in "
             "its docstring and [faults](faults.md)). Data lost: committed episodes or "
             "finished steps that nothing can get back.", "",
             "| record | machine | trials | " + " | ".join(VERDICTS) + " | data lost |",
             "|---|---|---|" + "---|" * len(VERDICTS) + "---|"]
    for r in full:
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
    reruns = [r for r in runs if r.get("subset") and r["date"] > newest["date"]]
    if reruns:
        lines += ["", f"Trials rerun since `{newest['_record']}` (the command names them):", "",
                  "| record | trial | verdict | what happened |", "|---|---|---|---|"]
        lines += [f"| `{r['_record']}` | {t['group']}: {t['trial']} | {t['verdict']} | "
                  f"{t['detail'][:200].replace('|', '/').replace(chr(10), ' ')} |"
                  for r in reruns for t in r["trials"]]
    return lines


def play_lines(records: list[dict]) -> list[str]:
    return table(
        "`wmtool play` in a real browser",
        "Debian's Chromium driven by Playwright (`python recipes/bench/play_speed.py --run RUN "
        "... --real --record`): the page's own count of frames/s (median after the first "
        "second) and key-to-frame latency, with the real env stepped beside the dream; then, "
        "paused, four single steps from the same start under each key. Targets: 30 frames/s "
        "for the demo model, 15 for `xs` at 64x64, p95 latency 100 ms.",
        ["record", "machine", "matmul GFLOP/s", "run", "frames/s", "latency p50 / p95 ms",
         "two keys, two frames", "same keys, same frame"],
        [[f"`{r['_record']}`", _machine(r), r.get("matmul_gflops_fp32", "-"),
          f"{row['algo']}: {row.get('model', row['run'])}",
          f"{row['fps_median']} of {row['fps_target']}",
          f"{row['latency_ms_p50']} / {row['latency_ms_p95']}",
          "yes" if row["keys_differ"] else "no",
          "yes" if row.get("replays_identically") else "no"]
         for r in newest_first(records, "play") for row in r["results"]])


def thread_lines(records: list[dict]) -> list[str]:
    return table(
        "The thread probe",
        "What `runtime.threads: 0` picks, on a quiet machine and beside a busy loop on one "
        "core, against 1 and 2 threads timed alone afterwards (median of 5 alternating "
        "blocks; `python recipes/bench/thread_probe.py --record`). It holds when each pick is "
        "at most 10% slower alone than the other count and the probe took at most 5 s.",
        ["record", "machine", "setting", "pick quiet (probe s)", "pick busy",
         "updates/s alone, 1 / 2 threads", "holds"],
        [[f"`{r['_record']}`", _machine(r), x["setting"],
          f"{x['probe_quiet']['threads']} ({x['probe_quiet'].get('seconds', '-')})",
          x["probe_busy"]["threads"],
          f"{x['alone_updates_per_s']['1']} / {x['alone_updates_per_s']['2']}",
          "yes" if x["holds"] else "no"]
         for r in newest_first(records, "threads") for x in r["results"]])


def planning_lines(records: list[dict]) -> list[str]:
    return table(
        "Planning latency",
        "Milliseconds per action of a planner on an untrained model (the cost does not depend "
        "on the weights), median of the timed actions after 3 warm-up ones "
        "(`python recipes/bench/planning_latency.py TASK --algo ALGO --record`).",
        ["record", "machine", "matmul GFLOP/s", "threads", "algo, task", "setting", "planner",
         "ms per action (quartiles)"],
        [[f"`{r['_record']}`", _machine(r), r["matmul_gflops_fp32"], r["machine"]["threads"],
          f"{r['algo']}, {r['task']}", row["setting"], row["planner"],
          f"{row['ms_per_action_median']} ({row['ms_quartiles'][0]}-{row['ms_quartiles'][1]})"]
         for r in newest_first(records, "planning") for row in r["results"]])


def replay_lines(records: list[dict]) -> list[str]:
    return table(
        "Replay against its capacity",
        "64x64x3 frames in 500-step episodes; replay filled past its capacity, then ms per "
        "added episode (median), ms per sampled batch of 16 x 64, and updates/s of a small "
        "pixel DreamerV3 drawing from it (`python recipes/bench/replay_scaling.py --record`). "
        "`ring`: today's replay; `before`: the one that shifted every row on eviction.",
        ["record", "machine", "replay", "capacity (rows)", "add ms", "sample ms", "updates/s"],
        [[f"`{r['_record']}`", _machine(r), row["replay"], f"{row['capacity']:,}",
          row["add_ms_median"], row["sample_ms_median"], row["updates_per_s"]]
         for r in newest_first(records, "replay") for row in r["results"]])


def stream_lines(records: list[dict]) -> list[str]:
    def refused(mem: dict) -> str:
        return "refused (exit 2)" if mem["exit"] == 2 else f"exit {mem['exit']}"
    return table(
        "Training from disk",
        "DreamerV3 (64x64 frames, batch 16 x 64, 2 threads): updates/s streaming from disk "
        "against the same dataset in memory (a store that fits; median of alternating runs), "
        "then the large store under a memory limit (`python recipes/bench/stream_replay.py "
        "[--noise] --record`; `--noise`: frames of random bytes, which do not compress).",
        ["record", "machine", "frames", "size", "updates/s memory", "updates/s stream", "share",
         "limit", "large store in memory", "peak RSS streaming", "its updates/s",
         "memory mode under the limit"],
        [[f"`{r['_record']}`", _machine(r), r.get("frames", "CartPole"), x["size"],
          f"{x['updates_per_s_memory']:.3g}", f"{x['updates_per_s_stream']:.3g}",
          f"{x['stream_share_of_memory']:.0%}", f"{r['limit_gb']} GB",
          f"{r['stores']['large.h5']['rows_in_memory_gb']} GB "
          f"({r['stores']['large.h5']['bytes_on_disk'] / 2**30:.2f} GB on disk)",
          f"{x['limited_auto']['peak_rss_gb']} GB", x["limited_auto"].get("updates_per_s", "-"),
          refused(x["limited_memory"])]
         for r in newest_first(records, "stream") for x in r["results"]])


def reference_lines(records: list[dict]) -> list[str]:
    return table(
        "The reference update against sheeprl",
        "DreamerV3 XS on vector CartPole, batch 16 x 64, 2 threads, fp32: wmtool "
        "(`recipes/bench/dreamer_throughput.py`) and sheeprl 0.8.4 "
        "(`recipes/bench/sheeprl_reference.py`) alternating in one session, median over rounds "
        "(`python recipes/bench/sheeprl_compare.py --sheeprl-python V/bin/python [--avx2] "
        "--record`).",
        ["record", "machine", "matmul GFLOP/s", "wmtool updates/s", "sheeprl updates/s", "ratio",
         "wmtool % of its fp32 matmul peak"],
        [[f"`{r['_record']}`", _machine(r), r["matmul_gflops_fp32"],
          f"{r['updates_per_s']['wmtool']:.3g}", f"{r['updates_per_s']['sheeprl']:.3g}",
          f"{r['ratio']:.2f}x", _peak_share(r)] for r in newest_first(records, "reference")])


def _peak_share(rec: dict) -> str:
    """The median over wmtool's rounds of the share of the fp32 matmul peak its update
    reached (each round measures its own peak)."""
    shares = [row["percent_of_fp32_matmul"] for row in rec["series"]["wmtool"]
              if row.get("percent_of_fp32_matmul") is not None]
    return f"{statistics.median(shares):.0f}%" if shares else ""
