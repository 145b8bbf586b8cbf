"""Write a benchmark run's record: one JSON file under benchmarks/results/ that holds what
a reader needs to trust and rerun the figure (DEVELOPERS.md, "Evidence rules").

    python recipes/bench/record.py RUN_DIR --command "..." [--plan-eval EVAL.json]
        [--variant "dream, tau 1.0"] [--measure NAME=RESULT.json[:KEY] ...]
        [--commit SHA] [--concurrent "3 runs, 1 thread each"] [--out benchmarks/results]

Contents: the command, the commit the run was made with, the date, the machine (CPU model,
cores, torch's cpu capability, torch version, threads, what else ran), the resolved config,
and one row per evaluation during training (agent and env steps, wall minutes the run had
worked by then, return mean/std/min/max, episodes, mode, seed) with the final one marked
`final`; the best is in its own `best` field, never the headline. A run stopped and resumed
(e.g. across machine sessions) lists its `pauses`, which its wall minutes leave out.
`--plan-eval` adds a separate evaluation of the final weights (the JSON `wmtool eval --json`
printed), e.g. TD-MPC2's planning.
`--variant` names what sets the run apart from others of the same algorithm and task (tables
keep variants apart); `--measure` attaches any other result a command printed as JSON (Genie's
held-out PSNR, World Models' held-out losses, a dataset's return), kept as printed.
Every record also keeps the run's training episodes (`training_episodes`: env steps at the
episode's end, return, agent steps long; from the run's own store), the run's status
(finished, interrupted, failed: every started run leaves a record) and `describe`, what
`git describe --always --dirty` said of the tree the run imported wmtool from when it
started and when the record was written (recipes/bench/guard.py refuses to start from a
dirty tree).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import yaml

EVAL_KEYS = ("return_mean", "return_std", "return_min", "return_max", "episodes", "seed")


def head_commit(tree: Path | str = ".") -> str:
    """The checked-out commit of `tree` ('' outside a git checkout)."""
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def describe(tree: Path | str = ".") -> str:
    """`git describe --always --dirty` of `tree`: its commit, with -dirty when tracked files
    differ from it ('' outside a git checkout)."""
    return subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty",
                           "--abbrev=12"], capture_output=True, text=True).stdout.strip()


def machine(threads: int | None, concurrent: str) -> dict:
    """CPU model, cores, torch and its cpu capability; `threads` None: given per result."""
    import torch

    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": threads,
            "isa_limits": isa_limits(), "concurrent": concurrent}


# ATen's kernels and oneDNN's (convolutions, most matmuls) pick their instruction set apart:
# an "AVX2 machine" figure taken on an AVX-512 CPU needs both capped.
ISA_LIMIT_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def isa_limits() -> dict:
    """The instruction-set caps set in the environment ({} when the CPU runs natively)."""
    return {k: os.environ[k] for k in ISA_LIMIT_VARS if k in os.environ}


def header(kind: str, command: str, concurrent: str, threads: int | None = None,
           tree: Path | str = ".") -> dict:
    """The fields every measurement record starts with: kind, command, commit, date, machine
    (`threads` None: given per result)."""
    return {"kind": kind, "command": command, "commit": head_commit(tree),
            "describe": describe(tree),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(threads, concurrent)}


def save(rec: dict, out: Path, stem: str) -> Path:
    """Writes `rec` as OUT/STEM-DATE-COMMIT7.json (-HHMMSS added if that exists) and prints
    the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{rec['date'][:10]}-{rec['commit'][:7]}.json"
    if path.exists():  # a second measurement that day at that commit: never overwrite one
        path = path.with_name(f"{path.stem}-{rec['date'][11:19].replace(':', '')}.json")
    path.write_text(json.dumps(rec, indent=1) + "\n")
    print(path)
    return path


