"""Agent = world model + behaviour + optimisers: `train_step`, `policy`, `state_dict`.

`train_step` returns its metrics as device tensors: they are fetched to the host once per log
row (engine/train.py), never per update, so a GPU never waits on them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wmtool import parallel
from wmtool.behavior.noisy import add_noise, check_amount
from wmtool.engine import compiling
from wmtool.errors import WmtoolError
from wmtool.models.base import Loss, OptimGroup
from wmtool.registry import ALGOS, lookup
from wmtool.runtime import check_bf16
from wmtool.spaces import Space


class NonFiniteLoss(WmtoolError):
    pass


def to_tensors(batch: dict[str, np.ndarray | torch.Tensor],
               device: str) -> dict[str, torch.Tensor]:
    """A batch on `device`. Host arrays bound for a GPU go through pinned memory, so the copy
    runs alongside the GPU's work instead of stopping it; tensors already there stay."""
    if device == "cpu":
        return {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    return {k: v.to(device) if isinstance(v, torch.Tensor) else
            torch.from_numpy(np.ascontiguousarray(v)).pin_memory().to(device, non_blocking=True)
            for k, v in batch.items()}


FUSED_ADAM = True


def adam(params, lr: float, eps: float) -> torch.optim.Adam:
    """Adam as one fused kernel over all of a group's tensors (CPU and CUDA): the same
    update as the per-tensor loop, without a dozen small operations per parameter tensor."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=FUSED_ADAM)


def check_groups(algo: str, groups: dict) -> None:
    """A builder's optimiser groups are OptimGroups (read by name, never by position)."""
    for name, group in groups.items():
        if not isinstance(group, OptimGroup):
            raise WmtoolError(f"--algo {algo}: optimiser group {name!r} is a "
                              f"{type(group).__name__}, not an OptimGroup",
                              "return wmtool.models.base.OptimGroup(params, lr, eps, clip)")


class Agent(nn.Module):
    def __init__(self, algo: str, obs_space: dict[str, Space], act_space: Space, cfg,
                 device: str = "cpu"):
        super().__init__()
        self.algo, self.cfg, self.device = algo, cfg, device
        self.obs_space, self.act_space = obs_space, act_space
        build = lookup(ALGOS, algo, "--algo").load()
        self.wm, self.behavior, groups = build(obs_space, act_space, cfg)
        check_groups(algo, groups)  # name -> OptimGroup, one Adam optimiser each
        self.clips = {name: g.clip for name, g in groups.items()}
        self.params = {name: list(g.params) for name, g in groups.items()}
        self.optims = {name: adam(self.params[name], g.lr, g.eps) for name, g in groups.items()}
        self.base_lrs = {name: g.lr for name, g in groups.items()}
        self.to(device)
        self.amp = bool(cfg.train.amp)
        if self.amp:
            check_bf16(device)
        self.compile_mode, self.compile_reason = compiling.resolve(cfg.train.compile, device)
        self.compiled: list[str] = []  # hot paths compiled so far (compile_hot_paths)
        # non-finite losses seen since the last check, where checking every update would
        # make the device wait (see _step)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        check_amount(cfg.behavior.explore, act_space, "behavior.explore")
        self.explore_rng = np.random.default_rng(parallel.rank_seed(cfg.seed) + 104729)

    def reset_behavior(self) -> None:
        """Fresh behaviour weights and optimiser state; the world model is kept."""
        build = lookup(ALGOS, self.algo, "--algo").load()
        _, self.behavior, groups = build(self.obs_space, self.act_space, self.cfg)
        self.behavior.to(self.device)
        self.behavior.bind(self.wm)  # a behaviour the model uses (TD-MPC2's prior)
        owned = {id(p) for p in self.behavior.parameters()}
        for name, group in groups.items():
            params = list(group.params)
            if all(id(p) in owned for p in params):
                self.params[name] = params
                self.optims[name] = adam(params, group.lr, group.eps)

    def scale_lr(self, factor: float) -> None:
        """Every optimiser's learning rate at `factor` times its configured one."""
        for name, opt in self.optims.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lrs[name] * factor

    def acting_metrics(self) -> dict[str, float]:
        """What acting cost since the last call, for behaviours that measure it (a
        planner's time per action); {} for the others."""
        return self.behavior.acting_metrics()

    def parameter_counts(self) -> dict[str, int]:
        counts = {name: sum(p.numel() for p in ps) for name, ps in self.params.items()}
        for name, module in self.wm.named_children():
            counts[f"wm.{name}"] = sum(p.numel() for p in module.parameters())
        owned = {id(p) for ps in self.params.values() for p in ps}
        evolved = [p for p in self.behavior.parameters() if p.requires_grad and id(p) not in owned]
        if evolved:  # a behaviour no optimiser trains (World Models' controller)
            counts["behavior"] = sum(p.numel() for p in evolved)
        counts["total"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def _autocast(self):
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.amp)

    def compile_hot_paths(self) -> list[str]:
        """Compile the model's and the behaviour's hot paths if `train.compile` says so (once;
        engine/compiling.py). Returns what is compiled."""
        if self.compile_mode and not self.compiled:
            self.compiled = [f"wm.{name}" for name in
                             compiling.compile_hot_paths(self.wm, self.compile_mode)]
            self.compiled += [f"behavior.{name}" for name in
                              compiling.compile_hot_paths(self.behavior, self.compile_mode)]
        return self.compiled

    def check_finite(self) -> None:
        """Raise if a loss was non-finite since the last check (devices that defer it)."""
        if self.nonfinite:
            self.nonfinite.zero_()
            raise NonFiniteLoss("a non-finite loss since the last log row",
                                "lower the learning rate or check the data")

    def _step(self, names: list[str], loss: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.device == "cpu":  # free on a CPU, so exact: the update is never applied
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"non-finite loss ({loss.item()}) in {'/'.join(names)}",
                                    "the run stopped before applying it; lower the learning "
                                    "rate or check the data")
        else:  # an accelerator would wait for every update: checked at each log row and save
            self.nonfinite |= ~torch.isfinite(loss.detach())
        for name in names:
            self.optims[name].zero_grad(set_to_none=True)
        loss.backward()
        # data-parallel: every rank steps with the mean gradient over ranks (wmtool/parallel.py)
        parallel.average_gradients([p for name in names for p in self.params[name]])
        norms = {}
        for name in names:
            norms[f"train/{name}/grad_norm"] = nn.utils.clip_grad_norm_(
                self.params[name], self.clips[name]).detach()
            self.optims[name].step()
        return norms

    def train_step(self, batch: dict[str, np.ndarray], world_model: bool = True,
                   phase: str | None = None) -> dict[str, torch.Tensor | float]:
        """One update of the world model in `phase` (default: its first), then of the
        behaviour from the posteriors if it learns in that phase. With `world_model` False
        the model is only used, frozen, and the behaviour learns (`wmtool imagine`)."""
        data = to_tensors(batch, self.device)
        phase = phase or self.wm.phases[0]
        metrics: dict[str, float] = {}
        if world_model:
            with self._autocast():
                result = self.wm.loss(data, phase=phase)
            if not isinstance(result, Loss):
                raise WmtoolError(f"--algo {self.algo}: {type(self.wm).__name__}.loss returned a "
                                  f"{type(result).__name__}, not a Loss",
                                  "return wmtool.models.base.Loss(loss, groups, states, metrics)")
            metrics = self._step(result.groups, result.loss)
            self.wm.after_update()  # e.g. Polyak-averaged target networks
            metrics.update({f"train/{result.groups[0]}/{k}": v
                            for k, v in result.metrics.items()})
            post = result.states
            if phase not in self.wm.behavior_phases:
                return metrics
        else:
            with self._autocast(), torch.no_grad():
                post, _ = self.wm.observe(data)
        start = {k: v.detach().flatten(0, 1) for k, v in post.items()}
        start_cont = 1.0 - data["is_terminal"].flatten().float()
        metrics.update(self.behavior.learn(self.wm, start, start_cont, self._step,
                                           self._autocast))
        return metrics

    @property
    def modes(self) -> tuple[str, ...]:
        """Acting modes the behaviour offers (TD-MPC2 adds `prior`)."""
        return self.behavior.modes

    @torch.no_grad()
    def policy_step(self, obs: dict[str, np.ndarray], carry, mode: str = "sample"):
        """One acting step for K envs; carry = (latent state, previous action, the
        behaviour's own carry such as a planner's warm start) or None."""
        data = to_tensors({k: obs[k] for k in self.wm.input_keys}, self.device)
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device)
        k = is_first.shape[0]
        if carry is None:
            state = self.wm.initial(k)
            prev = torch.zeros(k, self.wm.act_dim, device=self.device)
            plan = None
        else:
            state, prev, plan = carry
        state = self.wm.filter_step(state, prev, data, is_first, sample=mode != "greedy")
        feat = self.wm.features(state)
        action, plan = self.behavior.act_step(feat, plan, is_first, mode)
        action = action.cpu().numpy()
        if mode == "sample" and self.cfg.behavior.explore > 0:
            action = add_noise(action, self.act_space, self.cfg.behavior.explore, self.explore_rng)
        # the model hears the action the env executes, exploration noise included
        executed = self.wm.action_input(torch.as_tensor(action, device=self.device))
        return action, (state, executed, plan)


class AgentPolicy:
    """The `policy.act(obs)` interface of engine/loops.py, keeping the agent's carry."""

    def __init__(self, agent: Agent, mode: str = "sample"):
        self.agent, self.mode, self.carry = agent, mode, None

    def act(self, obs: dict) -> np.ndarray:
        action, self.carry = self.agent.policy_step(obs, self.carry, self.mode)
        return action.astype(self.agent.act_space.dtype)
