"""What planning costs per action, for planners (PlaNet's CEM, TD-MPC2's MPPI): time each
plan, report the mean since the last report as `plan/ms_per_action`."""
from __future__ import annotations

import time
from contextlib import contextmanager


class PlanTimer:
    def __init__(self):
        self.seconds, self.actions = 0.0, 0

    @contextmanager
    def plan(self, actions: int):
        """Time one plan that yields `actions` actions (one per env)."""
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - tick
            self.actions += actions

    def metrics(self) -> dict[str, float]:
        """Mean planning time per action since the last call (no plans: nothing)."""
        if not self.actions:
            return {}
        ms = 1000 * self.seconds / self.actions
        self.seconds, self.actions = 0.0, 0
        return {"plan/ms_per_action": ms}
