"""Learning curves put side by side with published ones only where they measure the same
thing at the same env steps (DEVELOPERS.md, "Evidence rules").

- `authors_bins`: a run's training-episode returns binned as DreamerV3's authors bin theirs
  (danijar/dreamerv3 plot.py: np.histogram over env steps with edges 0, B, 2B, ...; a bin is
  labelled by its right edge and holds the episodes that ended in [edge - B, edge); the last
  bin also takes an episode ending exactly on its right edge).
- `measured_point`: the published curve's point within 10% of a budget, if the authors
  measured one there; `nearest_points`: otherwise the measured points either side, shown
  with their env steps and never joined into a value at the budget.
"""
from __future__ import annotations

import numpy as np

TOLERANCE = 0.10  # a published point counts as "at the budget" within 10% of its env steps


def authors_bins(episodes: list, bin_size: int, until: int) -> list[tuple[int, float, int]]:
    """[(right edge, mean return, episodes)] of the training episodes ([env steps at the end,
    return, length, cut] rows, as records keep them; an episode the run's stop cut short is
    left out) in bins of `bin_size` env steps up to `until` (rounded up to a whole bin);
    empty bins are left out, as in the authors' files."""
    episodes = [e for e in episodes if not (len(e) > 3 and e[3]) and e[0] <= until]
    if not episodes:
        return []
    ends = np.array([e[0] for e in episodes], dtype=float)
    returns = np.array([e[1] for e in episodes], dtype=float)
    edges = np.arange(0, until + 0.99 * bin_size, bin_size)
    sums = np.histogram(ends, bins=edges, weights=returns)[0]
    counts = np.histogram(ends, bins=edges)[0]
    return [(int(edge), float(total / n), int(n))
            for edge, total, n in zip(edges[1:], sums, counts) if n]


def bin_at(episodes: list, bin_size: int, env_steps: int) -> tuple[int, float, int] | None:
    """The authors' bin that holds a run's last episodes: the one whose range contains
    `env_steps` (the budget), as (right edge, mean return, episodes), or None when no episode
    ended in it."""
    edge = (env_steps // bin_size + (1 if env_steps % bin_size else 0)) * bin_size
    return next((b for b in authors_bins(episodes, bin_size, env_steps) if b[0] == edge), None)


def measured_point(curve: list, env_steps: int) -> tuple[int, float] | None:
    """The published point nearest `env_steps` if it lies within TOLERANCE of it."""
    near = [(abs(x - env_steps), int(x), float(y)) for x, y in curve
            if abs(x - env_steps) <= TOLERANCE * env_steps]
    return min(near)[1:] if near else None


def nearest_points(curve: list, env_steps: int) -> list[tuple[int, float]]:
    """The published points either side of `env_steps` (one side at the curve's ends)."""
    before = [(int(x), float(y)) for x, y in curve if x < env_steps][-1:]
    after = [(int(x), float(y)) for x, y in curve if x > env_steps][:1]
    return before + after
