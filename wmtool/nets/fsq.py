"""Finite scalar quantisation (FSQ, Mentzer et al. 2023) for Genie's latent actions.

Each of a few dimensions is squashed into (-1, 1) and rounded to one of L_i evenly spaced
values; a code is the tuple of roundings, so there are prod(L_i) codes. Why not a learned
codebook (nets/vq.py) here: a latent action sits on a tiny change between two frames, the
encodings of all transitions start out nearly equal, and a VQ codebook then collapses onto
one code that restarts cannot revive (measured on Pong: perplexity 1.0 of 8). FSQ's
thresholds are fixed, so any encoding that moves across one changes the code, and there
is no codebook to collapse."""
from __future__ import annotations

import torch
from torch import nn


def levels_for(codes: int) -> list[int]:
    """The levels per dimension that give exactly `codes` codes: its prime factors
    (8 -> [2, 2, 2], 6 -> [2, 3], 1 -> [1])."""
    if codes < 1:
        from wmtool.errors import WmtoolError

        raise WmtoolError(f"latent actions need at least one code, not {codes}",
                          "set genie.actions to 1 or more (Genie uses 8)")
    levels, rest, p = [], codes, 2
    while rest > 1:
        while rest % p == 0:
            levels.append(p)
            rest //= p
        p += 1
    return levels or [1]


class ScalarQuantizer(nn.Module):
    """(..., len(levels)) vectors -> (quantised with straight-through gradients, code index,
    no losses): the same interface as VectorQuantizer.forward."""

    def __init__(self, codes: int):
        super().__init__()
        self.codes = codes
        self.levels = levels_for(codes)
        self.dim = len(self.levels)
        radix = torch.cumprod(torch.tensor([1] + self.levels[:-1]), 0)
        self.register_buffer("radix", radix, persistent=False)
        self.register_buffer("top", torch.tensor(self.levels, dtype=torch.float) - 1,
                             persistent=False)

    def digits(self, z: torch.Tensor) -> torch.Tensor:
        """The level (0..L_i - 1) each dimension rounds to."""
        return torch.round((torch.tanh(z) + 1) / 2 * self.top).long()

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        """Code indices -> their vectors, values evenly spaced in [-1, 1] (0 where L_i = 1)."""
        digits = (index[..., None] // self.radix) % (self.top.long() + 1)
        return torch.where(self.top > 0, digits / self.top.clamp(min=1) * 2 - 1,
                           torch.zeros_like(self.top))

    def forward(self, z: torch.Tensor):
        bounded = torch.tanh(z)
        index = (self.digits(z) * self.radix).sum(-1)
        quantised = bounded + (self.lookup(index) - bounded).detach()
        return quantised, index, {}
