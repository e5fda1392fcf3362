"""A small Vision Transformer (Dosovitskiy et al. 2021) for 32×32 images, with LayerNorm.

The image is cut into ``patch``×``patch`` patches (a strided convolution embeds each into ``dim``
features), a learned position embedding is added, then ``depth`` pre-norm blocks

    x ← x + proj(attention(LN(x))),    x ← x + fc2(act(fc1(LN(x)))),

a final LayerNorm, the mean over tokens and a linear classifier. Linear layers are drawn from a
truncated normal with std 0.02 (biases zero), the patch embedding from N(0, 1/fan_in), as in
common ViT code; everything from ``generator``. Paik & Choi's Figure 1(a) shows that such
layer-normalized transformers do not explode at initialization; :meth:`ViT.rate_layers` lists the
layers whose output gradient is the gradient of the residual stream, for
:func:`gradprobe.measure.rates.network_rate`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import one_of, positive, positive_int
from .layers import ACTIVATIONS, activation_module

__all__ = ["ViT", "vit"]


def _trunc_normal_(weight: torch.Tensor, std: float, generator) -> None:
    nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std, generator=generator)


class Attention(nn.Module):
    """Multi-head self-attention: qkv = Linear(dim, 3·dim), softmax(q kᵀ/√d_head) v, proj = Linear(dim, dim)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLPBlock(nn.Module):
    """fc1 = Linear(dim, hidden), activation, fc2 = Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int, activation_name: str):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), activation_module(activation_name), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, activation_name: str):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLPBlock(dim, hidden, activation_name)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch embedding -> position embedding -> blocks -> LayerNorm -> token mean -> classifier."""

    def __init__(self, image_size: int, patch: int, in_channels: int, num_classes: int, dim: int, depth: int,
                 heads: int, hidden: int, activation_name: str):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden, activation_name) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        return self.head(self.norm(self.blocks(x)).mean(dim=1))

    def rate_layers(self) -> list[nn.Module]:
        """The layers that write into the residual stream, input to output: every block's attention
        output projection and MLP output layer (2 per block, the ViT's "effective depth"). The
        gradient with respect to their output is the residual stream's gradient at that point."""
        return [m for blk in self.blocks for m in (blk.attn.proj, blk.mlp.fc2)]


def vit(depth: int = 6, dim: int = 128, heads: int = 4, mlp_ratio: float = 2.0, patch: int = 4,
        image_size: int = 32, in_channels: int = 3, num_classes: int = 10, activation: str = "gelu",
        generator: torch.Generator | None = None) -> ViT:
    """A small ViT for CIFAR-size images: (image_size/patch)² tokens of ``dim`` features, ``depth``
    pre-norm blocks with ``heads`` attention heads and an MLP of ``mlp_ratio``·dim hidden units
    (``activation`` from :data:`gradprobe.networks.layers.ACTIVATIONS`, GELU by default). Weights
    are drawn from ``generator`` (see the module docstring).

    Parameters, with T = (image_size/patch)² tokens, d = ``dim`` and h the MLP's hidden units:
    (in_channels·patch² + 1)·d + T·d for the embeddings, depth·(4d² + 2dh + 9d + h) for the blocks
    (attention 4d² + 4d, MLP 2dh + h + d, two LayerNorms 4d), 2d for the final LayerNorm and
    d·num_classes + num_classes for the classifier."""
    for name, value in (("depth", depth), ("dim", dim), ("heads", heads), ("patch", patch),
                        ("image_size", image_size), ("in_channels", in_channels), ("num_classes", num_classes)):
        positive_int(name, value)
    if dim % heads:
        raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
    if image_size % patch:
        raise ValueError(f"image_size ({image_size}) must be divisible by patch ({patch})")
    positive("mlp_ratio", mlp_ratio)
    hidden = max(1, int(round(mlp_ratio * dim)))
    one_of("activation", activation, ACTIVATIONS)
    model = ViT(image_size, patch, in_channels, num_classes, dim, depth, heads, hidden, activation)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal_(m.weight, 0.02, generator)
                m.bias.zero_()
        fan_in = model.patch_embed.weight[0].numel()
        nn.init.normal_(model.patch_embed.weight, 0.0, 1.0 / math.sqrt(fan_in), generator=generator)
        model.patch_embed.bias.zero_()
        _trunc_normal_(model.pos_embed, 0.02, generator)
    return model