def add_record_options(parser) -> None:
    """`--record` and `--concurrent` for a measuring script (see `keep`)."""
    parser.add_argument("--record", action="store_true",
                        help="also keep the result as benchmarks/results/KIND-DATE-COMMIT.json")
    parser.add_argument("--concurrent", default="nothing",
                        help="what else ran on the machine meanwhile (the record keeps it)")


def keep(kind: str, script: str, argv: list[str], result: dict, args,
         threads: int | None = None, peak: bool = True) -> Path | None:
    """With `--record`: `result` under the record header, with the command that made it and
    (`peak`) this process's fp32 matmul peak, in benchmarks/results/. Without: nothing."""
    if not args.record:
        return None
    import torch

    from wmtool.engine.bench import matmul_gflops

    script = Path(script).resolve()
    root = script.parents[2]
    rec = {**header(kind, f"python {script.relative_to(root)} {' '.join(argv)}".strip(),
                    args.concurrent, threads=threads, tree=root), "result": result}
    if peak:
        rec["matmul_gflops_fp32"] = round(matmul_gflops(torch.float32), 1)
    return save(rec, root / "benchmarks" / "results", kind)


def working_minutes(t: float, started: float, pauses: list) -> float:
    """Minutes the run worked from `started` to `t`: the wall time without its pauses
    (run.json's `pauses`: from its last write before a stop to its resume)."""
    stopped = sum(min(t, _time(end)) - _time(begin) for begin, end in pauses
                  if _time(begin) < t)
    return (t - started - stopped) / 60


def _time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


def evaluations(run: Path, started: float, repeat: int, mode: str, online: bool,
                agent_steps: int, pauses: list = (), final_mode: str = "") -> list[dict]:
    """One row per evaluation in metrics.jsonl. Its `step` is the agent-step clock online and
    the update count offline or in imagination, where the agent steps are the run's own.
    The final evaluation is the row logged with `eval/final` (acting in `final_mode` when
    set), or the last row in runs from before that flag."""
    metrics = run / "metrics.jsonl"  # a run that failed at its start has none
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] \
        if metrics.exists() else []
    rows = [r for r in rows if "eval/return_mean" in r]
    flagged = any(r.get("eval/final") for r in rows)
    out = [{**({"agent_steps": int(r["step"]), "env_steps": int(r["step"]) * repeat} if online
               else {"updates": int(r["step"]), "agent_steps": agent_steps,
                     "env_steps": agent_steps * repeat}),
            "wall_minutes": round(working_minutes(r["time"], started, pauses), 1),
            "mode": (final_mode or mode) if r.get("eval/final") else mode,
            **{k: r[f"eval/{k}"] for k in EVAL_KEYS if f"eval/{k}" in r},
            **({"final": True} if r.get("eval/final") else {})}
           for r in rows]
    if out and not flagged:
        out[-1]["final"] = True
    return out


def training_episodes(run: Path, repeat: int) -> list[list]:
    """[env steps at the episode's end, return, agent steps long, cut] of every episode the
    run trained on, in the order its store holds them (a single-process run: its only
    store). These are the numbers an author's training-episode curve is made of. `cut` marks
    the last episode when the run's stop cut it short (shorter than the run's longest), whose
    return is not an episode's."""
    from wmtool.data.store import EpisodeReader

    path = run / "replay" / "episodes.h5"
    if not path.exists():
        return []
    with EpisodeReader(path) as reader:
        lengths, returns = reader.index["length"], reader.index["return"]
    ends = (lengths.cumsum() * repeat).tolist()
    rows = [[int(end), round(float(ret), 4), int(n), False]
            for end, ret, n in zip(ends, returns.tolist(), lengths.tolist())]
    if len(rows) > 1 and rows[-1][2] < max(n for _, _, n, _ in rows):
        rows[-1][3] = True
    return rows


