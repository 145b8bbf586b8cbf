"""The contract between the engine and a world model.

A world model subclasses `WorldModel` and fills in two tiers:

- trainable: `phases` (trained in order; `behavior_phases` are those after whose updates the
  behaviour learns too), `schedule()` (a `Phase(name, updates, batch, length)` per phase),
  `loss(batch, phase=...)` -> a `Loss(loss, groups, states, metrics)`, and the
  hooks whose defaults do nothing: `phase_columns` (columns derived once per phase from
  frozen modules), `note_episode` (every finished episode's length), `after_update` (e.g.
  Polyak targets), `history` (rows read before each window, e.g. a frame stack),
  `hot_paths` (methods or modules called many times per update, compiled under
  `train.compile`; engine/compiling.py);
- actable: `input_keys`, `act_dim`, `action_input`, `initial`, `filter_step`, `observe`,
  `features`, `state_from_features`, `imagine`, `predict_reward`, `predict_cont`.

What only some models can do is a capability class the model also inherits; the engine and
the CLI ask with `isinstance`, never by probing for attributes:

- `Decodes`: reconstructs observations (`decode`, `decoded_keys`): dream videos, image loss;
- `LatentTraces`: no decoder, but per-step predictions to plot (`trace`): TD-MPC2;
- `DrivenByLatentActions`: steered by discrete latent actions (`drive_start`, `drive_step`);
- `ReportsOnData`: writes its own held-out report for `wmtool eval --data` (`data_report`);
- `Tempered`: dreams by sampling at a temperature it exposes (`temperature`), which
  `wmtool play` offers as a slider;
- `PlansWithValues`: what a value-guided planner (TD-MPC2's MPPI) asks of a latent model
  (`next`, `q_value`, `rollout_return`, `terminal_value`, `bind_prior`).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple

import torch
from torch import nn

from wmtool.errors import unfilled


class Phase(NamedTuple):
    """One entry of `schedule()`: a training phase and the updates it makes."""
    name: str
    updates: int
    batch: int    # sequences per update
    length: int   # steps per sequence


class Loss(NamedTuple):
    """What `WorldModel.loss` returns for one update."""
    loss: torch.Tensor   # the scalar the update minimises
    groups: list[str]    # the optimiser groups (OptimGroup names) it steps
    states: Any          # posterior states the behaviour starts imagining from (or None)
    metrics: dict        # name -> scalar tensor, logged as train/<first group>/<name>


class OptimGroup(NamedTuple):
    """One Adam optimiser of an algorithm (its builder returns name -> OptimGroup)."""
    params: Iterable[nn.Parameter]
    lr: float
    eps: float
    clip: float          # the gradient norm it clips to


class WorldModel(nn.Module):
    phases: tuple[str, ...] = ("joint",)
    behavior_phases: tuple[str, ...] = ("joint",)
    needs_actions = True  # False: learns from frames alone (datasets without actions)
    history = 0           # rows before each window that only give context
    hot_paths: tuple[str, ...] = ()  # dotted names compiled under train.compile
    input_keys: list[str]
    act_dim: int

    # -- trainable tier --------------------------------------------------------------------
    def schedule(self) -> list[Phase]:
        raise unfilled(__name__, "schedule() -> [Phase(name, updates, batch, length), ...]: "
                                 "each phase's update count and batch, in training order")

    def loss(self, batch: dict, state=None, phase: str = "joint"):
        raise unfilled(__name__, "loss(batch, state=None, phase) -> Loss(loss, optimiser group "
                                 "names, posterior states, metrics) for one update of `phase`")

    def phase_columns(self, phase: str) -> dict:
        return {}

    def note_episode(self, length: int) -> None:
        pass

    def after_update(self) -> None:
        pass

    # -- actable tier ----------------------------------------------------------------------
    def action_input(self, action: torch.Tensor) -> torch.Tensor:
        return action

    def initial(self, batch: int):
        raise unfilled(__name__, "initial(batch) -> the latent state before the first observation,"
                                 " for `batch` envs")

    def filter_step(self, state, prev_action: torch.Tensor, obs: dict, is_first: torch.Tensor,
                    sample: bool = True):
        raise unfilled(__name__, "filter_step(state, prev_action, obs, is_first, sample) -> the "
                                 "state after one real step")

    def observe(self, batch: dict, state=None):
        raise unfilled(__name__, "observe(batch, state=None) -> posterior states along a batch of "
                                 "real windows")

    def features(self, state) -> torch.Tensor:
        raise unfilled(__name__, "features(state) -> the flat tensor that behaviours and heads "
                                 "read")

    def state_from_features(self, feat: torch.Tensor):
        raise unfilled(__name__, "state_from_features(feat) -> the state those features came from "
                                 "(imagination restarts)")

    def imagine(self, start, act: Callable[[torch.Tensor, int], torch.Tensor], horizon: int,
                sample: bool = True):
        raise unfilled(__name__, "imagine(start, act, horizon, sample) -> features of `horizon` "
                                 "steps dreamt from `start` under the policy `act(feat, t)`")

    def predict_reward(self, feat: torch.Tensor) -> torch.Tensor:
        raise unfilled(__name__, 'predict_reward(feat) -> the predicted reward of each feature row')

    def predict_cont(self, feat: torch.Tensor) -> torch.Tensor:
        raise unfilled(__name__, "predict_cont(feat) -> the predicted probability that each "
                                 "episode continues")


class PlansWithValues:
    """A latent model a value-guided planner rolls forward (behavior/mppi.py): one step of
    latent dynamics, Q-values, the predicted return of action sequences, and the value at
    their end under a policy prior the planner owns and binds to the model."""

    def next(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise unfilled(__name__, "next(z, action) -> the latent after taking `action` in `z`")

    def q_value(self, z: torch.Tensor, action: torch.Tensor, kind: str = "avg",
                target: bool = False) -> torch.Tensor:
        raise unfilled(__name__, "q_value(z, action, kind='avg'|'min', target=False) -> the "
                                 "Q-value of each (z, action) row")

    def rollout_return(self, z: torch.Tensor, actions: torch.Tensor):
        raise unfilled(__name__, "rollout_return(z, actions (N, H, A)) -> (discounted predicted "
                                 "rewards, the weight left for the end value, the last latent)")

    def terminal_value(self, z: torch.Tensor) -> torch.Tensor:
        raise unfilled(__name__, "terminal_value(z) -> the value of ending a planned sequence "
                                 "in z")

    def bind_prior(self, prior: nn.Module) -> None:
        raise unfilled(__name__, "bind_prior(prior) -> None: keep the planner's policy prior "
                                 "for value targets and terminal values")


class Decodes:
    """Reconstructs observations from features."""

    @property
    def decoded_keys(self) -> tuple[list[str], list[str]]:
        """(image keys, vector keys) the decoder predicts."""
        raise unfilled(__name__, 'decoded_keys -> (image keys, vector keys) the decoder predicts')

    def decode(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        raise unfilled(__name__, 'decode(feat) -> {observation key: predicted observation}')


class LatentTraces:
    """No decoder: `wmtool dream` plots what the model predicts per step instead."""

    def predict_transition_reward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise unfilled(__name__, "predict_transition_reward(z, action) -> the reward predicted for"
                                 " taking `action` in latent `z`")

    def predict_value(self, z: torch.Tensor) -> torch.Tensor:
        raise unfilled(__name__, 'predict_value(z) -> the value predicted for latent `z`')


class DrivenByLatentActions:
    """Steered frame by frame with discrete latent actions (`wmtool dream --actions`)."""

    @property
    def latent_action_count(self) -> int:
        raise unfilled(__name__, "latent_action_count -> how many discrete latent actions steer "
                                 "the model")

    def drive_start(self, frame) -> dict:
        raise unfilled(__name__, "drive_start(frame) -> the state a drive starts from, given one "
                                 "image")

    def drive_step(self, state: dict, action: int):
        raise unfilled(__name__, "drive_step(state, action) -> (next state, predicted frame) under"
                                 " one latent action")


class ReportsOnData:
    """Grades itself on held-out episodes its own way (`wmtool eval --data`)."""

    def data_report(self, episodes: list, batches: int, seed: int) -> dict:
        raise unfilled(__name__, "data_report(episodes, batches, seed) -> the model's own held-out"
                                 " report (`wmtool eval --data`)")


class Tempered:
    """Dreams by sampling at `temperature` (World Models' MDN-RNN), which may be changed
    between steps."""

    temperature: float
