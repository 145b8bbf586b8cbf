"""TD-MPC2's building blocks: Linear -> LayerNorm -> Mish layers, SimNorm latents, a
batched Q ensemble, random-shift augmentation and frame stacking (docs/algorithms/tdmpc2.md)."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from wmtool import parallel


class SimNorm(nn.Module):
    """Split the last axis into groups of `group` and softmax each: every group sums to one,
    which keeps latents bounded without a KL term."""

    def __init__(self, group: int = 8):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return x.reshape(*shape[:-1], -1, self.group).softmax(-1).reshape(shape)


class BatchDropout(nn.Module):
    """Dropout whose mask is drawn for the whole data-parallel batch (wmtool/parallel.py),
    the batch running along `dim`: the same masks as one process would draw."""

    def __init__(self, p: float, dim: int = 0):
        super().__init__()
        self.p, self.dim = p, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = parallel.rand_like(x, self.dim) >= self.p
        return x * keep / (1 - self.p)


def _tanh_softplus(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sigmoid(x) and tanh(softplus(x)), the latter as s(2 - s) / (1 + (1 - s)^2) with
    s = sigmoid(x): exact algebra (tanh(log(1 + e^x)) with 1 + e^x = 1 / (1 - s)), and no
    cancellation at either end (-> s as x -> -inf, -> 1 as x -> +inf)."""
    s = torch.sigmoid(x)
    t = torch.rsub(s, 2).mul_(s)
    return s, t.div_(torch.rsub(s, 1).square_().add_(1))


class _MishFunction(torch.autograd.Function):
    """x tanh(softplus(x)). Its derivative, t + x s (1 - t^2) with s = sigmoid(x) and
    t = tanh(softplus(x)), is computed in the forward, in place, and is all the backward
    keeps: one product in the backward, and one saved tensor instead of three."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        s, t = _tanh_softplus(x)
        ctx.save_for_backward((t * t).neg_().add_(1).mul_(s).mul_(x).add_(t))
        return x * t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (slope,) = ctx.saved_tensors
        return grad * slope


class Mish(nn.Module):
    """Mish, x tanh(softplus(x)). On CPU, torch's mish kernel (and its tanh and softplus)
    cost 5-15x an elementwise op, a quarter of a TD-MPC2 update and of an MPPI search on
    the 2-core machines we run on (TD-MPC2 speed records); one sigmoid and a few products give the
    same function. CUDA keeps torch's fused kernel. No parameters: checkpoints are as with
    nn.Mish."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            return F.mish(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _MishFunction.apply(x)
        return x * _tanh_softplus(x)[1]


class NormedLinear(nn.Sequential):
    """Linear -> (Dropout) -> LayerNorm -> activation (Mish unless given)."""

    def __init__(self, inp: int, out: int, act: nn.Module | None = None, dropout: float = 0.0):
        layers = [nn.Linear(inp, out)]
        if dropout:
            layers.append(BatchDropout(dropout))
        layers += [nn.LayerNorm(out), act if act is not None else Mish()]
        super().__init__(*layers)


