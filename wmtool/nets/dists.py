"""Distributions and transforms shared by the world models and behaviours (docs/algorithms/).

- symlog / symexp: squash targets of unknown scale.
- TwoHot: discrete regression over bins equally spaced in symlog space (DreamerV3: 255 bins
  over [-20, 20]; TD-MPC2: 101 over [-10, 10]); zero-initialised logits predict 0.
- Categorical latents with unimix and straight-through samples, drawn by inverse CDF (one
  uniform per variable): multinomial/Gumbel sampling took ~1/4 of a CPU update here.
- Scalar heads: TwoHot (V3) or MSE, a unit-variance Gaussian (PlaNet, V1, V2).
- Continuous actors: DreamerV3's Normal(tanh(mean), std) with std in [min, max]; Dreamer
  V1's tanh-squashed Normal; DreamerV2's Normal truncated to [-1, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from wmtool import parallel


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

    def _neighbours(self, y: torch.Tensor):
        """The bins below and above each value and the weight of the one above."""
        bins = self._bins(y)
        x = symlog(y) if self.transform else y
        x = x.clamp(bins[0], bins[-1])
        above = torch.searchsorted(bins, x.contiguous(), right=True).clamp(1, len(bins) - 1)
        below = above - 1
        lo, hi = bins[below], bins[above]
        return below, above, ((x - lo) / (hi - lo)).clamp(0, 1)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """(...,) values -> (..., bins) twohot weights."""
        below, above, w_hi = self._neighbours(y)
        out = torch.zeros(*y.shape, len(self.bins), device=y.device, dtype=y.dtype)
        out.scatter_(-1, below.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, above.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    @property
    def size(self) -> int:
        return len(self.bins)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        # a matrix-vector product, with no (..., bins) product tensor to write and reduce;
        # torch.mv, not `@`, so that bf16 autocast leaves it in the logits' precision
        probs = logits.softmax(-1)
        x = torch.mv(probs.reshape(-1, probs.shape[-1]), self._bins(probs)).reshape(
            probs.shape[:-1])
        return symexp(x) if self.transform else x

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of `target` (...,) under `logits` (..., bins): the twohot
        weights meet only their two bins, so gather those log-probabilities instead of
        multiplying a dense (..., bins) encoding (the same sum, two terms instead of 255)."""
        below, above, w_hi = self._neighbours(target.detach().to(logits.dtype))
        logp = logits.log_softmax(-1)
        lo = logp.gather(-1, below.unsqueeze(-1)).squeeze(-1)
        hi = logp.gather(-1, above.unsqueeze(-1)).squeeze(-1)
        return -((1 - w_hi) * lo + w_hi * hi)


class MSE:
    """A scalar as a unit-variance Gaussian: one output; loss = squared error / 2."""

    size = 1

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out.squeeze(-1)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (out.squeeze(-1) - target.detach()) ** 2


def scalar_head(kind: str, bins: int):
    """`twohot` (bins over [-20, 20] in symlog space) or `mse`."""
    from wmtool.config import require_choice

    require_choice("head", kind, ("twohot", "mse"))
    return TwoHot(bins, -20.0, 20.0) if kind == "twohot" else MSE()


def unimix_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    probs = logits.float().softmax(-1)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return probs


def sample_onehot(probs: torch.Tensor) -> torch.Tensor:
    """One categorical draw per distribution by inverse CDF, one uniform each: the index is
    the number of classes whose cumulative probability lies below the uniform (a binary
    search, cheaper than comparing against every class and counting)."""
    u = parallel.rand(probs.shape[:-1] + (1,), probs.device, probs.dtype)
    index = torch.searchsorted(probs.cumsum(-1), u).clamp(max=probs.shape[-1] - 1)
    return torch.zeros_like(probs).scatter_(-1, index, 1.0)


