"""Building blocks with LayerNorm + SiLU (DreamerV3), shared by every world model."""
from __future__ import annotations

import math

import torch
from torch import nn

from wmtool.nets.dists import symlog
from wmtool.spaces import Space


def init_fan_avg(module: nn.Module) -> None:
    """Truncated-normal weights scaled by the average fan (the Dreamer 'normal/avg' init)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            std = math.sqrt(1.0 / ((fan_in + fan_out) / 2)) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def zero_init(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Dense(nn.Sequential):
    """Linear (no bias) -> LayerNorm -> SiLU."""

    def __init__(self, inp: int, out: int):
        super().__init__(nn.Linear(inp, out, bias=False), nn.LayerNorm(out, eps=1e-3), nn.SiLU())


class MLP(nn.Module):
    def __init__(self, inp: int, units: int, layers: int, out: int | None = None,
                 zero_out: bool = False):
        super().__init__()
        blocks = []
        for i in range(layers):
            blocks.append(Dense(inp if i == 0 else units, units))
        self.body = nn.Sequential(*blocks)
        init_fan_avg(self.body)
        self.out_dim = units if layers else inp
        self.head = None
        if out is not None:
            self.head = nn.Linear(self.out_dim, out)
            init_fan_avg(self.head)
            if zero_out:
                zero_init(self.head)
            self.out_dim = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        return self.head(x) if self.head is not None else x


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _stages(size: int, minres: int) -> int:
    stages = int(round(math.log2(size / minres)))
    if minres * 2**stages != size:
        raise ValueError(f"image size {size} must be {minres} times a power of two")
    return stages


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions, channels depth x (1, 2, 4, ...), down to minres x minres."""

    def __init__(self, channels: int, size: int, depth: int, minres: int = 4):
        super().__init__()
        layers, inp = [], channels
        for i in range(_stages(size, minres)):
            out = depth * 2**i
            layers += [nn.Conv2d(inp, out, 4, 2, 1, bias=False), ChannelNorm(out, eps=1e-3),
                       nn.SiLU()]
            inp = out
        self.net = nn.Sequential(*layers)
        init_fan_avg(self.net)
        self.out_dim = inp * minres * minres

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(..., H, W, C) floats in [-0.5, 0.5] -> (..., features)."""
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).permute(0, 3, 1, 2)
        return self.net(x).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: features -> (..., H, W, C) images centred on 0 ([-0.5, 0.5])."""

    def __init__(self, inp: int, channels: int, size: int, depth: int, minres: int = 4):
        super().__init__()
        stages = _stages(size, minres)
        self.minres, self.top = minres, depth * 2 ** (stages - 1)
        self.proj = nn.Linear(inp, self.top * minres * minres)
        layers, width = [], self.top
        for i in reversed(range(stages)):
            last = i == 0
            out = channels if last else depth * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(width, out, 4, 2, 1, bias=last))
            if not last:
                layers += [ChannelNorm(out, eps=1e-3), nn.SiLU()]
            width = out
        self.net = nn.Sequential(*layers)
        init_fan_avg(self)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = self.proj(feat.reshape(-1, feat.shape[-1]))
        x = self.net(x.reshape(-1, self.top, self.minres, self.minres))
        return x.permute(0, 2, 3, 1).reshape(*lead, *x.shape[2:], x.shape[1])


class NormGRUCell(nn.Module):
    """GRU with one LayerNorm'd projection and the update gate biased towards keeping state."""

    def __init__(self, inp: int, size: int):
        super().__init__()
        self.linear = nn.Linear(inp + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size, eps=1e-3)
        init_fan_avg(self)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], -1)))
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1 - update) * h


