"""Genie-style latent actions (Bruce et al. 2024), scaled to a CPU: learn a controllable
world model from frames alone, in three phases.

1. tokenizer: a per-frame VQ-VAE, 64x64 frames -> 8x8 grid of codes (Genie: an ST-ViViT;
   a per-frame tokenizer is the cheaper of the options its ablations compare).
2. lam: the latent action model. Its encoder sees (o_t, o_{t+1}) and must squeeze what
   changed into one of `actions` codes (8, as in Genie; FSQ, not a VQ codebook: see
   nets/fsq.py); its decoder predicts o_{t+1} from o_t and that code alone, so the next
   frame reaches the prediction only through the bottleneck (Genie's LAM also sees earlier
   frames; ours sees one).
3. dynamics: a MaskGIT transformer over the tokens of a window of frames, attention causal
   in time (a frame's tokens see their own frame and earlier ones), the latent action into
   each frame added to its token embeddings. Training masks a random (cosine-scheduled)
   share of each later frame's tokens and predicts them; generation starts from a fully
   masked frame and commits the most confident tokens over a few steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wmtool import parallel
from wmtool.models.base import DrivenByLatentActions, Loss, OptimGroup, Phase, WorldModel
from wmtool.nets.fsq import ScalarQuantizer
from wmtool.nets.vq import VectorQuantizer


def conv_encoder(channels: int, depth: int, out: int) -> nn.Sequential:
    """(N, C, 64, 64) -> (N, out, 8, 8): three stride-2 convolutions, then a 1x1 projection."""
    return nn.Sequential(
        nn.Conv2d(channels, depth, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(depth, 2 * depth, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(2 * depth, 2 * depth, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(2 * depth, out, 1))


def conv_decoder(inp: int, depth: int, channels: int) -> nn.Sequential:
    """(N, inp, 8, 8) -> (N, channels, 64, 64), pixel values in [0, 1] units (unclamped)."""
    return nn.Sequential(
        nn.Conv2d(inp, 2 * depth, 1), nn.ReLU(),
        nn.ConvTranspose2d(2 * depth, 2 * depth, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(2 * depth, depth, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(depth, channels, 4, 2, 1))


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W, C) uint8 -> (N, C, H, W) floats in [0, 1]."""
    x = frames.reshape(-1, *frames.shape[-3:]).float() / 255.0
    return x.permute(0, 3, 1, 2)