def record_name(rec: dict, out: Path) -> Path:
    """algo-task-seed-date, unique in `out` (a second record of the same second gets a suffix)."""
    task = rec["env"].split(":", 1)[-1].replace("/", "-")
    stamp = rec["date"].replace("-", "").replace(":", "")
    base = f"{rec['algo']}-{task}-{rec['seed']}-{stamp}"
    path, n = out / f"{base}.json", 1
    while path.exists() and json.loads(path.read_text())["run"] != rec["run"]:
        n += 1
        path = out / f"{base}-{n}.json"
    return path


def record(run: Path, command: str, commit: str, concurrent: str,
           plan_eval: dict | None, variant: str = "", measures: dict | None = None,
           started_as: str = "") -> dict:
    meta = json.loads((run / "run.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    started, pauses = _time(meta["created"]), meta.get("pauses", [])
    repeat = int(cfg["env"]["action_repeat"])
    agent_steps = int((meta.get("counters") or {}).get("agent_steps", cfg["train"]["steps"]))
    online = meta.get("mode", "online") == "online"
    evals = evaluations(run, started, repeat, cfg["train"]["eval_mode"], online, agent_steps,
                        pauses, cfg["train"].get("final_eval_mode", ""))
    finished = meta.get("status") == "finished"
    final = next((e for e in evals if e.get("final")), None) if finished else None
    tree = Path(__file__).resolve().parents[2]  # the checkout this script (and wmtool) is in
    out = {"record_version": 2, "run": str(run), "mode": meta.get("mode", "online"),
           "command": command, "commit": commit,
           # the tree the run imported wmtool from: at its start (recipes/bench/guard.py)
           # and now; "-dirty" means uncommitted changes to tracked files
           "describe": {"started": started_as, "recorded": describe(tree)},
           "date": meta["created"], "machine": machine(cfg["runtime"]["threads"], concurrent),
           "algo": meta["algo"], "env": meta["env"], "seed": cfg["seed"],
           "status": meta.get("status"), "config": cfg, "variant": variant,
           # what the run took: an imagine run in the dream takes no agent steps at all
           "budget": {"agent_steps": agent_steps, "env_steps": agent_steps * repeat},
           "measurements": measures or {},
           # stopped and resumed (e.g. across sessions): wall minutes leave these out
           "pauses": pauses,
           "evaluations": evals,
           # the headline: only a finished run has a final evaluation
           "final": final,
           "best": max(evals, key=lambda e: e["return_mean"]) if evals else None,
           "training_episodes": training_episodes(run, repeat) if online else []}
    if plan_eval is not None:
        out["final_weights_eval"] = {"mode": plan_eval.get("mode", "greedy"),
                                     **{k: plan_eval[k] for k in EVAL_KEYS if k in plan_eval}}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--command", required=True, help="the command line that made the run")
    p.add_argument("--commit", default=None, help="default: HEAD of this checkout")
    p.add_argument("--concurrent", default="", help="what else ran on the machine")
    p.add_argument("--plan-eval", type=Path, default=None,
                   help="`wmtool eval --json` output for the final weights")
    p.add_argument("--variant", default="", help="what sets this run apart, for the tables")
    p.add_argument("--measure", action="append", default=[], metavar="NAME=FILE[:KEY]",
                   help="attach a command's JSON result (or its KEY) under measurements[NAME]")
    p.add_argument("--describe", default="",
                   help="`git describe --dirty` of the tree when the run started "
                        "(recipes/bench/guard.py prints it)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    commit = a.commit or head_commit()
    plan = json.loads(a.plan_eval.read_text()) if a.plan_eval else None
    measures = {}
    for item in a.measure:
        name, sep, source = item.partition("=")
        if not sep:
            p.error(f"--measure {item!r}: expected NAME=FILE.json or NAME=FILE.json:KEY")
        file, _, key = source.partition(":")
        result = json.loads(Path(file).read_text())
        measures[name] = result[key] if key else result
    rec = record(a.run, a.command, commit, a.concurrent, plan, a.variant, measures, a.describe)
    a.out.mkdir(parents=True, exist_ok=True)
    path = record_name(rec, a.out)
    path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    print(path)


if __name__ == "__main__":
    main()
