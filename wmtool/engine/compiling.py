"""`train.compile`: an agent's hot paths under torch.compile.

A world model and a behaviour each name their hot paths in `hot_paths`: dotted names of the
methods or modules called many times per update or per action (the RSSM's prior and
posterior steps, the actor, TD-MPC2's latent dynamics, MPPI's search). Those are compiled
one by one, with static shapes, rather than the whole update: an update unrolls 64 + 15
recurrent steps, and compiling it as one graph took 93 s on CPU for the debug model and ran
slower than eager (docs/performance.md). Each hot path meets a handful of shapes (training batch,
imagination batch, one env), compiled once each during warm-up and never again.

`on` compiles with inductor on CPU and with CUDA graphs (`reduce-overhead`) on CUDA, where
eager PyTorch is launch-bound. `auto` compiles on CUDA only: on CPU the compiled steps
measured within a few percent of eager here, not worth their compile time.
"""
from __future__ import annotations

from operator import attrgetter

import torch
from torch import nn

from wmtool.config import require_choice

CHOICES = ("off", "on", "auto")
# Each hot path sees a few (shape, requires_grad) combinations; torch's default limit of 8
# compiled versions per function would fall back to eager silently after that.
RECOMPILE_LIMIT = 64


def resolve(setting: str, device: str) -> tuple[str | None, str]:
    """(torch.compile mode or None for eager, why), for `train.compile` on `device`."""
    require_choice("train.compile", setting, CHOICES)
    cuda = device.startswith("cuda")
    mode = "reduce-overhead" if cuda else "default"
    if setting == "off":
        return None, "train.compile=off"
    if setting == "on":
        return mode, f"train.compile=on ({mode})"
    if cuda:
        return mode, "train.compile=auto: CUDA graphs (reduce-overhead) on CUDA"
    return None, ("train.compile=auto: eager on CPU (compiled steps measured within a few "
                  "percent of eager; docs/performance.md)")


def hot_targets(owner: nn.Module) -> list[tuple[object, str, object]]:
    """(object, attribute, what it holds) of every hot path `owner` names; a name that does
    not resolve is an error in the algorithm's declaration (AttributeError)."""
    targets = []
    for name in owner.hot_paths:
        parent, _, attr = name.rpartition(".")
        targets.append((attrgetter(parent)(owner) if parent else owner, attr,
                        attrgetter(name)(owner)))
    return targets


def compile_hot_paths(owner: nn.Module, mode: str) -> list[str]:
    """Compile `owner`'s hot paths in place; modules keep their parameter names, so
    checkpoints are the same with and without compilation. Returns the names compiled."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit,
                                               RECOMPILE_LIMIT)
    for obj, attr, target in hot_targets(owner):
        if isinstance(target, nn.Module):
            target.compile(mode=mode, dynamic=False)
        else:
            setattr(obj, attr, torch.compile(target, mode=mode, dynamic=False))
    return list(owner.hot_paths)


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far (flat after warm-up)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