def straight_through(sample: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Forward: the one-hot sample. Backward: the gradient of the probabilities. With no
    gradient to carry (acting, imagination inside a frozen model) the sample as it is:
    the two extra passes cost time and round its ones to within 1e-7 of one."""
    if not probs.requires_grad:
        return sample
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
        raw_mean, raw_std = raw_mean.float(), raw_std.float()  # fp32 under bf16 autocast too
        self.mean = torch.tanh(raw_mean)
        self.std = (max_std - min_std) * torch.sigmoid(raw_std + 2.0) + min_std

    def sample(self) -> torch.Tensor:  # reparameterised: gradients reach mean and std
        return self.mean + self.std * parallel.randn_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        return (-0.5 * z**2 - torch.log(self.std) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.std)).sum(-1)


class TanhNormal:
    """Dreamer V1: tanh(Normal(m, s)), m = 5 tanh(raw / 5), s = softplus(raw_s + c) + min_std
    with c chosen so an untrained actor's std is `init_std` (5): wide exploration at first."""

    def __init__(self, raw_mean: torch.Tensor, raw_std: torch.Tensor, min_std: float = 1e-4,
                 init_std: float = 5.0):
        # fp32 under bf16 autocast too: in bf16, 1 - 1e-6 rounds to 1 and atanh(1) is inf
        raw_mean, raw_std = raw_mean.float(), raw_std.float()
        self.mean = 5.0 * torch.tanh(raw_mean / 5.0)
        shift = math.log(math.expm1(init_std))
        self.std = F.softplus(raw_std + shift) + min_std

    def sample(self) -> torch.Tensor:
        return torch.tanh(self.mean + self.std * parallel.randn_like(self.mean))

    def mode(self) -> torch.Tensor:
        return torch.tanh(self.mean)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(-1 + 1e-6, 1 - 1e-6)
        u = torch.atanh(x)
        z = (u - self.mean) / self.std
        normal = -0.5 * z**2 - torch.log(self.std) - 0.5 * math.log(2 * math.pi)
        return (normal - torch.log1p(-x**2)).sum(-1)  # change of variables through tanh

    def entropy(self) -> torch.Tensor:
        """A one-sample estimate (the squashed entropy has no closed form), as in V1."""
        return -self.log_prob(self.sample())


class TruncNormal:
    """DreamerV2: Normal(tanh(raw), 2 sigmoid(raw_s / 2) + min_std) truncated to [-1, 1].
    Samples by inverse CDF, so gradients reach mean and std (dynamics backprop)."""

    def __init__(self, raw_mean: torch.Tensor, raw_std: torch.Tensor, min_std: float = 0.1):
        raw_mean, raw_std = raw_mean.float(), raw_std.float()  # fp32 under bf16 autocast too
        self.mean = torch.tanh(raw_mean)
        self.std = 2 * torch.sigmoid(raw_std / 2) + min_std
        self._lo = _normal_cdf((-1 - self.mean) / self.std)
        self._hi = _normal_cdf((1 - self.mean) / self.std)
        self._z = (self._hi - self._lo).clamp(min=1e-6)

    def sample(self) -> torch.Tensor:
        u = self._lo + self._z * parallel.rand_like(self.mean)
        centred = (2 * u - 1).clamp(-1 + 1e-6, 1 - 1e-6)
        x = self.mean + self.std * math.sqrt(2) * torch.erfinv(centred)
        return x.clamp(-1, 1)

    def mode(self) -> torch.Tensor:
        return self.mean  # tanh keeps it inside [-1, 1]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        normal = -0.5 * z**2 - torch.log(self.std) - 0.5 * math.log(2 * math.pi)
        return (normal - torch.log(self._z)).sum(-1)

    def entropy(self) -> torch.Tensor:
        a, b = (-1 - self.mean) / self.std, (1 - self.mean) / self.std
        pdf = lambda t: torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)
        h = (0.5 * math.log(2 * math.pi * math.e) + torch.log(self.std * self._z)
             + (a * pdf(a) - b * pdf(b)) / (2 * self._z))
        return h.sum(-1)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def bernoulli_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
