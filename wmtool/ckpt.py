"""Checkpoints: atomic, self-describing, and loadable with torch.load(weights_only=True).

Contents: format + version, wmtool version, algorithm, resolved config, spaces, step
counters, model weights (world model, behaviour incl. slow critic and return normaliser),
optimiser states and RNG states (python, numpy, torch); a data-parallel run also keeps its
rank count and every rank's RNG states (`world_size`, `rng_by_rank`). A checkpoint from a
stranger cannot run code: only tensors and plain containers are ever unpickled.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from wmtool import __version__, spaces
from wmtool.errors import WmtoolError, disk_error

FORMAT = "wmtool-checkpoint"
FORMAT_VERSION = 1


def rng_state(replay_rng: np.random.Generator | None = None) -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [name, keys.tolist(), pos, has_gauss, gauss],  # plain types only
             "torch": torch.get_rng_state()}
    if replay_rng is not None:
        state["replay"] = replay_rng.bit_generator.state
    return state


def restore_rng(state: dict, replay_rng: np.random.Generator | None = None) -> None:
    random.setstate(_tuples(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if replay_rng is not None and "replay" in state:
        replay_rng.bit_generator.state = state["replay"]


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save(path: str | Path, agent, counters: dict, replay_rng=None,
         rank_rngs: list[dict] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "wmtool_version": __version__,
        "algo": agent.algo, "config": agent.cfg.to_dict(), "counters": dict(counters),
        "obs_space": spaces.dumps(agent.obs_space), "act_space": spaces.dumps(agent.act_space),
        "model": agent.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in agent.optims.items()},
        "rng": rng_state(replay_rng),
    }
    if rank_rngs and len(rank_rngs) > 1:
        payload.update(world_size=len(rank_rngs), rng_by_rank=rank_rngs)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except BaseException as exc:  # a full disk or a kill mid-write: no temp file stays
        tmp.unlink(missing_ok=True)
        cause = _os_error(exc)
        if cause is not None:
            raise disk_error(path, cause) from None
        raise
    return path


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind `exc`: torch's zip writer reports a failed write as a
    RuntimeError raised while handling it."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__
    return exc


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise WmtoolError(f"{path}: no such checkpoint", "check the path or the run directory")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        reason = "it holds objects other than tensors and plain containers" \
            if "Weights only load failed" in str(exc) else type(exc).__name__
        raise WmtoolError(f"{path} is not a loadable checkpoint ({reason})",
                          "pass a .pt file written by `wmtool train`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WmtoolError(f"{path} is not a wmtool checkpoint (no format='{FORMAT}')",
                          "pass a .pt file written by `wmtool train`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise WmtoolError(f"{path} has checkpoint format {payload['format_version']}; this "
                          f"wmtool reads up to {FORMAT_VERSION}", "upgrade wmtool")
    return payload


# State added after format 1 was first written; older checkpoints keep its initial value.
OPTIONAL_STATE = {"behavior.updates"}


def restore_agent(agent, payload: dict, optimizers: bool = True) -> None:
    if payload.get("algo", agent.algo) != agent.algo:
        raise WmtoolError(f"checkpoint is for --algo {payload['algo']}, not {agent.algo}",
                          "load it into a run of the same algorithm")
    result = agent.load_state_dict(payload["model"], strict=False)
    missing = set(result.missing_keys) - OPTIONAL_STATE
    if missing or result.unexpected_keys:
        raise WmtoolError(f"checkpoint does not fit the {agent.algo} agent (missing "
                          f"{sorted(missing)[:3]}, unexpected {result.unexpected_keys[:3]})",
                          "load it with the config it was trained with")
    if optimizers:
        for name, opt in agent.optims.items():
            opt.load_state_dict(payload["optimizers"][name])
