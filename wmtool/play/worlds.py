"""What `wmtool play` steps, one family of model per class, chosen by the contract's
capability classes (models/base.py), never by algorithm name:

- `DreamWorld` (models that decode: DreamerV3, V1, V2, PlaNet, World Models): filters the
  real steps it starts from, then imagines one step per tick from the action given and
  decodes it, with the predicted reward and continuation; the run's own policy can act
  inside the dream. A model sampled at a temperature (World Models' MDN-RNN) shows it as a
  slider.
- `LatentActionWorld` (Genie): a start frame, then one generated frame per latent action.
- `RealWorld` (TD-MPC2, no decoder): the real env itself, with what the model predicts of
  each transition (reward) and state (value, continuation) beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from wmtool.engine.agent import to_tensors
from wmtool.models.base import Decodes, DrivenByLatentActions, LatentTraces, Tempered


@dataclass
class Step:
    obs: dict[str, np.ndarray]             # what to draw: decoded (dream) or real
    reward: float | None = None            # predicted reward of the step into it
    cont: float | None = None              # predicted chance the episode goes on
    value: float | None = None             # predicted value (models without a decoder)
    extra: dict = field(default_factory=dict)


class DreamWorld:
    kind = "dream"
    has_policy = True

    def __init__(self, agent, mode: str = "greedy"):
        self.agent, self.wm, self.mode = agent, agent.wm, mode
        self.image_keys, self.vector_keys = self.wm.decoded_keys
        self.state = None
        self.note = ""

    @property
    def controls(self) -> dict:
        if isinstance(self.wm, Tempered):
            return {"temperature": {"value": self.wm.temperature, "min": 0.1, "max": 2.0}}
        return {}

    def set_control(self, name: str, value: float) -> None:
        if name == "temperature" and isinstance(self.wm, Tempered):
            self.wm.temperature = float(np.clip(value, 0.1, 2.0))

    @torch.no_grad()
    def start(self, history: list[tuple[dict, np.ndarray | None]]) -> Step:
        """Filter real steps: (observation with is_first, the action taken after it)."""
        wm, device = self.wm, self.agent.device
        state = wm.initial(1)
        prev = torch.zeros(1, wm.act_dim, device=device)
        for obs, action in history:
            data = to_tensors({k: np.asarray(obs[k])[None] for k in wm.input_keys}, device)
            first = torch.as_tensor([bool(obs.get("is_first", False))], device=device)
            state = wm.filter_step(state, prev, data, first, sample=False)
            if action is not None:
                prev = wm.action_input(torch.as_tensor(np.asarray(action)[None], device=device))
        self.state = state
        return self._show(wm.features(state))

    @torch.no_grad()
    def step(self, action: np.ndarray) -> Step:
        a = self.wm.action_input(torch.as_tensor(np.asarray(action)[None],
                                                 device=self.agent.device))
        states, _ = self.wm.imagine(self.state, lambda feat, t: a, 1,
                                    sample=self.mode != "greedy")
        self.state = {k: v[-1] for k, v in states.items()}
        return self._show(self.wm.features(self.state))

    @torch.no_grad()
    def policy_action(self) -> np.ndarray:
        feat = self.wm.features(self.state)
        return self.agent.behavior.act(feat, self.mode).cpu().numpy()[0]

    def _show(self, feat: torch.Tensor) -> Step:
        decoded = {k: v.float().cpu().numpy()[0] for k, v in self.wm.decode(feat).items()}
        for key in self.image_keys:
            decoded[key] = np.clip(np.round(decoded[key]), 0, 255).astype(np.uint8)
        return Step(decoded, float(self.wm.predict_reward(feat)[0]),
                    float(self.wm.predict_cont(feat)[0]))


class LatentActionWorld:
    kind = "latent-actions"
    has_policy = False
    controls: dict = {}
    vector_keys: list[str] = []

    def __init__(self, agent, mode: str = "greedy"):
        self.wm = agent.wm
        self.image_keys = [self.wm.key]
        self.state = None
        self.note = ("Genie learns no policy and no reward: each key is one of its "
                     f"{self.wm.latent_action_count} latent actions")

    def set_control(self, name: str, value: float) -> None:
        pass

    def start(self, history: list[tuple[dict, np.ndarray | None]]) -> Step:
        frame = np.asarray(history[-1][0][self.wm.key])
        self.state = self.wm.drive_start(frame)
        return Step({self.wm.key: frame})

    def step(self, action: np.ndarray) -> Step:
        self.state, frame = self.wm.drive_step(self.state, int(np.asarray(action)))
        return Step({self.wm.key: frame})


class RealWorld:
    """The real env stands in for the dream; the session steps it (`real_only`)."""
    kind = "real-only"
    has_policy = True
    controls: dict = {}
    real_only = True

    def __init__(self, agent, mode: str = "greedy"):
        self.agent, self.wm, self.mode = agent, agent.wm, mode
        keys = [k for k in agent.obs_space]
        self.image_keys = [k for k in keys if agent.obs_space[k].is_image]
        self.vector_keys = [k for k in keys if k not in self.image_keys]
        self.carry = None
        self.note = (f"{agent.algo} has no decoder, so there is no dream to show: this is the "
                     "real env, with the model's predicted reward, value and continuation")

    def set_control(self, name: str, value: float) -> None:
        pass

    @torch.no_grad()
    def start(self, history: list[tuple[dict, np.ndarray | None]]) -> Step:
        self.carry = None
        return self.observe(history[-1][0], None)

    @torch.no_grad()
    def observe(self, obs: dict, action: np.ndarray | None) -> Step:
        """The real step the env returned: the model's latent of it, and what it predicts."""
        wm, device = self.wm, self.agent.device
        before = None if self.carry is None else self.carry[0]
        data = to_tensors({k: np.asarray(obs[k])[None] for k in wm.input_keys}, device)
        first = torch.as_tensor([bool(obs.get("is_first", False))], device=device)
        state = wm.filter_step(wm.initial(1) if before is None else before,
                               torch.zeros(1, wm.act_dim, device=device) if action is None
                               else self._input(action), data, first, sample=False)
        self.carry = (state,)
        feat = wm.features(state)
        reward = None
        if before is not None and action is not None:
            reward = float(wm.predict_transition_reward(wm.features(before),
                                                        self._input(action))[0])
        shown = {k: np.asarray(obs[k]) for k in obs if k in self.agent.obs_space}
        return Step(shown, reward, float(wm.predict_cont(feat)[0]),
                    float(wm.predict_value(feat)[0]))

    @torch.no_grad()
    def policy_action(self) -> np.ndarray:
        return self.agent.behavior.act(self.wm.features(self.carry[0]),
                                       self.mode).cpu().numpy()[0]

    def _input(self, action: np.ndarray) -> torch.Tensor:
        return self.wm.action_input(torch.as_tensor(np.asarray(action)[None],
                                                    device=self.agent.device))


def world_for(agent, mode: str = "greedy"):
    """The world a run's model can offer play."""
    wm = agent.wm
    if isinstance(wm, DrivenByLatentActions):
        return LatentActionWorld(agent, mode)
    if isinstance(wm, Decodes):
        return DreamWorld(agent, mode)
    if isinstance(wm, LatentTraces):
        return RealWorld(agent, mode)
    raise TypeError(f"{type(wm).__name__} offers no way to play")
