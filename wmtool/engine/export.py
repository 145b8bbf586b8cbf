"""Artefacts others can load without wmtool: the greedy acting policy as TorchScript or ONNX,
or the full weights as safetensors; each carries its observation/action spec as metadata.

Loading never executes code from the file: TorchScript and ONNX are graphs, safetensors is
tensors plus a JSON header.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from wmtool import __version__, spaces
from wmtool.atomic import written_whole
from wmtool.errors import WmtoolError
from wmtool.registry import ALGOS, lookup

FORMATS = ("torchscript", "onnx", "safetensors")
METADATA_KEY = "wmtool.json"


def acting_module(agent) -> torch.nn.Module:
    entry = lookup(ALGOS, agent.algo, "--algo")
    if not entry.acting:
        raise WmtoolError(f"--algo {agent.algo} has no standalone acting policy to export",
                          "export --format safetensors for its weights")
    # frozen: the exported graph then returns plain tensors, not ones that require grad
    return entry.load(entry.acting)(agent).eval().requires_grad_(False)


def example_inputs(module, agent, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Zeros of the right shapes and dtypes: observations, then the carry, then is_first."""
    obs = []
    for key in module.obs_keys:
        space = agent.obs_space[key]
        obs.append(torch.from_numpy(np.zeros((batch, *space.shape), space.dtype)))
    carry = [torch.zeros((batch, *shape)) for shape in module.carry_shapes().values()]
    return (*obs, *carry, torch.ones(batch, dtype=torch.bool))


def metadata(loaded, module=None) -> dict:
    agent = loaded.agent
    meta = {"format": "wmtool-policy", "wmtool_version": __version__, "algo": agent.algo,
            "env": loaded.env_id, "counters": loaded.payload.get("counters", {}),
            # the policy chose one action per this many env steps, each repeated and the
            # rewards summed: play it the same way
            "action_repeat": int(loaded.cfg.env.action_repeat),
            "obs_space": json.loads(spaces.dumps(agent.obs_space)),
            "act_space": json.loads(spaces.dumps(agent.act_space)),
            "action_range": "discrete: int64 index" if agent.act_space.discrete else
            "continuous in [-1, 1]: env action = low + (a + 1) / 2 * (high - low)"}
    if module is not None:
        carry = module.carry_shapes()
        meta.update(inputs=[*module.obs_keys, *carry, "is_first"], outputs=module.outputs,
                    carry_shapes=carry, usage=module.usage)
    return meta


def export(loaded, fmt: str, out: Path) -> dict:
    if fmt not in FORMATS:
        raise WmtoolError(f"--format {fmt}: unknown", f"use one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        return _safetensors(loaded, out)
    module = acting_module(loaded.agent)
    meta = metadata(loaded, module)
    inputs = example_inputs(module, loaded.agent)
    with torch.no_grad(), written_whole(out) as tmp:
        if fmt == "torchscript":
            warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)
            traced = torch.jit.trace(module, inputs, check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={METADATA_KEY: json.dumps(meta)})
        else:
            _onnx(module, inputs, meta, tmp)
    return meta


def _onnx(module, inputs, meta: dict, path: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise WmtoolError("ONNX export needs the onnx package", "pip install onnx") from None
    names = meta["inputs"]
    # the TorchScript-based exporter: the torch.export one failed on this graph (torch 2.13)
    warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
    axes = {name: {0: "batch"} for name in [*names, *meta["outputs"]]}
    torch.onnx.export(module, inputs, str(path), input_names=names,
                      output_names=meta["outputs"], dynamic_axes=axes, dynamo=False)
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(path))


def _safetensors(loaded, out: Path) -> dict:
    from safetensors.torch import save_file

    meta = metadata(loaded)
    meta["format"] = "wmtool-weights"
    meta["config"] = loaded.cfg.to_dict()
    tensors = {k: v.detach().contiguous() for k, v in loaded.agent.state_dict().items()}
    with written_whole(out) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    return meta


def load_safetensors(path: str | Path, device: str = "cpu"):
    """Rebuild the agent from exported weights (tensors + JSON header; no code runs)."""
    from safetensors import safe_open

    from wmtool import config
    from wmtool.engine.agent import Agent

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device=device) as fh:
            meta = json.loads((fh.metadata() or {})[METADATA_KEY])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types for foreign files
        raise WmtoolError(f"{path} is not a wmtool safetensors export ({type(exc).__name__})",
                          "pass a file written by `wmtool export --format safetensors`") from None
    cfg = config.load([("export", meta["config"])])
    agent = Agent(meta["algo"], spaces.loads_obs(json.dumps(meta["obs_space"])),
                  spaces.loads_act(json.dumps(meta["act_space"])), cfg, device)
    agent.load_state_dict(tensors)
    return agent.eval(), meta
