"""The randomness rule of an update (docs/architecture.md), checked while code runs.

Inside an update every random draw must come from `wmtool.parallel`'s helpers: they draw the
noise of the whole data-parallel batch and keep this rank's rows, or draw noise that belongs
to no row alike on every rank. A bare `torch.rand` (or `randn`, `randint`, `multinomial`,
`bernoulli_`, `dropout`, ...) still runs, but `--nproc N` then stops computing the update of
one process with N times the batch. `NoiseAudit` sees every random operator torch executes
(at the dispatcher, whichever Python call led there) and lists the ones no helper made, with
the line of code that asked for it:

    with NoiseAudit() as audit, parallel.training_step(seed, 0):
        agent.train_step(rows)
    assert not audit.bare, audit.report()
"""
from __future__ import annotations

import traceback

from torch.utils._python_dispatch import TorchDispatchMode

from wmtool import parallel

# aten operators that draw from a generator (their overload packets' names)
RANDOM_OPS = frozenset({
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm",
    "multinomial", "bernoulli", "bernoulli_", "normal", "normal_", "uniform_", "random_",
    "exponential_", "geometric_", "log_normal_", "cauchy_", "poisson", "native_dropout",
    "_standard_gamma", "_sample_dirichlet", "binomial", "rrelu_with_noise",
})


def _caller() -> str:
    """The innermost line of code that is neither torch's nor this check's."""
    for frame in reversed(traceback.extract_stack()):
        path = frame.filename.replace("\\", "/")
        if "/torch/" in path or path.endswith(("/noise_audit.py", "/parallel.py")):
            continue
        return f"{path.split('/wmtool/', 1)[-1] if '/wmtool/' in path else path}:{frame.lineno}"
    return "unknown"


class NoiseAudit(TorchDispatchMode):
    """Records random operators run outside `parallel`'s helpers while it is active."""

    def __init__(self):
        super().__init__()
        self.bare: list[tuple[str, str]] = []  # (operator, wmtool file:line)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in RANDOM_OPS and not parallel.drawing():
            self.bare.append((name, _caller()))
        return func(*args, **(kwargs or {}))

    def report(self) -> str:
        seen = sorted(set(self.bare))
        return "random draws outside wmtool.parallel's helpers: " + ", ".join(
            f"{op} at {where}" for op, where in seen)