class Tokenizer(nn.Module):
    def __init__(self, channels: int, codes: int, dim: int, depth: int, beta: float):
        super().__init__()
        self.encoder = conv_encoder(channels, depth, dim)
        self.vq = VectorQuantizer(codes, dim, beta)
        self.decoder = conv_decoder(dim, depth, channels)

    def encode(self, pixels: torch.Tensor):
        """(N, C, 64, 64) -> quantised (N, D, 8, 8), tokens (N, 64), VQ losses."""
        z = self.encoder(pixels).permute(0, 2, 3, 1)  # (N, 8, 8, D)
        quantised, index, losses = self.vq(z)
        return quantised.permute(0, 3, 1, 2), index.flatten(1), losses

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, 64) codes -> (N, C, 64, 64) pixels in [0, 1] units."""
        side = int(math.isqrt(tokens.shape[-1]))
        e = self.vq.lookup(tokens).view(-1, side, side, self.vq.dim).permute(0, 3, 1, 2)
        return self.decoder(e)

    def loss(self, pixels: torch.Tensor):
        quantised, index, losses = self.encode(pixels)
        recon = self.decoder(quantised)
        losses = {"rec": F.mse_loss(recon, pixels), **losses}
        return losses, index


class LatentActionModel(nn.Module):
    """Its encoder sees o_t and the change o_{t+1} - o_t, amplified by CHANGE_GAIN; its
    decoder predicts that change from o_t and the latent action, and adds it to o_t.

    Why the change and not o_{t+1} itself: in Atari frames a move is a few pixels of a
    paddle on a static screen. Predicting whole frames, the error of redrawing the
    background outweighs the move and the action is ignored; and with o_{t+1} as input the
    encodings of all transitions differ by ~1e-4 and never separate (measured on Pong)."""

    CHANGE_GAIN = 10.0

    def __init__(self, channels: int, actions: int, depth: int):
        super().__init__()
        self.quantizer = ScalarQuantizer(actions)
        self.encoder = conv_encoder(2 * channels, depth, 2 * depth)
        self.to_action = nn.Linear(2 * depth * 64, self.quantizer.dim)
        self.past = conv_encoder(channels, depth, 2 * depth)
        self.action_film = nn.Linear(self.quantizer.dim, 4 * depth)  # scale, shift of past
        self.decoder = conv_decoder(2 * depth, depth, channels)

    def infer(self, now: torch.Tensor, after: torch.Tensor):
        """Pixels of o_t and o_{t+1} -> (quantised action vector, action index, {})."""
        change = (after - now) * self.CHANGE_GAIN
        h = self.encoder(torch.cat([now, change], 1)).flatten(1)
        return self.quantizer(self.to_action(h))

    def predict(self, now: torch.Tensor, action_vector: torch.Tensor) -> torch.Tensor:
        """o_{t+1} from o_t and the action alone: the next frame is not an input here."""
        scale, shift = self.action_film(action_vector).chunk(2, -1)
        h = self.past(now) * (1 + scale[..., None, None]) + shift[..., None, None]
        return now + self.decoder(h)

    def loss(self, now: torch.Tensor, after: torch.Tensor):
        action, index, losses = self.infer(now, after)
        prediction = self.predict(now, action)
        per_frame = (prediction - after).pow(2).mean((1, 2, 3))
        return per_frame, losses, index


def cosine_mask_ratio(u: torch.Tensor) -> torch.Tensor:
    """MaskGIT's schedule: the share of tokens masked at progress u in [0, 1]."""
    return torch.cos(0.5 * math.pi * u)


