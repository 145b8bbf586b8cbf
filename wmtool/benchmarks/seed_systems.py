"""Sections of docs/benchmarks-all.md for the two seed systems that are not scored on DMC
(issue 42): World Models on CarRacing, its final controller scored over the paper's 100
seeded episodes beside a random policy and the paper's own figure; and Genie on Atari games
it was not tuned on, graded on held-out episodes against chance."""
from __future__ import annotations

import numpy as np

CARRACING = "gym:CarRacing-v3"


def _spread(values: list[float], decimals: int = 1) -> str:
    each = " / ".join(f"{v:.{decimals}f}" for v in values)
    if len(values) == 1:
        return each
    return f"{np.mean(values):.{decimals}f} ± {np.std(values):.{decimals}f} ({each})"


def _by(records: list[dict], key) -> dict:
    out: dict = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(out.items())}


def _names(members: list[dict]) -> str:
    return ", ".join(f"`{r['_record']}`" for r in members)


def worldmodels_lines(records: list[dict], reference: dict) -> list[str]:
    """Finished World Models controllers on CarRacing, one row per variant over its seeds;
    then the random policy's record and the paper's figure, which is at another scale and
    enters no ratio."""
    runs = [r for r in records if r.get("kind") is None and r.get("algo") == "worldmodels"
            and r.get("env") == CARRACING and r.get("final")]
    if not runs:
        return []
    lines = ["", "## World Models on CarRacing", "",
             "Each row: controllers of one variant (`recipes/bench/worldmodels_carracing.sh`), "
             "their final evaluation in the real env from the run seed + 2^30 starts, mean ± "
             "std over seeds (each seed's mean in parentheses). The World Models paper scores "
             "a controller over 100 episodes.", "",
             "| variant | seeds | episodes per seed | final evaluation | minutes per run | "
             "records |", "|---|---|---|---|---|---|"]
    for variant, members in _by(runs, lambda r: r.get("variant", "")).items():
        finals = [r["final"] for r in members]
        episodes = sorted({int(f.get("episodes", 0)) for f in finals})
        minutes = [f["wall_minutes"] for f in finals if "wall_minutes" in f]
        lines.append(f"| {variant} | {', '.join(str(r['seed']) for r in members)} | "
                     f"{', '.join(map(str, episodes))} | "
                     f"{_spread([f['return_mean'] for f in finals])} | "
                     f"{_spread(minutes) if minutes else '-'} | {_names(members)} |")
    random = [r for r in records if r.get("kind") == "random" and r.get("env") == CARRACING]
    if random:
        rand = random[-1]
        lines += ["", f"Random policy (`{rand['_record']}`): {rand['return_mean']:.1f} ± "
                  f"{rand.get('return_std', 0.0):.1f} over {rand.get('episodes', '?')} episodes."]
    paper = reference.get("worldmodels", {})
    if paper:
        lines += ["", f"Published, at another scale (never a ratio): {paper['label']}: "
                  f"{paper['return_mean']:.0f} ± {paper['return_std']:.0f} over "
                  f"{paper['episodes']} episodes ({paper['source']})."]
    return lines


def _agreement(actions: dict) -> str:
    return f"{actions['nmi']:.3f} ({actions['chance']['nmi']:.3f})"


def genie_lines(records: list[dict]) -> list[str]:
    """Finished Genie runs graded on held-out episodes (`wmtool eval --data`), one row per
    game and variant: tokenizer PSNR, controllability (ΔPSNR at t = 4) and how the latent
    actions match the true ones (NMI, best-mapping accuracy), each seed's value beside its
    chance level."""
    runs = [r for r in records if r.get("kind") is None and r.get("algo") == "genie"
            and "heldout" in r.get("measurements", {})]
    if not runs:
        return []
    lines = ["", "## Genie on Atari, graded on held-out episodes", "",
             "Trained from action-free frames of random-policy episodes "
             "(`recipes/bench/genie_atari.sh`); graded on held-out episodes of another seed "
             "with their true actions, which training never saw. Per seed, in seed order: "
             "NMI of latent vs true actions (chance: the same with the latent actions "
             "shuffled) and the best mapping's accuracy (chance / always the most frequent "
             "action), against a_t and a_(t-1).", "",
             "| game | variant | seeds | tokenizer PSNR (dB) | ΔPSNR at t = 4 (dB) | "
             "NMI vs a_t (chance) | accuracy vs a_t (chance / majority) | "
             "NMI vs a_(t-1) (chance) | records |", "|---|---|---|---|---|---|---|---|---|"]
    for (env, variant), members in _by(runs, lambda r: (r["env"], r.get("variant", ""))).items():
        held = [r["measurements"]["heldout"] for r in members]
        actions = [h["actions"] for h in held]
        accuracy = "; ".join(f"{a['accuracy']:.3f} ({a['chance']['accuracy']:.3f} / "
                             f"{a['chance']['majority']:.3f})" for a in actions)
        lines.append(
            f"| {env.partition(':')[2]} | {variant} | "
            f"{', '.join(str(r['seed']) for r in members)} | "
            f"{_spread([h['tokenizer_psnr'] for h in held], 2)} | "
            f"{_spread([h['delta_psnr_t4'] for h in held], 2)} | "
            f"{'; '.join(_agreement(a) for a in actions)} | {accuracy} | "
            f"{'; '.join(_agreement(a['previous']) for a in actions)} | {_names(members)} |")
    return lines
