"""Distributions and transforms shared by the world models and behaviours (ALGORITHMS.md).

- symlog / symexp: squash targets of unknown scale.
- TwoHot: discrete regression over bins equally spaced in symlog space (DreamerV3: 255 bins
  over [-20, 20]; TD-MPC2: 101 over [-10, 10]); zero-initialised logits predict 0.
- Categorical latents with unimix and straight-through samples, drawn by inverse CDF (one
  uniform per variable): multinomial/Gumbel sampling took ~1/4 of a CPU update here.
- The DreamerV3 (2023) continuous actor: Normal(tanh(mean), std), std in [min, max].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot:
    """Targets split between their two neighbouring bins; loss = cross-entropy."""

    def __init__(self, bins: int = 255, low: float = -20.0, high: float = 20.0,
                 transform: bool = True):
        self.bins = torch.linspace(low, high, bins)
        self.transform = transform  # bins live in symlog space

    def _bins(self, ref: torch.Tensor) -> torch.Tensor:
        if self.bins.device != ref.device or self.bins.dtype != ref.dtype:
            self.bins = self.bins.to(ref.device, ref.dtype)
        return self.bins

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """(...,) values -> (..., bins) twohot weights."""
        bins = self._bins(y)
        x = symlog(y) if self.transform else y
        x = x.clamp(bins[0], bins[-1])
        above = torch.searchsorted(bins, x.contiguous(), right=True).clamp(1, len(bins) - 1)
        below = above - 1
        lo, hi = bins[below], bins[above]
        w_hi = ((x - lo) / (hi - lo)).clamp(0, 1)
        out = torch.zeros(*y.shape, len(bins), device=y.device, dtype=y.dtype)
        out.scatter_(-1, below.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, above.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        x = (logits.softmax(-1) * self._bins(logits)).sum(-1)
        return symexp(x) if self.transform else x

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of `target` (...,) under `logits` (..., bins)."""
        return -(self.encode(target.detach()) * logits.log_softmax(-1)).sum(-1)


def unimix_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    probs = logits.float().softmax(-1)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return probs


def sample_onehot(probs: torch.Tensor) -> torch.Tensor:
    """One categorical draw per distribution by inverse CDF, one uniform each."""
    u = torch.rand(probs.shape[:-1] + (1,), device=probs.device, dtype=probs.dtype)
    index = (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    return torch.zeros_like(probs).scatter_(-1, index, 1.0)


def straight_through(sample: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Forward: the one-hot sample. Backward: the gradient of the probabilities."""
    return sample + probs - probs.detach()


class OneHot:
    """Categorical over the last axis with unimix; samples are straight-through one-hots."""

    def __init__(self, logits: torch.Tensor, unimix: float = 0.01):
        self.probs = unimix_probs(logits, unimix)
        self.logits = torch.log(self.probs)

    def sample(self) -> torch.Tensor:
        return straight_through(sample_onehot(self.probs.detach()), self.probs)

    def mode(self) -> torch.Tensor:
        index = self.probs.argmax(-1, keepdim=True)
        return straight_through(torch.zeros_like(self.probs).scatter_(-1, index, 1.0), self.probs)

    def log_prob(self, onehot: torch.Tensor) -> torch.Tensor:
        return (onehot * self.logits).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum(-1)


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL[p || q] for (..., vars, classes) log-probabilities, summed over the variables."""
    p = p_logits.exp()
    return (p * (p_logits - q_logits)).sum((-2, -1))


def gaussian_kl(p_mean, p_std, q_mean, q_std) -> torch.Tensor:
    """KL[p || q] of diagonal Gaussians, summed over the last axis."""
    var_ratio = (p_std / q_std) ** 2
    t1 = ((p_mean - q_mean) / q_std) ** 2
    return 0.5 * (var_ratio + t1 - 1 - torch.log(var_ratio)).sum(-1)


class BoundedNormal:
    """DreamerV3 (2023) continuous actions: Normal(tanh(mean), (hi-lo)*sigmoid(s+2)+lo)."""

    def __init__(self, raw_mean: torch.Tensor, raw_std: torch.Tensor, min_std: float = 0.1,
                 max_std: float = 1.0):
        self.mean = torch.tanh(raw_mean)
        self.std = (max_std - min_std) * torch.sigmoid(raw_std + 2.0) + min_std

    def sample(self) -> torch.Tensor:  # reparameterised: gradients reach mean and std
        return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        return (-0.5 * z**2 - torch.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.std)).sum(-1)


def bernoulli_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
