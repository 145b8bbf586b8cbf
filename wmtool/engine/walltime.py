"""Where a run's wall time goes, logged as `time/<part>` shares of the seconds since the run
(or its resume) started: updates, evaluation, dreams and checkpoints are timed; the rest,
`time/acting_and_other`, is acting, env steps (rendering included) and bookkeeping."""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

PARTS = ("updates", "evaluation", "dreams", "checkpoints")


class WallTime:
    def __init__(self):
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(PARTS, 0.0)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def shares(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        row = {f"time/{name}": s / elapsed for name, s in self.seconds.items()}
        row["time/acting_and_other"] = max(0.0, 1.0 - sum(row.values()))
        return row
