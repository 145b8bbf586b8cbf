"""Mixture density output (World Models' MDN-RNN): K Gaussians per output dimension.

Each dimension of the target has its own mixture (the paper's factorisation), so a head
predicting D dimensions with K components outputs 3 * D * K numbers: logits, means and
log standard deviations. Sampling with temperature τ divides the logits by τ and scales the
noise by sqrt(τ): τ < 1 sharpens the dream, τ > 1 makes it harder to exploit.
"""
from __future__ import annotations

import math

import torch

from wmtool import parallel

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MDN:
    def __init__(self, params: torch.Tensor, mixtures: int):
        """params: (..., 3 * D * K) as produced by a linear layer."""
        *lead, width = params.shape
        dims = width // (3 * mixtures)
        p = params.reshape(*lead, dims, 3, mixtures)
        self.logits = p[..., 0, :]
        self.mean = p[..., 1, :]
        # a bounded log-std keeps a collapsing component from producing inf/NaN likelihoods
        self.log_std = p[..., 2, :].clamp(-7.0, 5.0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per dimension: (..., D)."""
        z = (x.unsqueeze(-1) - self.mean) * torch.exp(-self.log_std)
        comp = -0.5 * z * z - self.log_std - LOG_SQRT_2PI
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + comp, -1)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood averaged over dimensions: (...)."""
        return -self.log_prob(x).mean(-1)

    def sample(self, temperature: float = 1.0, greedy: bool = False) -> torch.Tensor:
        """One draw per dimension: pick a component from softmax(logits / τ), then
        mean + std * sqrt(τ) * noise. `greedy` takes the likeliest component's mean."""
        if greedy:
            pick = self.logits.argmax(-1, keepdim=True)
            return self.mean.gather(-1, pick).squeeze(-1)
        probs = torch.softmax(self.logits / max(temperature, 1e-6), -1)
        # inverse-CDF pick with one uniform per dimension (multinomial is slow on CPU)
        u = parallel.rand(probs.shape[:-1] + (1,), probs.device, probs.dtype)
        pick = (probs.cumsum(-1) < u).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
        mean = self.mean.gather(-1, pick).squeeze(-1)
        std = torch.exp(self.log_std.gather(-1, pick).squeeze(-1))
        return mean + std * math.sqrt(temperature) * parallel.randn_like(mean)