class MaskGITDynamics(nn.Module):
    def __init__(self, codes: int, actions: int, tokens: int, frames: int, dim: int,
                 layers: int, heads: int):
        super().__init__()
        self.codes, self.tokens, self.frames = codes, tokens, frames
        self.mask_token = codes  # an extra id
        self.embed = nn.Embedding(codes + 1, dim)
        self.space = nn.Parameter(torch.zeros(tokens, dim))
        self.time = nn.Parameter(torch.zeros(frames, dim))
        nn.init.normal_(self.space, std=0.02)
        nn.init.normal_(self.time, std=0.02)
        self.action = nn.Embedding(actions, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, codes)
        step = torch.arange(frames).repeat_interleave(tokens)
        # True = may not attend: a token sees its own frame and earlier frames only
        self.register_buffer("causal", step[:, None] < step[None, :], persistent=False)

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, N) (mask id where hidden), actions (B, T) into each frame (row 0's
        is ignored) -> logits (B, T, N, codes)."""
        b, t, n = tokens.shape
        x = self.embed(tokens) + self.space[None, None] + self.time[None, :t, None]
        act = self.action(actions)
        act = torch.cat([torch.zeros_like(act[:, :1]), act[:, 1:]], 1)
        x = (x + act[:, :, None]).reshape(b, t * n, -1)
        mask = self.causal[:t * n, :t * n]
        return self.head(self.norm(self.body(x, mask=mask))).view(b, t, n, -1)

    def loss(self, tokens: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor):
        """Mask a cosine-scheduled share of each later frame's tokens and predict them.
        valid (B, T): frames whose loss counts (not after an episode restart in the window).
        Returns (cross-entropy over masked tokens, accuracy on them)."""
        b, t, n = tokens.shape
        ratio = cosine_mask_ratio(parallel.rand((b, t, 1), tokens.device))
        hidden = parallel.rand((b, t, n), tokens.device) < ratio
        hidden[:, 0] = False  # the first frame is context only
        inputs = torch.where(hidden, torch.full_like(tokens, self.mask_token), tokens)
        logits = self.forward(inputs, actions)
        weight = (hidden & valid[..., None].bool()).float()
        ce = F.cross_entropy(logits.reshape(-1, self.codes), tokens.reshape(-1),
                             reduction="none").view(b, t, n)
        accuracy = ((logits.argmax(-1) == tokens).float() * weight).sum() \
            / weight.sum().clamp(min=1.0)
        return parallel.masked_mean(ce, weight), accuracy

    @torch.no_grad()
    def generate(self, context: torch.Tensor, actions: torch.Tensor, steps: int = 8,
                 temperature: float = 0.0) -> torch.Tensor:
        """The next frame's tokens (B, N) after `context` (B, T, N) given `actions` (B, T+1)
        into each frame (the last one leads to the new frame). Each step predicts every
        hidden token and keeps the most confident, until none is hidden (greedy when
        temperature is 0)."""
        b, t, n = context.shape
        context = context[:, -(self.frames - 1):]
        actions = actions[:, -context.shape[1] - 1:]
        frame = torch.full((b, n), self.mask_token, dtype=context.dtype, device=context.device)
        for s in range(steps):
            logits = self.forward(torch.cat([context, frame[:, None]], 1), actions)[:, -1]
            if temperature > 0:
                probs = F.softmax(logits / temperature, -1)
                guess = torch.multinomial(probs.view(-1, self.codes), 1).view(b, n)
            else:
                probs = F.softmax(logits, -1)
                guess = logits.argmax(-1)
            confidence = probs.gather(-1, guess[..., None])[..., 0]
            hidden = frame == self.mask_token
            confidence = torch.where(hidden, confidence, torch.full_like(confidence, 2.0))
            keep_hidden = int(n * cosine_mask_ratio(torch.tensor((s + 1) / steps)))
            order = confidence.argsort(-1)  # least confident first
            still = torch.zeros_like(hidden)
            still.scatter_(1, order[:, :keep_hidden], True)
            frame = torch.where(hidden & ~still, guess, frame)
        return frame


class GenieModel(WorldModel, DrivenByLatentActions):
    """The world model of `--algo genie`: phases tokenizer -> lam -> dynamics, each trained
    with the earlier ones frozen. Learns from frames alone: actions in the data, if any, are
    never read (they only grade the latent actions in `wmtool eval --data`)."""

    phases = ("tokenizer", "lam", "dynamics")
    behavior_phases: tuple[str, ...] = ()
    needs_actions = False  # learns from frames alone; `wmtool dream` drives it by latent actions

    def __init__(self, obs_space: dict, act_space, cfg):
        super().__init__()
        from wmtool.errors import WmtoolError
        from wmtool.nets.layers import split_keys

        image_keys, _ = split_keys(obs_space)
        if not image_keys:
            raise WmtoolError("genie learns from frames, and these observations have none",
                              "collect with --obs pixels, or import video with "
                              "`wmtool data import-video`")
        shape = obs_space[image_keys[0]].shape
        if tuple(shape[:2]) != (64, 64):
            raise WmtoolError(f"genie takes 64x64 frames, not {shape[0]}x{shape[1]}",
                              "collect or import with --set env.size=[64,64]")
        self.cfg, self.key, self.act_space = cfg, image_keys[0], act_space
        self.input_keys = [self.key]
        g = cfg.genie
        channels = shape[-1]
        self.tokenizer = Tokenizer(channels, g.codes, g.code_dim, g.depth, g.beta)
        self.lam = LatentActionModel(channels, g.actions, g.depth)
        self.dynamics = MaskGITDynamics(g.codes, g.actions, 64, g.frames, g.dim, g.layers,
                                        g.heads)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def schedule(self) -> list[Phase]:
        g = self.cfg.genie
        return [Phase("tokenizer", g.tokenizer_steps, g.batch, 1),
                Phase("lam", g.lam_steps, g.batch, 2),
                Phase("dynamics", g.dynamics_steps, g.batch, g.frames)]

    def optimizer_groups(self) -> dict:
        g = self.cfg.genie
        return {name: OptimGroup(getattr(self, name).parameters(), g.lr, 1e-8, g.clip)
                for name in self.phases}

    def phase_columns(self, phase: str) -> dict:
        """In `dynamics` the tokenizer is frozen: every frame is tokenized once."""
        if phase != "dynamics":
            return {}

        @torch.no_grad()
        def tokens(rows: dict):
            device = next(self.parameters()).device
            pixels = to_pixels(torch.as_tensor(rows[self.key], device=device))
            return self.tokenizer.encode(pixels)[1].to(torch.int16).cpu().numpy()
        return {"tokens": tokens}

    # -- driving by latent actions (engine/drive.py) --------------------------------------
    @property
    def latent_action_count(self) -> int:
        return self.cfg.genie.actions

    @torch.no_grad()
    def drive_start(self, frame) -> dict:
        """A real start frame (H, W, C) uint8 -> the state driving goes on from."""
        device = next(self.parameters()).device
        pixels = to_pixels(torch.as_tensor(frame, device=device)[None])
        return {"tokens": [self.tokenizer.encode(pixels)[1]], "actions": [0]}

    @torch.no_grad()
    def drive_step(self, state: dict, action: int):
        """One latent action -> (next state, the generated frame (H, W, C) uint8)."""
        g = self.cfg.genie
        actions = state["actions"] + [int(action)]
        context = torch.stack(state["tokens"][-(g.frames - 1):], 1)
        device = context.device
        new = self.dynamics.generate(context, torch.tensor([actions], device=device),
                                     g.maskgit_steps)
        pixels = self.tokenizer.decode_tokens(new).clamp(0, 1)[0]
        frame = (pixels.permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
        return {"tokens": state["tokens"] + [new], "actions": actions}, frame

    def frames(self, batch: dict) -> torch.Tensor:
        """(B, T, H, W, C) uint8 -> (B, T, C, H, W) floats in [0, 1]."""
        images = batch[self.key]
        return to_pixels(images).reshape(*images.shape[:2], images.shape[-1], *images.shape[2:4])

    @torch.no_grad()
    def latent_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T) index of the latent action into each frame (0 for the
        first, which has none)."""
        b, t = frames.shape[:2]
        _, index, _ = self.lam.infer(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1))
        return torch.cat([torch.zeros(b, 1, dtype=index.dtype, device=index.device),
                          index.view(b, t - 1)], 1)

    def loss(self, batch: dict, state=None, phase: str = "tokenizer"):
        """(scalar loss, optimiser groups to step, None, metrics) of one phase."""
        g = self.cfg.genie
        frames = self.frames(batch)
        if phase == "tokenizer":
            losses, index = self.tokenizer.loss(frames.flatten(0, 1))
            metrics = {"perplexity": VectorQuantizer.perplexity(index, g.codes)}
        elif phase == "lam":
            after = ~batch["is_first"][:, 1].bool()  # a pair inside one episode
            per_frame, losses, index = self.lam.loss(frames[:, 0], frames[:, 1])
            losses = {"rec": (per_frame * after).sum() / after.sum().clamp(min=1), **losses}
            metrics = {"perplexity": VectorQuantizer.perplexity(index, g.actions)}
        else:
            tokens = batch["tokens"].long() if "tokens" in batch else \
                self.tokenizer.encode(frames.flatten(0, 1))[1].view(*frames.shape[:2], -1)
            # frames after a restart inside the window belong to another episode
            valid = torch.cumsum(batch["is_first"][:, 1:].float(), 1) == 0
            valid = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)
            ce, accuracy = self.dynamics.loss(tokens, self.latent_actions(frames), valid)
            losses, metrics = {"tokens": ce}, {"token_accuracy": accuracy}
        if phase != "dynamics" and self.training:
            self.updates += 1
            if phase == "tokenizer" and int(self.updates) % g.restart_every == 0:
                metrics["restarted_codes"] = torch.tensor(float(self.tokenizer.vq.restart()),
                                                          device=frames.device)
        total = sum(losses.values())
        metrics.update({f"loss_{k}": v.detach() for k, v in losses.items()})
        metrics["loss"] = total.detach()
        return Loss(total, [phase], None,
                    {k: torch.as_tensor(v, device=total.device).detach()
                     for k, v in metrics.items()})
