"""Genie-style latent actions (Bruce et al. 2024), scaled to a CPU: learn a controllable
world model from frames alone, in three phases.

1. tokenizer: a per-frame VQ-VAE, 64x64 frames -> 8x8 grid of codes (Genie: an ST-ViViT;
   a per-frame tokenizer is the cheaper of the options its ablations compare).
2. lam: the latent action model. Its encoder sees (o_t, o_{t+1}) and must squeeze what
   changed into one of `actions` codes (8, as in Genie); its decoder predicts o_{t+1} from
   o_t and that code alone, so the next frame reaches the prediction only through the
   bottleneck (Genie's LAM also sees earlier frames; ours sees one).
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
    def __init__(self, channels: int, actions: int, dim: int, depth: int, beta: float):
        super().__init__()
        self.encoder = conv_encoder(2 * channels, depth, 2 * depth)
        self.to_action = nn.Linear(2 * depth * 64, dim)
        self.vq = VectorQuantizer(actions, dim, beta)
        self.past = conv_encoder(channels, depth, 2 * depth)
        self.action_film = nn.Linear(dim, 4 * depth)  # scale and shift of the past's features
        self.decoder = conv_decoder(2 * depth, depth, channels)

    def infer(self, now: torch.Tensor, after: torch.Tensor):
        """Pixels of o_t and o_{t+1} -> (quantised action vector, action index, VQ losses)."""
        h = self.encoder(torch.cat([now, after], 1)).flatten(1)
        return self.vq(self.to_action(h))

    def predict(self, now: torch.Tensor, action_vector: torch.Tensor) -> torch.Tensor:
        """o_{t+1} from o_t and the action alone: the next frame is not an input here."""
        scale, shift = self.action_film(action_vector).chunk(2, -1)
        h = self.past(now) * (1 + scale[..., None, None]) + shift[..., None, None]
        return self.decoder(h)

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
        ratio = cosine_mask_ratio(torch.rand(b, t, 1, device=tokens.device))
        hidden = torch.rand(b, t, n, device=tokens.device) < ratio
        hidden[:, 0] = False  # the first frame is context only
        inputs = torch.where(hidden, torch.full_like(tokens, self.mask_token), tokens)
        logits = self.forward(inputs, actions)
        weight = (hidden & valid[..., None].bool()).float()
        ce = F.cross_entropy(logits.reshape(-1, self.codes), tokens.reshape(-1),
                             reduction="none").view(b, t, n)
        count = weight.sum().clamp(min=1.0)
        accuracy = ((logits.argmax(-1) == tokens).float() * weight).sum() / count
        return (ce * weight).sum() / count, accuracy

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