class ObsScaling:
    """How observations enter and leave a model: images to [-0.5, 0.5] at `image_bits` bits
    (PlaNet quantises to 5, each value at its bin's centre; 8 keeps every level), vectors
    symlog'd (DreamerV3) or as they are (PlaNet, Dreamer V1/V2)."""

    def __init__(self, symlog_vectors: bool = True, image_bits: int = 8):
        if not 1 <= image_bits <= 8:
            raise ValueError(f"image_bits must be in 1..8, not {image_bits}")
        self.symlog_vectors, self.image_bits = symlog_vectors, image_bits

    def image(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.image_bits < 8:
            levels = 2 ** self.image_bits
            x = (torch.floor(x / 2 ** (8 - self.image_bits)) + 0.5) * (255.0 / levels)
        return x / 255.0 - 0.5

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        return symlog(x.float()) if self.symlog_vectors else x.float()

    def vector_out(self, x: torch.Tensor) -> torch.Tensor:
        from wmtool.nets.dists import symexp

        return symexp(x) if self.symlog_vectors else x


def split_keys(obs_space: dict[str, Space]) -> tuple[list[str], list[str]]:
    """Model inputs: image keys (uint8 HxWxC) and vector keys; `log/` keys are never inputs."""
    keys = [k for k in obs_space if not k.startswith("log/")]
    images = [k for k in keys if obs_space[k].is_image]
    return images, [k for k in keys if k not in images]


class MultiEncoder(nn.Module):
    """Image keys (stacked on channels) -> CNN; vector keys -> MLP; concatenated."""

    def __init__(self, obs_space: dict[str, Space], depth: int, units: int, layers: int,
                 scaling: ObsScaling | None = None):
        super().__init__()
        self.scaling = scaling or ObsScaling()
        self.image_keys, self.vector_keys = split_keys(obs_space)
        self.out_dim = 0
        if self.image_keys:
            shape = obs_space[self.image_keys[0]].shape
            channels = sum(obs_space[k].shape[-1] for k in self.image_keys)
            self.cnn = ConvEncoder(channels, shape[0], depth)
            self.out_dim += self.cnn.out_dim
        if self.vector_keys:
            dim = sum(int(obs_space[k].shape[0]) for k in self.vector_keys)
            self.mlp = MLP(dim, units, layers)
            self.out_dim += self.mlp.out_dim

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.image_keys:
            images = torch.cat([obs[k] for k in self.image_keys], -1)
            parts.append(self.cnn(self.scaling.image(images)))
        if self.vector_keys:
            vectors = torch.cat([obs[k].float() for k in self.vector_keys], -1)
            parts.append(self.mlp(self.scaling.vector(vectors)))
        return torch.cat(parts, -1)


class MultiDecoder(nn.Module):
    """Features -> every input key; loss: MSE in the model's scaling (summed per step)."""

    def __init__(self, inp: int, obs_space: dict[str, Space], depth: int, units: int, layers: int,
                 scaling: ObsScaling | None = None):
        super().__init__()
        self.scaling = scaling or ObsScaling()
        self.image_keys, self.vector_keys = split_keys(obs_space)
        self.obs_space = obs_space
        if self.image_keys:
            shape = obs_space[self.image_keys[0]].shape
            channels = sum(obs_space[k].shape[-1] for k in self.image_keys)
            self.cnn = ConvDecoder(inp, channels, shape[0], depth)
        if self.vector_keys:
            self.vector_dims = [int(obs_space[k].shape[0]) for k in self.vector_keys]
            self.mlp = MLP(inp, units, layers, out=sum(self.vector_dims))

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predictions in model space: images in [-0.5, 0.5], vectors scaled (symlog)."""
        out = {}
        if self.image_keys:
            sizes = [self.obs_space[k].shape[-1] for k in self.image_keys]
            out.update(zip(self.image_keys, self.cnn(feat).split(sizes, -1)))
        if self.vector_keys:
            out.update(zip(self.vector_keys, self.mlp(feat).split(self.vector_dims, -1)))
        return out

    def losses(self, pred: dict[str, torch.Tensor], obs: dict[str, torch.Tensor]) -> dict:
        losses = {}
        for key in self.image_keys:
            target = self.scaling.image(obs[key])
            losses[key] = ((pred[key] - target) ** 2).sum((-3, -2, -1))
        for key in self.vector_keys:
            losses[key] = ((pred[key] - self.scaling.vector(obs[key])) ** 2).sum(-1)
        return losses

    def decode(self, pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Model-space predictions -> observation space (uint8 images, raw vectors)."""
        out = {}
        for key in self.image_keys:
            out[key] = ((pred[key] + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        for key in self.vector_keys:
            out[key] = self.scaling.vector_out(pred[key])
        return out
