"""TD-MPC2's builder (world model + MPPI behaviour + optimiser groups) and its exportable
acting policy: the policy prior's mean, with no planning."""
from __future__ import annotations

import torch
from torch import nn

from wmtool.behavior.mppi import MPPIPlanner
from wmtool.models.base import OptimGroup
from wmtool.models.tdmpc2 import TDMPC2Model


def build_tdmpc2(obs_space, act_space, cfg):
    wm = TDMPC2Model(obs_space, act_space, cfg)
    behavior = MPPIPlanner(wm, act_space, cfg)
    c = cfg.tdmpc2
    groups = {**wm.optimizer_groups(),
              "prior": OptimGroup(behavior.prior.parameters(), c.lr, 1e-5, c.clip)}
    return wm, behavior, groups


class PriorPolicy(nn.Module):
    """forward(*observations in `obs_keys` order, [stack], is_first) -> (action[, next stack]).

    Vector observations need no carry. With images, `stack` holds the previous frames-1
    frames (channels last, oldest first); pass zeros and is_first=1 on the first step, then
    feed next_stack back. Actions are in [-1, 1]. Branch-free: traces to TorchScript/ONNX."""

    def __init__(self, agent):
        super().__init__()
        self.wm, self.prior = agent.wm, agent.behavior.prior
        self.obs_keys = list(agent.wm.input_keys)
        self.outputs = ["action", *[f"next_{k}" for k in self.carry_shapes()]]
        self.usage = ("no carry: feed each observation (is_first is accepted and unused)"
                      if not self.carry_shapes() else
                      "first step: zeros for stack and is_first=True; then feed next_stack back")

    def carry_shapes(self) -> dict[str, list[int]]:
        state = self.wm.initial(1)
        return {k: list(v.shape[1:]) for k, v in state.items() if k != "z"}

    def forward(self, *inputs: torch.Tensor):
        n = len(self.obs_keys)
        obs = dict(zip(self.obs_keys, inputs[:n]))
        carry_names = list(self.carry_shapes())
        state = dict(zip(carry_names, inputs[n:n + len(carry_names)]))
        is_first = inputs[-1]
        if "stack" in state:
            state["stack"] = state["stack"].to(torch.uint8)
        state = self.wm.filter_step(state, None, obs, is_first)
        action = self.prior.mode(state["z"])
        # the carry goes out as float like every exported input, so ONNX sees one dtype
        return (action, *[state[k].float() for k in carry_names])


def acting_policy(agent) -> PriorPolicy:
    return PriorPolicy(agent)
