"""What a Genie model can be graded on with frames whose true actions are known but were
never trained on (`wmtool eval --run RUN --data FILE.h5`), and its rollouts.

- tokenizer PSNR: frames through the tokenizer and back;
- controllability (Genie's ΔPSNR_t): from a real frame, generate t frames with the latent
  actions the LAM infers from the real ones, and with random latent actions; ΔPSNR_t is
  PSNR(inferred) - PSNR(random) against the real frame t (t = 4, as in the paper);
- latent vs true actions: normalised mutual information and best-mapping accuracy, beside
  the levels latent actions with no information would reach; against the action taken at
  o_t, and against the one taken a step earlier (`previous`), because some games show an
  action one frame late: in ALE Pong the paddle's move from o_t to o_{t+1} follows a_{t-1}
  (mean move up/down 3 pixels by a_{t-1}, under 2 by a_t, in our random-policy frames).
"""
from __future__ import annotations

import numpy as np
import torch

from wmtool.models.genie import to_pixels
from wmtool.nets.metrics import best_mapping_accuracy, chance_levels, nmi, psnr


@torch.no_grad()
def rollout(wm, first: torch.Tensor, actions: torch.Tensor, steps: int) -> torch.Tensor:
    """From first frames (B, C, H, W) in [0, 1], `actions` (B, T) latent actions into frames
    1..T -> generated frames (B, T, C, H, W) in [0, 1]."""
    _, tokens, _ = wm.tokenizer.encode(first)
    history, frames = [tokens], []
    padded = torch.cat([torch.zeros_like(actions[:, :1]), actions], 1)
    for t in range(actions.shape[1]):
        context = torch.stack(history, 1)
        new = wm.dynamics.generate(context, padded[:, :t + 2], steps)
        history.append(new)
        frames.append(wm.tokenizer.decode_tokens(new).clamp(0, 1))
    return torch.stack(frames, 1)


@torch.no_grad()
def genie_report(wm, batch: dict, horizon: int, seed: int) -> dict:
    """batch: windows (B, horizon + 1) inside episodes (data/replay.py:sample_sequences)."""
    g = wm.cfg.genie
    device = next(wm.parameters()).device
    torch.manual_seed(seed)
    frames = wm.frames({wm.key: torch.as_tensor(batch[wm.key], device=device)})
    b, t = frames.shape[:2]
    flat = frames.flatten(0, 1)
    quantised, _, _ = wm.tokenizer.encode(flat)
    recon = wm.tokenizer.decoder(quantised).clamp(0, 1)
    inferred = wm.latent_actions(frames)[:, 1:]
    random = torch.randint(0, g.actions, inferred.shape, device=device)
    scores = {}
    for name, actions in (("inferred", inferred), ("random", random)):
        generated = rollout(wm, frames[:, 0], actions, g.maskgit_steps)
        scores[name] = [float(np.mean(psnr(generated[:, k].cpu().numpy(),
                                           frames[:, k + 1].cpu().numpy())))
                        for k in range(t - 1)]
    report = {"windows": b, "horizon": t - 1,
              "tokenizer_psnr": float(np.mean(psnr(recon.cpu().numpy(), flat.cpu().numpy()))),
              "psnr_inferred": scores["inferred"], "psnr_random": scores["random"],
              f"delta_psnr_t{t - 1}": scores["inferred"][-1] - scores["random"][-1]}
    return report


def action_agreement(latent: np.ndarray, true: np.ndarray, seed: int) -> dict:
    """Latent vs true actions of the same transitions, with chance levels."""
    rng = np.random.default_rng(seed)
    return {"transitions": int(len(latent)), "nmi": nmi(latent, true),
            "accuracy": best_mapping_accuracy(latent, true),
            "chance": chance_levels(latent, true, rng)}


@torch.no_grad()
def latent_actions_of(wm, episodes: list, chunk: int = 256):
    """The LAM's action for every transition of `episodes`, beside the recorded action and
    the one recorded a step earlier (-1 at an episode's first transition)."""
    device = next(wm.parameters()).device
    latent, true, previous = [], [], []
    for ep in episodes:
        images = torch.as_tensor(ep.obs[wm.key], device=device)
        for start in range(0, ep.length, chunk):
            now = to_pixels(images[start:start + chunk])
            after = to_pixels(images[start + 1:start + chunk + 1])
            n = min(len(now), len(after))
            latent.append(wm.lam.infer(now[:n], after[:n])[1].cpu().numpy())
        actions = np.asarray(ep.action).reshape(len(ep.action), -1)[:, 0]
        true.append(actions)
        previous.append(np.concatenate([[-1], actions[:-1]]))
    return np.concatenate(latent), np.concatenate(true), np.concatenate(previous)


def data_report(wm, episodes: list, batches: int, seed: int, horizon: int = 4) -> dict:
    """Everything above on held-out episodes: `batches` x 8 windows of horizon + 1 frames."""
    from wmtool.data.replay import sample_sequences

    rng = np.random.default_rng(seed)
    batch = sample_sequences(episodes, wm.act_space, batches * 8, horizon + 1, rng)
    report = genie_report(wm, batch, horizon, seed)
    if all(ep.action is not None for ep in episodes):
        latent, true, previous = latent_actions_of(wm, episodes)
        report["actions"] = action_agreement(latent, true, seed)
        has = previous >= 0
        report["actions"]["previous"] = action_agreement(latent[has], previous[has], seed)
    return report
