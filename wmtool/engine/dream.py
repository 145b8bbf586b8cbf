"""What a world model believes, as arrays: open-loop predictions and free-running dreams.

Open loop: observe `context` real steps, then predict `horizon` more from the real actions
alone; the gap to the truth, per step ahead, is the model's accuracy against how far it
dreams. Free dream: from the same real start, the policy acts inside the model only.
Works through the WorldModel interface (observe / imagine / features / decode /
predict_reward / predict_cont), so every algorithm that decodes gets it for free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from wmtool.engine.agent import to_tensors
from wmtool.errors import WmtoolError
from wmtool.models.base import Decodes, LatentTraces


@dataclass
class Dream:
    """Arrays over (sequence, step); steps < context were observed, the rest predicted."""
    context: int
    truth: dict[str, np.ndarray]          # obs key -> (N, T, ...); empty for free dreams' future
    pred: dict[str, np.ndarray]           # obs key -> (N, T, ...), decoded
    reward_truth: np.ndarray | None       # (N, T)
    reward_pred: np.ndarray               # (N, T)
    cont_pred: np.ndarray                 # (N, T)
    image_keys: list[str] = field(default_factory=list)
    vector_keys: list[str] = field(default_factory=list)
    value_pred: np.ndarray | None = None  # (N, T): models without a decoder show values

    @property
    def length(self) -> int:
        return self.reward_pred.shape[1]

    def errors(self) -> dict[str, list[float]]:
        """Mean squared error per predicted step (images in [0, 1] units, vectors raw),
        and the reward's absolute error."""
        out = {}
        if self.reward_truth is None or self.reward_truth.shape[1] != self.length:
            return out  # a free dream has no truth past its context
        for key in self.truth:
            t, p = self.truth[key].astype(np.float64), self.pred[key].astype(np.float64)
            if key in self.image_keys:
                t, p = t / 255.0, p / 255.0
            sq = (t - p) ** 2
            out[key] = sq.reshape(*sq.shape[:2], -1).mean((0, 2))[self.context:].tolist()
        if self.reward_truth is not None:
            err = np.abs(self.reward_truth - self.reward_pred)
            out["reward"] = err.mean(0)[self.context:].tolist()
        return out


def _check_can_decode(wm) -> None:
    if not isinstance(wm, Decodes):
        raise WmtoolError(f"{type(wm).__name__} has no decoder, so it cannot show observations",
                          "dream works with world models that reconstruct observations")


def _heads(wm, feat: torch.Tensor) -> tuple[dict, np.ndarray, np.ndarray]:
    pred = {k: v.float().cpu().numpy() for k, v in wm.decode(feat).items()}
    reward = wm.predict_reward(feat).float().cpu().numpy()
    cont = wm.predict_cont(feat).float().cpu().numpy()
    return pred, reward, cont


def _assemble(wm, post_feat: torch.Tensor, dream_feat: torch.Tensor):
    """Posterior reconstructions of the context, then the dream; arrays (N, T, ...)."""
    feat = torch.cat([post_feat, dream_feat[1:].transpose(0, 1)], 1)
    pred, reward, cont = _heads(wm, feat)
    for key in wm.decoded_keys[0]:
        pred[key] = pred[key].astype(np.uint8)
    return pred, reward, cont


@torch.no_grad()
def open_loop(agent, batch: dict[str, np.ndarray], context: int) -> Dream:
    """Observe batch[:, :context], then predict the rest from the recorded actions."""
    wm = agent.wm
    _check_can_decode(wm)
    data = to_tensors(batch, agent.device)
    length = data["reward"].shape[1]
    post, _ = wm.observe({k: v[:, :context] for k, v in data.items()})
    start = {k: v[:, -1] for k, v in post.items()}
    actions = wm.action_input(data["prev_action"][:, context:]).transpose(0, 1)
    states, _ = wm.imagine(start, lambda feat, t: actions[t], length - context)
    pred, reward, cont = _assemble(wm, wm.features(post), wm.features(states))
    images, vectors = wm.decoded_keys
    return Dream(context, {k: batch[k] for k in images + vectors}, pred, batch["reward"],
                 reward, cont, images, vectors)


@torch.no_grad()
def free_dream(agent, batch: dict[str, np.ndarray], context: int, horizon: int,
               mode: str = "sample") -> Dream:
    """Observe batch[:, :context], then let the policy act inside the model for `horizon`."""
    wm = agent.wm
    _check_can_decode(wm)
    data = to_tensors(batch, agent.device)
    post, _ = wm.observe({k: v[:, :context] for k, v in data.items()})
    start = {k: v[:, -1] for k, v in post.items()}
    act = lambda feat, t: wm.action_input(agent.behavior.act(feat, mode))
    states, _ = wm.imagine(start, act, horizon)
    pred, reward, cont = _assemble(wm, wm.features(post), wm.features(states))
    images, vectors = wm.decoded_keys
    return Dream(context, {k: batch[k][:, :context] for k in images + vectors}, pred,
                 batch["reward"][:, :context], reward, cont, images, vectors)


