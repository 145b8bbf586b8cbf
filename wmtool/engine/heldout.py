"""How well a trained world model fits episodes it never trained on: every training phase's
loss (and its parts) on held-out data, next to the same model with that phase's modules
untrained, on the very same batches and latent noise (`wmtool eval --data`). For a staged
model the baseline keeps the earlier phases trained: World Models' M is compared with an
untrained M on the same trained V's codes."""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import torch

from wmtool.data.replay import Replay
from wmtool.data.store import EpisodeReader
from wmtool.engine.agent import Agent, to_tensors
from wmtool.engine.train import derive_phase_columns, window


@torch.no_grad()
def losses(agent: Agent, replay: Replay, phase: str, batch: int, length: int, batches: int,
           seed: int) -> tuple[dict, list[str]]:
    """(metric -> mean over `batches` batches, the optimiser groups the phase trains);
    batches and noise depend only on `seed`."""
    replay.rng = np.random.default_rng(seed)
    sums, groups = defaultdict(float), []
    for i in range(batches):
        data = to_tensors(replay.sample(batch, min(window(agent.wm, length), replay.size)),
                          agent.device)
        torch.manual_seed(seed + i)
        result = agent.wm.loss(data, phase=phase)
        groups = result.groups
        for key, value in result.metrics.items():
            sums[key] += float(value) / batches
    return dict(sums), groups


@torch.no_grad()
def with_fresh_groups(agent: Agent, fresh: Agent, groups: list[str]) -> Agent:
    """A copy of `agent` whose optimiser `groups` hold `fresh`'s untrained weights: a phase's
    own modules untrained, the earlier phases it builds on (World Models' V under M) trained."""
    baseline = copy.deepcopy(agent)
    for name in groups:
        for mine, new in zip(baseline.params[name], fresh.params[name]):
            mine.copy_(new)
    return baseline


def heldout_report(agent: Agent, data_path, batches: int = 8, seed: int = 0) -> dict:
    with EpisodeReader(data_path) as reader:
        replay = Replay(agent.obs_space, agent.act_space, 10**9)
        for episode in reader:
            replay.add(episode)
        episodes = len(reader)
    torch.manual_seed(agent.cfg.seed)
    fresh = Agent(agent.algo, agent.obs_space, agent.act_space, agent.cfg, agent.device)
    phases = {}
    for phase, _, batch, length in agent.wm.schedule():
        # columns derived for a phase come from earlier phases' modules, shared by both models
        derive_phase_columns(replay, agent.wm, phase)
        trained, groups = losses(agent, replay, phase, batch, length, batches, seed)
        baseline = with_fresh_groups(agent, fresh, groups)
        untrained, _ = losses(baseline, replay, phase, batch, length, batches, seed)
        phases[phase] = {"trained": trained, "untrained": untrained}
    return {"episodes": episodes, "steps": replay.size, "batches": batches, "phases": phases}