def small_init(module: nn.Module) -> None:
    """TD-MPC2's initialisation: weights N(0, 0.02) truncated at 2 std, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def normed_mlp(inp: int, hidden: list[int], out: int, last: nn.Module | None = None,
               dropout: float = 0.0, zero_out: bool = False) -> nn.Sequential:
    """Hidden NormedLinear layers (dropout in the first only, as in the paper); the output
    layer is NormedLinear with `last` (e.g. SimNorm) if given, else a plain Linear."""
    dims = [inp, *hidden]
    layers: list[nn.Module] = [NormedLinear(a, b, dropout=dropout if i == 0 else 0.0)
                               for i, (a, b) in enumerate(zip(dims, dims[1:]))]
    layers.append(NormedLinear(dims[-1], out, act=last) if last is not None
                  else nn.Linear(dims[-1], out))
    net = nn.Sequential(*layers)
    small_init(net)
    if zero_out and isinstance(layers[-1], nn.Linear):
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return net


class EnsembleLinear(nn.Module):
    """`members` independent Linear layers applied in one batched matmul:
    (E, N, in) -> (E, N, out)."""

    def __init__(self, members: int, inp: int, out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, inp, out))
        self.bias = nn.Parameter(torch.zeros(members, 1, out))
        nn.init.trunc_normal_(self.weight, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleNorm(nn.Module):
    """LayerNorm with separate affine parameters per ensemble member."""

    def __init__(self, members: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, size))
        self.bias = nn.Parameter(torch.zeros(members, 1, size))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if members is None else \
            (self.weight[members], self.bias[members])
        return F.layer_norm(x, x.shape[-1:]) * weight + bias


class Ensemble(nn.Module):
    """E MLPs (NormedLinear hidden layers, dropout in the first) evaluated together.
    Input (N, in) is shared by every member; output (E, N, out), or (len(members), N, out)
    for a subset: only those members are computed. Zero-initialised output."""

    def __init__(self, members: int, inp: int, hidden: list[int], out: int, dropout: float = 0.0):
        super().__init__()
        self.members = members
        dims = [inp, *hidden]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims, dims[1:])):
            layers.append(EnsembleLinear(members, a, b))
            if dropout and i == 0:
                layers.append(BatchDropout(dropout, dim=1))  # (members, N, width)
            layers += [EnsembleNorm(members, b), Mish()]
        head = EnsembleLinear(members, dims[-1], out)
        nn.init.zeros_(head.weight)
        self.net = nn.Sequential(*layers, head)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        lead = x.shape[:-1]
        count = self.members if members is None else len(members)
        out = x.reshape(1, -1, x.shape[-1]).expand(count, -1, -1)
        for layer in self.net:
            out = layer(out, members) if isinstance(layer, (EnsembleLinear, EnsembleNorm)) \
                else layer(out)
        return out.reshape(count, *lead, out.shape[-1])


def shift_augment(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Random shifts of up to `pad` pixels per image (replicate padding, then a random crop
    back to size), as TD-MPC2 and DrQ augment pixel inputs. images: (N, C, H, W) floats."""
    if pad <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pad,) * 4, mode="replicate")
    dx = parallel.randint(2 * pad + 1, (n,), images.device)
    dy = parallel.randint(2 * pad + 1, (n,), images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device)[None])  # (N, H)
    cols = (dx[:, None] + torch.arange(w, device=images.device)[None])  # (N, W)
    index = torch.arange(n, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def stack_frames(images: torch.Tensor, is_first: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T, H, W, C) rows of a window -> (B, T - frames + 1, H, W, frames * C): row t's
    stack is rows t-frames+1 .. t, oldest first, where rows before an episode's first one
    repeat that first frame (as the env would have shown it at reset)."""
    b, t = images.shape[:2]
    steps = torch.arange(t, device=images.device)
    # the latest row <= t that starts an episode (0 if none inside the window)
    starts = torch.where(is_first.bool(), steps[None], torch.zeros_like(steps)[None])
    last_start = torch.cummax(starts, dim=1).values  # (B, T)
    rows = steps[frames - 1:]
    offsets = torch.arange(frames - 1, -1, -1, device=images.device)  # oldest first
    index = torch.maximum(rows[None, :, None] - offsets[None, None], last_start[:, rows, None])
    gathered = images[torch.arange(b, device=images.device)[:, None, None], index]
    # (B, T', frames, H, W, C) -> channels last, frames stacked along channels
    return gathered.permute(0, 1, 3, 4, 2, 5).reshape(b, len(rows), *images.shape[2:4], -1)


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    return math.floor((size - kernel) / stride) + 1


@contextmanager
def evaluating(module: nn.Module):
    """`module` in eval mode (no dropout) inside the block, as it was afterwards."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