@torch.no_grad()
def latent_traces(agent, batch: dict[str, np.ndarray], context: int, horizon: int = 0,
                  free: bool = False, mode: str = "sample") -> Dream:
    """For models without a decoder (TD-MPC2): what they predict instead of observations.
    Encode the real rows up to `context`, then roll the latent dynamics on with the recorded
    actions (open loop) or the policy's (`free`, `horizon` steps); per row, the reward
    predicted for arriving there, the value, and the chance to continue. Rows before the
    first full frame stack have no latent (NaN)."""
    wm = agent.wm
    if not isinstance(wm, LatentTraces):
        raise WmtoolError(f"{type(wm).__name__} predicts neither observations nor rewards "
                          "of transitions", "dream needs a decoder or reward/value heads")
    data = to_tensors(batch, agent.device)
    length = context + horizon if free else data["reward"].shape[1]
    post, _ = wm.observe({k: v[:, :context] for k, v in data.items()})
    seen = wm.features(post)  # rows history..context-1
    history = context - seen.shape[1]
    if free:
        act = lambda feat, t: wm.action_input(agent.behavior.act(feat, mode))
        states, actions = wm.imagine({k: v[:, -1] for k, v in post.items()}, act, horizon)
    else:
        recorded = wm.action_input(data["prev_action"][:, context:]).transpose(0, 1)
        states, actions = wm.imagine({k: v[:, -1] for k, v in post.items()},
                                     lambda feat, t: recorded[t], length - context)
    feat = torch.cat([seen, wm.features(states)[1:].transpose(0, 1)], 1)  # (N, T - history, D)
    taken = torch.cat([wm.action_input(data["prev_action"][:, history + 1:context]),
                       actions.transpose(0, 1)], 1)  # the action into each next row
    nan = lambda rows: np.full((feat.shape[0], rows), np.nan, np.float32)
    to_np = lambda x: x.float().cpu().numpy()
    reward = np.concatenate([nan(history + 1), to_np(
        wm.predict_transition_reward(feat[:, :-1], taken))], 1)
    value = np.concatenate([nan(history), to_np(wm.predict_value(feat))], 1)
    cont = np.concatenate([nan(history), to_np(wm.predict_cont(feat))], 1)
    truth = batch["reward"] if not free else batch["reward"][:, :context]
    return Dream(context, {}, {}, truth, reward, cont, value_pred=value)


def real_episodes(loaded, data: Path | None, env: str | None, steps: int, seed: int,
                  needs_actions: bool = True) -> list:
    """Real episodes to start from: a dataset's, or played now in the env by the run's
    policy (at least `steps` steps)."""
    if data is not None:
        from wmtool.data.store import EpisodeReader

        with EpisodeReader(data) as reader:
            if needs_actions and not reader.has_action:
                raise WmtoolError(f"{data} has no actions", "open-loop prediction needs actions")
            loaded.check_spaces(reader.obs_space, reader.act_space if needs_actions
                                else loaded.agent.act_space, str(data))
            return list(reader)
    from wmtool.engine.agent import AgentPolicy
    from wmtool.engine.loops import run_episodes
    from wmtool.envs.factory import make_vec

    vec = make_vec(loaded.env_config(env).env, 1)
    try:
        loaded.check_spaces(vec.obs_space, vec.act_space, env or loaded.env_id)
        found = []
        run_episodes(vec, AgentPolicy(loaded.agent, "sample"), steps=steps, seed=seed,
                     on_episode=found.append)
        return found
    finally:
        vec.close()


def dream_run(loaded, context: int, horizon: int, sequences: int, free: bool,
              data: Path | None, env: str | None, seed: int,
              say: Callable[[str], None] = lambda line: None) -> tuple[Dream, dict]:
    """`wmtool dream`: windows of real episodes, observed for `context` steps, then predicted
    from the recorded actions (or, `free`, with the policy acting inside the model). Models
    that decode show observations; the others their latent traces."""
    from wmtool.data.replay import sample_sequences

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    length = context + (0 if free else horizon)
    episodes = real_episodes(loaded, data, env, sequences * length, seed)
    batch = sample_sequences(episodes, loaded.agent.act_space, sequences, length, rng)
    if isinstance(loaded.agent.wm, Decodes):
        dream = (free_dream(loaded.agent, batch, context, horizon) if free
                 else open_loop(loaded.agent, batch, context))
    else:
        say(f"{loaded.agent.algo} has no decoder, so it cannot show observations; showing "
            "its predicted reward, value and continuation per step instead")
        dream = latent_traces(loaded.agent, batch, context, horizon, free)
    result = {"run": str(loaded.path), "kind": "free" if free else "open-loop",
              "context": context, "horizon": horizon, "sequences": sequences,
              "error": dream.errors(),
              "reward_pred_mean": float(dream.reward_pred[:, context:].mean())}
    if dream.value_pred is not None:
        result["value_pred_mean"] = float(np.nanmean(dream.value_pred[:, context:]))
    return dream, result
