"""The held-out suite table (part of `make tables`): one frozen recipe per algorithm, tuned
on cartpole-balance with seeds 0-2 (TD-MPC2 also on pendulum-swingup), run on five other DMC
tasks with seeds 100-102.

Per task and algorithm: the seeds' final evaluation (one per algorithm: DreamerV3 greedy,
TD-MPC2 planning; 10 episodes from the run seed + 2^30 starts), mean ± std with each seed's
value; the runs' training-episode returns in the authors' bin that holds the budget
(curves.py); the published figure measured with the same protocol (benchmarks/reference/
dmc_proprio.json, its `compare`: DreamerV3's training-episode returns, TD-MPC2's planning
evaluations), only where the authors measured a point within 10% of the budget, else the
measured points either side with their env steps; their ratio only where both exist; a
random policy's return (`"kind": "random"` records); each run's wall minutes and what they
come to in minutes of one core; the records. Below: per algorithm, the per-task ratios,
their median and IQM with a seed-bootstrap interval (aggregate.py), and counts against the
random policy and the time target. The tuning tasks' runs are a separate, labelled table:
they are tuning curves, not results.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from wmtool.benchmarks.aggregate import aggregates, bootstrap
from wmtool.benchmarks.curves import TOLERANCE, bin_at, measured_point, nearest_points

HELD_OUT_FROM = 100  # seeds from here on were never used for tuning
ONE_CORE_TARGET = 60  # issue 30: each run within about an hour of one core
BOOTSTRAP = {"reps": 10_000, "seed": 0}
# what an algorithm's "greedy" mode is called in its own terms
MODE_NAMES = {("tdmpc2", "greedy"): "planning"}


class Suite(NamedTuple):
    """One held-out suite: what its runs learn from, its tasks, the tasks its recipes were
    tuned on, its algorithms, the published curves it is compared with (a file in
    benchmarks/reference/) and the paragraph that says how it was run."""
    name: str
    obs: str
    tasks: tuple
    tuning: tuple
    algos: tuple
    reference: str
    about: str

    @property
    def slug(self) -> str:
        return f"heldout-{self.reference.removesuffix('.json').replace('_', '-')}"


STATE = Suite(
    "DMC from state", "state",
    ("dmc:cartpole-swingup", "dmc:walker-walk", "dmc:cheetah-run", "dmc:finger-spin",
     "dmc:ball_in_cup-catch"),
    ("dmc:cartpole-balance", "dmc:pendulum-swingup"),  # TD-MPC2 was tuned on both
    ("dreamerv3", "tdmpc2"), "dmc_proprio.json",
    "One frozen recipe per algorithm (`recipes/exp/<algo>__dmc_proprio_cpu.yaml`, no "
    "per-task values; action repeat 2), tuned on cartpole-balance with seeds 0-2 only "
    "(TD-MPC2 also on pendulum-swingup), run on cartpole-swingup, walker-walk, cheetah-run, "
    "finger-spin and ball_in_cup-catch with seeds 100-102. Final evaluation: one per "
    "algorithm, 10 episodes from the run seed + 2^30 starts (DreamerV3 greedy, TD-MPC2 "
    "planning); a label says where a record differs. Published figures are the authors' own "
    "measurements under their protocol (benchmarks/reference/): DreamerV3's are "
    "training-episode returns, so ours are binned the same way (10,000 env-step bins "
    "labelled by their right edge); TD-MPC2's are 10-episode planning evaluations, compared "
    "with our final evaluation.")

# Issue 42: the pixel suite. DreamerV3 on all three tasks; Dreamer V1, V2 and PlaNet on
# cartpole-swingup only (the budget).
VISION = Suite(
    "DMC from pixels", "pixels",
    ("dmc:cartpole-swingup", "dmc:ball_in_cup-catch", "dmc:finger-spin"),
    ("dmc:cartpole-balance",),
    ("dreamerv3", "dreamerv2", "dreamerv1", "planet"), "dmc_vision.json",
    "One frozen recipe per algorithm (`recipes/exp/<algo>__dmc_vision_cpu.yaml`, 64x64 "
    "pixels, no per-task values; action repeat 2 except PlaNet's per-domain repeats), tuned "
    "on cartpole-balance (pixels) with seeds 0-2 only, run on cartpole-swingup, "
    "ball_in_cup-catch and finger-spin (DreamerV3; the others on cartpole-swingup) with "
    "seeds 100-102. Final evaluation: 10 greedy episodes from the run seed + 2^30 starts. "
    "Published figures (benchmarks/reference/dmc_vision.json): DreamerV3's dmc_vision "
    "score file (10 seeds), training-episode returns in 10,000 env-step bins labelled by "
    "their right edge, so ours are binned the same way; Dreamer V1's released points (5 "
    "seeds, every 100,000 env steps from 5,000) and PlaNet's value at 1M env steps, both "
    "compared with our final evaluation and shown as measured points when none lies near "
    "the budget. Dreamer V2 has no published figure here: compare it with the other rows "
    "of its task.")

SUITES = (STATE, VISION)


def final_evaluation(r: dict) -> tuple[float, str]:
    """A run's one final evaluation and how it acted: a separate scoring of its final
    weights when the record has one (Atari's long evaluation; TD-MPC2's planning before the
    final evaluation planned itself), else the final evaluation of the run."""
    e = r.get("final_weights_eval") or r["final"]
    mode = MODE_NAMES.get((r["algo"], e.get("mode", "greedy")), e.get("mode", "greedy"))
    label = f"{mode}, {e['episodes']:.0f} episodes" if "episodes" in e else mode
    seed = r.get("seed")
    if "seed" in e and seed is not None and int(e["seed"]) != seed + 2**30:
        label += f", seed {int(e['seed'])}"  # not the run's evaluation starts
    return e["return_mean"], label


def training_bin(r: dict, size: int) -> tuple[int, float, int] | None:
    """The run's training-episode returns in the authors' bin that holds its budget."""
    return bin_at(r.get("training_episodes") or [], size, r["budget"]["env_steps"])


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


def observation(r: dict) -> str:
    """What a run learned from: "state", "pixels" or "both" (its config's env.obs)."""
    return ((r.get("config") or {}).get("env") or {}).get("obs", "state")


def groups(records: list[dict], tasks, keep, suite: Suite = STATE) -> dict:
    """Finished learning runs of the suite's algorithms on `tasks` from its observations, by
    (task, algo, budget), for the seeds `keep` accepts."""
    out: dict = {}
    for r in records:
        if r.get("kind") or r.get("algo") not in suite.algos or r.get("env") not in tasks \
                or not r.get("final") or not keep(r["seed"]) or observation(r) != suite.obs:
            continue
        out.setdefault((r["env"], r["algo"], r["budget"]["env_steps"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(out.items())}


def compared(members: list[dict], algo: str, env: str, reference: dict) -> dict:
    """Ours and the published figure under the published protocol, for one task's seeds:
    `ours` (a value per seed, or None where a record lacks what the protocol needs),
    `published` ((env steps, value) measured within TOLERANCE of the budget, or None),
    `around` (the measured points either side when there is none), and the cells."""
    ref = reference.get(algo, {})
    how = ref.get("compare", {"with": "final_evaluation"})
    curve = ref.get("tasks", {}).get(env, {}).get("curve", [])
    budget = members[0]["budget"]["env_steps"]
    if how["with"] == "training_episodes":
        bins = [training_bin(r, how["bin"]) for r in members]
        ours = None if None in bins else [b[1] for b in bins]
        edge = (budget + how["bin"] - 1) // how["bin"] * how["bin"]
        lo = edge - how["bin"]
        cell = "not recorded" if ours is None else \
            f"{spread(ours)} in [{lo:,}, {edge:,}), {sum(b[2] for b in bins)} episodes"
        # the authors' value of that same bin, if it lies within TOLERANCE of the budget
        point = next(((int(x), float(y)) for x, y in curve if x == edge), None)
        if point and abs(point[0] - budget) > TOLERANCE * budget:
            point = None
    else:  # the final evaluation is the published protocol's own
        ours, cell = [final_evaluation(r)[0] for r in members], "-"
        point = measured_point(curve, budget)
    around = [] if point else nearest_points(curve, budget)
    return {"ours": ours, "published": point, "around": around, "training_cell": cell,
            "with": how["with"]}


def published_cell(c: dict, budget: int) -> str:
    if c["published"]:
        x, y = c["published"]
        return f"{y:.0f} at {x:,}"
    if not c["around"]:
        return "-"
    points = "; ".join(f"{y:.0f} at {x:,}" for x, y in c["around"])
    return f"none within {TOLERANCE:.0%} of {budget:,} (measured: {points})"


def table(grouped: dict, reference: dict, randoms: dict) -> tuple[list[str], dict]:
    head = ["task", "algo", "seeds", "env steps", "final evaluation (mode, episodes)",
            "training-episode returns, authors' bin", "published (same protocol as the ratio)",
            "ours / published", "random policy", "minutes per run: wall (one core)",
            "records"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summary: dict = {}
    for (env, algo, env_steps), members in grouped.items():
        finals = [final_evaluation(r) for r in members]
        scores = [v for v, _ in finals]
        c = compared(members, algo, env, reference)
        ratio = np.mean(c["ours"]) / c["published"][1] \
            if c["ours"] and c["published"] and c["published"][1] else None
        summary.setdefault(algo, []).append((env, members, scores, c, ratio))
        rand = randoms.get(env)
        lines.append("| " + " | ".join([
            env, algo, ", ".join(str(r["seed"]) for r in members), f"{env_steps:,}",
            f"{spread(scores)} [{'; '.join(sorted({m for _, m in finals}))}]",
            c["training_cell"], published_cell(c, env_steps),
            "-" if ratio is None else f"{ratio:.2f}",
            f"{rand['return_mean']:.0f}" if rand else "-", timing(members),
            ", ".join(f"`{r['_record']}`" for r in members)]) + " |")
    return lines, summary


def ratio_line(rows: list) -> str:
    """Per-task ratios, their median and the runs' IQM with seed-bootstrap intervals."""
    rated = [(env, c, ratio) for env, _, _, c, ratio in rows if ratio is not None]
    far = sum(c["published"] is None for _, _, _, c, _ in rows)
    unrecorded = sum(c["ours"] is None for _, _, _, c, _ in rows)
    gaps = "; ".join(part for part in (
        f"{far} task(s) without a published point within {TOLERANCE:.0%} of the budget (the "
        "table lists the measured points either side)" if far else "",
        f"{unrecorded} task(s) whose records lack what the published protocol measures"
        if unrecorded else "") if part)
    if not rated:
        return f"no ratio: {gaps}"
    per_run = {env: np.array(c["ours"]) / c["published"][1] for env, c, _ in rated}
    agg, ci = aggregates(per_run), bootstrap(per_run, **BOOTSTRAP)
    each = ", ".join(f"{env.partition(':')[2]} {ratio:.2f}" for env, _, ratio in rated)
    protocol = {c["with"] for _, c, _ in rated}.pop().replace("_", "-")
    return (f"ours / published ({protocol} protocol) per task: {each}; median "
            f"{agg['median']:.2f} [{ci['median'][0]:.2f}, {ci['median'][1]:.2f}], IQM "
            f"{agg['iqm']:.2f} [{ci['iqm'][0]:.2f}, {ci['iqm'][1]:.2f}] over "
            f"{len(rated)} of {len(rows)} tasks (95% intervals: the seeds resampled within "
            f"each task, {BOOTSTRAP['reps']:,} times; the published values are the authors' "
            "seed means, held fixed)" + (f"; {gaps}" if gaps else ""))


def summary_line(algo: str, rows: list, randoms: dict, suite: Suite) -> str:
    floor = {env: randoms[env]["return_mean"] for env, *_ in rows if env in randoms}
    above = [env for env, _, s, _, _ in rows if env in floor and np.mean(s) > floor[env]]
    every = [env for env, _, s, _, _ in rows if env in floor and min(s) > floor[env]]
    runs = [r for _, members, *_ in rows for r in members]
    cores = [c for c in map(core_minutes, runs) if c is not None]
    within = sum(c <= ONE_CORE_TARGET for c in cores)
    mean = np.mean([np.mean(s) for _, _, s, _, _ in rows])
    return (f"- {algo}: final evaluation, suite mean {mean:.1f} over {len(rows)} of "
            f"{len(suite.tasks)} tasks; {ratio_line(rows)}; above the random policy on "
            f"{len(above)} tasks (every seed above it on {len(every)}); {within} of "
            f"{len(cores)} timed runs within {ONE_CORE_TARGET} minutes of one core.")


def held_and_tuning(records: list[dict], suite: Suite) -> tuple[dict, dict]:
    """The suite's held-out runs (seeds from 100) and its tuning runs (seeds below 100)."""
    return (groups(records, suite.tasks, lambda seed: seed >= HELD_OUT_FROM, suite),
            groups(records, suite.tuning, lambda seed: seed < HELD_OUT_FROM, suite))


def suite_lines(records: list[dict], reference: dict, picture: str | None = None,
                suite: Suite = STATE) -> list[str]:
    """The section's markdown; `picture` is the curves' image (suite_plot.py), relative to it."""
    randoms = {r["env"]: r for r in records if r.get("kind") == "random"}
    held, tuning = held_and_tuning(records, suite)
    if not held and not tuning:
        return []
    lines = ["", f"## Held-out suite ({suite.name})", "",
             suite.about + " A ratio appears only where the authors measured a point within "
             f"{TOLERANCE:.0%} of the budget; elsewhere the measured points either side are "
             "shown, never a line drawn between them. Minutes of one core: a run's wall "
             "minutes times the cores over the runs that shared them, when more runs than "
             "cores ran at once (the records' `machine.concurrent`, which also lists anything "
             "else that ran beside them).", ""]
    if picture:
        lines += [f"![Held-out suite ({suite.name}) learning curves]({picture})", ""]
    if held:
        body, summary = table(held, reference, randoms)
        lines += body + [""]
        lines += [summary_line(algo, summary[algo], randoms, suite)
                  for algo in suite.algos if algo in summary]
    else:
        lines.append("No held-out runs yet.")
    if tuning:
        body, _ = table(tuning, reference, randoms)
        tasks = " and ".join(t.partition(":")[2] for t in suite.tuning)
        lines += ["", f"Tuning curves ({tasks}; seeds 0-2; not results):", "", *body]
    return lines


def glance_lines(records: list[dict], reference: dict, picture: str | None = None,
                  suite: Suite = STATE) -> list[str]:
    """The suite at a glance (the summary page): its curves, one short row per task and
    algorithm (final evaluation, the like-for-like ratio, the random policy) and each
    algorithm's aggregate line; the full table with every seed and record is on the page of
    all tables."""
    randoms = {r["env"]: r for r in records if r.get("kind") == "random"}
    held, _ = held_and_tuning(records, suite)
    if not held:
        return []
    lines = ["", f"## Held-out suite ({suite.name})", ""]
    if picture:
        lines += [f"![Held-out suite ({suite.name}) learning curves]({picture})", ""]
    _, summary = table(held, reference, randoms)
    head = ["task", "algo", "seeds", "final evaluation", "ours / published", "random"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algo in suite.algos:
        for env, members, scores, _, ratio in summary.get(algo, []):
            rand = randoms.get(env)
            lines.append("| " + " | ".join([
                env.partition(":")[2], algo, str(len(members)),
                f"{np.mean(scores):.0f} ± {np.std(scores):.0f}",
                "-" if ratio is None else f"{ratio:.2f}",
                f"{rand['return_mean']:.0f}" if rand else "-"]) + " |")
    lines += [""] + [summary_line(algo, summary[algo], randoms, suite)
                     for algo in suite.algos if algo in summary]
    return lines
