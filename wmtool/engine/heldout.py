"""How well a trained world model fits episodes it never trained on: every training phase's
loss (and its parts) on held-out data, next to an untrained model of the same configuration
on the very same batches and latent noise (`wmtool eval --data`)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from wmtool.data.replay import Replay
from wmtool.data.store import EpisodeReader
from wmtool.engine.agent import Agent, to_tensors


@torch.no_grad()
def phase_losses(agent: Agent, replay: Replay, batches: int, seed: int) -> dict:
    """{phase: {metric: mean over `batches` batches}}; batches and noise depend on `seed`."""
    out = {}
    for phase, _, batch, length in agent.wm.schedule():
        replay.rng = np.random.default_rng(seed)
        sums = defaultdict(float)
        for i in range(batches):
            data = to_tensors(replay.sample(batch, min(length, replay.size)), agent.device)
            torch.manual_seed(seed + i)
            _, _, _, metrics = agent.wm.loss(data, phase=phase)
            for key, value in metrics.items():
                sums[key] += float(value) / batches
        out[phase] = dict(sums)
    return out


def heldout_report(agent: Agent, data_path, batches: int = 8, seed: int = 0) -> dict:
    with EpisodeReader(data_path) as reader:
        replay = Replay(agent.obs_space, agent.act_space, 10**9)
        for episode in reader:
            replay.add(episode)
        episodes = len(reader)
    torch.manual_seed(agent.cfg.seed)
    untrained = Agent(agent.algo, agent.obs_space, agent.act_space, agent.cfg, agent.device)
    untrained.eval()
    trained, baseline = (phase_losses(a, replay, batches, seed) for a in (agent, untrained))
    return {"episodes": episodes, "steps": replay.size, "batches": batches,
            "phases": {phase: {"trained": trained[phase], "untrained": baseline[phase]}
                       for phase in trained}}
