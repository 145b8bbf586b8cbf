"""The contract between the engine and a world model.

A world model subclasses `WorldModel` and fills in two tiers:

- trainable: `phases` (trained in order; `behavior_phases` are those after whose updates the
  behaviour learns too), `schedule()` (phase, updates, batch, length per phase),
  `loss(batch, phase=...)` -> (loss, optimiser group names, posterior states, metrics), and the
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
  `wmtool play` offers as a slider.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class WorldModel(nn.Module):
    phases: tuple[str, ...] = ("joint",)
    behavior_phases: tuple[str, ...] = ("joint",)
    needs_actions = True  # False: learns from frames alone (datasets without actions)
    history = 0           # rows before each window that only give context
    hot_paths: tuple[str, ...] = ()  # dotted names compiled under train.compile
    input_keys: list[str]
    act_dim: int

    # -- trainable tier --------------------------------------------------------------------
    def schedule(self) -> list[tuple[str, int, int, int]]:
        raise NotImplementedError

    def loss(self, batch: dict, state=None, phase: str = "joint"):
        raise NotImplementedError

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
        raise NotImplementedError

    def filter_step(self, state, prev_action: torch.Tensor, obs: dict, is_first: torch.Tensor,
                    sample: bool = True):
        raise NotImplementedError

    def observe(self, batch: dict, state=None):
        raise NotImplementedError

    def features(self, state) -> torch.Tensor:
        raise NotImplementedError

    def state_from_features(self, feat: torch.Tensor):
        raise NotImplementedError

    def imagine(self, start, act: Callable[[torch.Tensor, int], torch.Tensor], horizon: int,
                sample: bool = True):
        raise NotImplementedError

    def predict_reward(self, feat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_cont(self, feat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Decodes:
    """Reconstructs observations from features."""

    @property
    def decoded_keys(self) -> tuple[list[str], list[str]]:
        """(image keys, vector keys) the decoder predicts."""
        raise NotImplementedError

    def decode(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class LatentTraces:
    """No decoder: `wmtool dream` plots what the model predicts per step instead."""

    def predict_transition_reward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_value(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DrivenByLatentActions:
    """Steered frame by frame with discrete latent actions (`wmtool dream --actions`)."""

    @property
    def latent_action_count(self) -> int:
        raise NotImplementedError

    def drive_start(self, frame) -> dict:
        raise NotImplementedError

    def drive_step(self, state: dict, action: int):
        raise NotImplementedError


class ReportsOnData:
    """Grades itself on held-out episodes its own way (`wmtool eval --data`)."""

    def data_report(self, episodes: list, batches: int, seed: int) -> dict:
        raise NotImplementedError


class Tempered:
    """Dreams by sampling at `temperature` (World Models' MDN-RNN), which may be changed
    between steps."""

    temperature: float
