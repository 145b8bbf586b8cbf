"""The held-out suite table (part of `make tables`): one frozen recipe per algorithm, tuned
on cartpole-balance with seeds 0-2, run on five other DMC tasks with seeds 100-102.

Per task and algorithm: the seeds' final evaluation (TD-MPC2: its final weights planning,
when the record has that evaluation), mean ± std with each seed's value; the published
DreamerV3 and TD-MPC2 curves (benchmarks/reference/dmc_proprio.json) linearly interpolated at
the same env steps, with the published points either side where they are far apart; a random
policy's return (`"kind": "random"` records); each run's wall minutes and what they come to
in minutes of one core; the records. Below: per algorithm, the suite
mean against the published one at the same env steps (their ratio is the normalised suite
score), counting only tasks that have held-out runs. The tuning task's runs are a separate,
labelled table: they are the tuning curve, not a result.
"""
from __future__ import annotations

import re

import numpy as np

SUITE = ("dmc:cartpole-swingup", "dmc:walker-walk", "dmc:cheetah-run", "dmc:finger-spin",
         "dmc:ball_in_cup-catch")
TUNING = "dmc:cartpole-balance"
ALGOS = ("dreamerv3", "tdmpc2")
HELD_OUT_FROM = 100  # seeds from here on were never used for tuning
ONE_CORE_TARGET = 60  # issue 30: each run within about an hour of one core


def interpolate(curve: list, env_steps: int) -> tuple[float | None, str]:
    """The published curve at `env_steps` (linear between its points) and, where the points
    either side are more than 20,000 env steps apart, which points those were."""
    xs = [p[0] for p in curve]
    if not curve or env_steps < xs[0] or env_steps > xs[-1]:
        return None, "outside the published curve"
    value = float(np.interp(env_steps, xs, [p[1] for p in curve]))
    right = int(np.searchsorted(xs, env_steps))
    if xs[right] == env_steps or xs[right] - xs[right - 1] <= 20_000:
        return value, ""
    (a, ya), (b, yb) = curve[right - 1], curve[right]
    return value, f" (between {ya:.0f} at {a:,} and {yb:.0f} at {b:,})"


def next_point(curve: list, env_steps: int) -> tuple[int, float] | None:
    """The published curve's first point at or past `env_steps`: a value the authors
    measured, for when the interpolated one is a straight line over a wide gap."""
    later = [(int(x), float(y)) for x, y in curve if x >= env_steps]
    return later[0] if later else None


def headline(r: dict) -> tuple[float, str]:
    if r.get("final_weights_eval"):
        return r["final_weights_eval"]["return_mean"], "final weights, planning" \
            if r["algo"] == "tdmpc2" else "final weights"
    return r["final"]["return_mean"], r["final"]["mode"]


def core_minutes(r: dict) -> float | None:
    """A run's wall minutes in minutes of one core: N one-thread runs sharing C cores get
    C / N of a core each when N > C. None when the record does not say how many ran at once
    (its `machine.concurrent`, e.g. "3 run(s) at a time, 1 thread(s) each"). Anything else
    the record lists beside the runs (tests, smoke runs) inflates it."""
    machine = r.get("machine") or {}
    shared = re.search(r"(\d+) run", machine.get("concurrent", ""))
    if not shared or not machine.get("cores"):
        return None
    runs = int(shared.group(1))
    return r["final"]["wall_minutes"] * min(1.0, machine["cores"] / runs)


def timing(members: list[dict]) -> str:
    """'wall (one-core)' minutes per run over the seeds, as ranges."""
    def span(values):
        lo, hi = min(values), max(values)
        return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"
    walls = [r["final"]["wall_minutes"] for r in members if "wall_minutes" in r["final"]]
    cores = [c for c in map(core_minutes, members) if c is not None]
    if not walls:
        return "-"
    return span(walls) + (f" ({span(cores)})" if len(cores) == len(members) else "")


def spread(values: list[float]) -> str:
    each = " / ".join(f"{v:.0f}" for v in values)
    return f"{np.mean(values):.1f} ± {np.std(values):.1f} ({each})" if len(values) > 1 else each


