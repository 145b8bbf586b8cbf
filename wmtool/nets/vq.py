"""Vector quantisation (VQ-VAE, van den Oord et al. 2017) as Genie's tokenizer and latent
action model use it: nearest-codebook lookup, straight-through gradients to the encoder,
codebook and commitment losses, and restarts of codes nobody uses."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wmtool import parallel


class VectorQuantizer(nn.Module):
    """(..., D) vectors -> nearest of `codes` codebook vectors.

    forward returns (quantised with straight-through gradients, code indices, loss parts):
    the codebook loss ||sg(z) - e||^2 moves codes to the encodings, the commitment loss
    beta ||z - sg(e)||^2 keeps the encoder near its codes. `restart` re-seeds codes unused
    since the last call with random recent encodings, so the codebook stays in use."""

    def __init__(self, codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.codes, self.dim, self.beta = codes, dim, beta
        self.codebook = nn.Embedding(codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / codes, 1.0 / codes)
        self.register_buffer("usage", torch.zeros(codes))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(-1, self.dim)
        book = self.codebook.weight
        distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t()
                    + book.pow(2).sum(1)[None])
        return distance.argmin(1).view(z.shape[:-1])

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        return self.codebook(index)

    def forward(self, z: torch.Tensor):
        index = self.nearest(z.detach())
        e = self.lookup(index)
        losses = {"codebook": F.mse_loss(e, z.detach()),
                  "commit": self.beta * F.mse_loss(z, e.detach())}
        if self.training:
            with torch.no_grad():
                self.usage += torch.bincount(index.flatten(), minlength=self.codes).float()
                self._recent = z.detach().reshape(-1, self.dim)
        quantised = e + (z - z.detach())  # straight-through: forward exactly e, backward identity
        return quantised, index, losses

    @torch.no_grad()
    def restart(self) -> int:
        """Move every code unused since the last restart onto a random recent encoding;
        returns how many moved."""
        dead = (parallel.total(self.usage) == 0).nonzero().flatten()  # unused on every rank
        recent = getattr(self, "_recent", None)
        if len(dead) and recent is not None and len(recent):
            pick = parallel.alike_randint(len(recent), (len(dead),), recent.device)
            self.codebook.weight[dead] = recent[pick]
        parallel.broadcast_(self.codebook.weight)  # rank 0's restarts, so ranks stay equal
        self.usage.zero_()
        return len(dead)

    @staticmethod
    def perplexity(index: torch.Tensor, codes: int) -> torch.Tensor:
        """exp(entropy) of the codes' frequencies: how many codes are effectively in use."""
        p = torch.bincount(index.flatten(), minlength=codes).float()
        p = p / p.sum()
        return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())