def groups(records: list[dict], tasks, keep) -> dict:
    out: dict = {}
    for r in records:
        if r.get("kind") or r.get("algo") not in ALGOS or r.get("env") not in tasks \
                or not r.get("final") or not keep(r["seed"]):
            continue
        out.setdefault((r["env"], r["algo"], r["budget"]["env_steps"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(out.items())}


def table(grouped: dict, reference: dict, randoms: dict) -> tuple[list[str], dict]:
    head = ["task", "algo", "seeds", "env steps", "final evaluation (mode)",
            "published DreamerV3 at these env steps", "published TD-MPC2 at these env steps",
            "random policy", "minutes per run: wall (one core)", "records"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means: dict = {}
    for (env, algo, env_steps), members in grouped.items():
        scores = [headline(r)[0] for r in members]
        modes = sorted({headline(r)[1] for r in members})
        published = {}
        for ref_algo in ALGOS:
            curve = reference.get(ref_algo, {}).get("tasks", {}).get(env, {}).get("curve", [])
            value, note = interpolate(curve, env_steps)
            published[ref_algo] = "-" if value is None else f"{value:.0f}{note}"
            if ref_algo == algo and value is not None:
                measured = next_point(curve, env_steps) if note else None
                means.setdefault(algo, []).append((env, scores, value, measured))
        rand = randoms.get(env)
        lines.append("| " + " | ".join([
            env, algo, ", ".join(str(r["seed"]) for r in members), f"{env_steps:,}",
            f"{spread(scores)} [{'/'.join(modes)}]", published["dreamerv3"], published["tdmpc2"],
            f"{rand['return_mean']:.0f}" if rand else "-", timing(members),
            ", ".join(f"`{r['_record']}`" for r in members)]) + " |")
    return lines, means


def coarse_caveat(rows: list) -> str:
    """When the published values were drawn as straight lines over wide gaps in the curve
    (TD-MPC2's points are 100,000 env steps apart), say so, and compare against the first
    point the authors measured past the budget too. A learning curve rises fastest early,
    so the straight line likely understates the published agent at the budget."""
    measured = [(np.mean(s), m) for _, s, _, m in rows if m is not None]
    if not measured:
        return ""
    at = sorted({x for _, (x, _) in measured})
    ours = np.mean([o for o, _ in measured])
    theirs = np.mean([y for _, (_, y) in measured])
    return (f" Its published curve has no point near this budget on {len(measured)} of these "
            f"tasks, so those values are straight lines between far-apart points (likely "
            f"below the published agent there); on those tasks against the published values at "
            f"{', '.join(f'{x:,}' for x in at)} env steps instead: {ours:.1f} vs "
            f"{theirs:.1f}, {ours / theirs:.2f}.")


def suite_lines(records: list[dict], reference: dict, picture: str | None = None) -> list[str]:
    """The section's markdown; `picture` is the curves' image (suite_plot.py), relative to it."""
    randoms = {r["env"]: r for r in records if r.get("kind") == "random"}
    held = groups(records, SUITE, lambda seed: seed >= HELD_OUT_FROM)
    tuning = groups(records, (TUNING,), lambda seed: seed < HELD_OUT_FROM)
    if not held and not tuning:
        return []
    lines = ["", "## Held-out suite (DMC from state)", "",
             "One frozen recipe per algorithm (`recipes/exp/<algo>__dmc_proprio_cpu.yaml`, no "
             "per-task values; action repeat 2), tuned on cartpole-balance with seeds 0-2 only, "
             f"run on {', '.join(t.partition(':')[2] for t in SUITE)} with seeds 100-102. "
             "Published figures are the authors' curves (benchmarks/reference/, with their "
             "protocols: DreamerV3's are training-episode returns, TD-MPC2's planning "
             "evaluations) interpolated at the same env steps. Minutes of one core: a run's wall "
             "minutes times the cores over the runs that shared them, when more runs than "
             "cores ran at once (the records' `machine.concurrent`, which also lists anything "
             "else that ran beside them).", ""]
    if picture:
        lines += [f"![Held-out suite learning curves]({picture})", ""]
    if held:
        body, means = table(held, reference, randoms)
        lines += body + [""]
        for algo in ALGOS:
            rows = means.get(algo, [])
            if not rows:
                continue
            ours = np.mean([np.mean(s) for _, s, _, _ in rows])
            theirs = np.mean([p for _, _, p, _ in rows])
            floor = {env: randoms[env]["return_mean"] for env, _, _, _ in rows if env in randoms}
            above = [env for env, s, _, _ in rows if env in floor and np.mean(s) > floor[env]]
            every = [env for env, s, _, _ in rows if env in floor and min(s) > floor[env]]
            runs = [r for (_, a, _), members in held.items() if a == algo for r in members]
            cores = [c for c in map(core_minutes, runs) if c is not None]
            within = sum(c <= ONE_CORE_TARGET for c in cores)
            lines.append(f"- {algo}: suite mean {ours:.1f} vs published {theirs:.1f} at the same "
                         f"env steps, normalised suite score {ours / theirs:.2f}, over "
                         f"{len(rows)} of {len(SUITE)} tasks; above the random policy on "
                         f"{len(above)} of them (every seed above it on {len(every)}); "
                         f"{within} of {len(cores)} timed runs within {ONE_CORE_TARGET} "
                         f"minutes of one core." + coarse_caveat(rows))
    else:
        lines.append("No held-out runs yet.")
    if tuning:
        body, _ = table(tuning, reference, randoms)
        lines += ["", "Tuning curve (cartpole-balance, seeds 0-2; not a result):", "", *body]
    return lines
