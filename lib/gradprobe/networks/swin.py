"""A small Swin Transformer (Liu et al. 2021) for 32×32 images: windowed self-attention with
LayerNorm, shifted windows, patch merging.

The image is cut into ``patch``×``patch`` patches (a strided convolution embeds each into ``dim``
features, then a LayerNorm), giving a (32/patch)² grid of tokens. Each stage holds ``depth``
pre-norm blocks

    x ← x + proj(window_attention(LN(x))),    x ← x + fc2(act(fc1(LN(x)))),

where attention runs inside non-overlapping ``window``×``window`` windows of the token grid, with a
learned relative-position bias per head; every second block shifts the windows by half a window
(a cyclic roll of the grid, with the mask that keeps tokens from attending across the roll's seam),
as in Swin. Between stages a patch merging (the 2×2 neighbours concatenated, LayerNorm, a linear
map 4C → 2C without bias) halves the grid and doubles the features. A final LayerNorm, the mean
over tokens and a linear classifier end the network. Linear layers and the position-bias tables
are drawn from a truncated normal with std 0.02 (biases zero), the patch embedding from
N(0, 1/fan_in), everything from ``generator``.

Paik & Choi (2023) name Swin among the layer-normalized transformers that do not explode at
initialization (Figure 1(a)); :meth:`Swin.rate_layers` lists the layers that write into the residual
stream, for :func:`gradprobe.measure.rates.network_rate`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import one_of, positive, positive_int
from .layers import ACTIVATIONS
from .vit import MLPBlock, _trunc_normal_

__all__ = ["Swin", "SwinBlock", "WindowAttention", "PatchMerging", "swin", "window_partition", "window_merge",
           "shift_mask"]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B·(H/w)·(W/w), w·w, C]: the tokens of each window, windows in row order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: [B·nW, w·w, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """The additive attention mask of shifted windows, [nW, w·w, w·w]: 0 between tokens of the same
    region of the rolled grid, −100 (no attention) between tokens the cyclic roll brought together."""
    region = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            region[:, rows, cols, :] = label
            label += 1
    ids = window_partition(region, window).squeeze(-1)              # [nW, w·w]
    return (ids.unsqueeze(1) != ids.unsqueeze(2)).float() * -100.0


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative-position bias. Its
    forward pass returns the heads' concatenated outputs; the output projection ``proj`` (a per-token
    linear map) is applied by the block after the windows are merged back into the grid, so that its
    output, a residual-stream write, has the grid's shape [B, H, W, C]."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("bias_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def forward(self, x, mask=None):
        n_win, n, d = x.shape
        q, k, v = self.qkv(x).view(n_win, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        attn = attn + self.bias_table[self.bias_index].permute(2, 0, 1)
        if mask is not None:                                            # [nW, n, n], repeated over the batch
            attn = (attn.view(-1, mask.shape[0], self.heads, n, n) + mask[None, :, None]).view(n_win, self.heads, n, n)
        y = attn.softmax(dim=-1) @ v
        return y.transpose(1, 2).reshape(n_win, n, d)


class SwinBlock(nn.Module):
    """A pre-norm block on a [B, H, W, C] grid: windowed (optionally shifted) attention, then an MLP."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, hidden: int, activation_name: str):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1, self.attn = nn.LayerNorm(dim), WindowAttention(dim, heads, window)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLPBlock(dim, hidden, activation_name)

    def forward(self, x):
        b, h, w, c = x.shape
        y = self.norm1(x)
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(h, w, self.window, self.shift).to(device=x.device, dtype=x.dtype)
        y = window_merge(self.attn(window_partition(y, self.window), mask), self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.attn.proj(y)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """[B, H, W, C] -> [B, H/2, W/2, 2C]: each 2×2 neighbourhood concatenated (4C), LayerNorm, Linear(4C, 2C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class Swin(nn.Module):
    """Patch embedding + LayerNorm -> stages of Swin blocks with patch merging between -> LayerNorm ->
    token mean -> classifier."""

    def __init__(self, patch: int, in_channels: int, num_classes: int, dim: int, depths, heads, window: int,
                 mlp_ratio: float, activation_name: str):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)
        self.embed_norm = nn.LayerNorm(dim)
        stages = []
        for s, (depth, n_heads) in enumerate(zip(depths, heads)):
            width = dim * 2 ** s
            blocks = [SwinBlock(width, n_heads, window, window // 2 if b % 2 else 0,
                                max(1, int(round(mlp_ratio * width))), activation_name) for b in range(depth)]
            if s + 1 < len(depths):
                blocks.append(PatchMerging(width))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim * 2 ** (len(depths) - 1))
        self.head = nn.Linear(dim * 2 ** (len(depths) - 1), num_classes)

    def forward(self, x):
        x = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        x = self.norm(self.stages(x))
        return self.head(x.mean(dim=(1, 2)))

    def rate_layers(self) -> list[nn.Module]:
        """The layers that write into the residual stream, input to output: every block's attention
        output projection and MLP output layer (2 per block). The patch mergings, which start a new
        stream of another width, are not among them."""
        return [m for blk in self.modules() if isinstance(blk, SwinBlock) for m in (blk.attn.proj, blk.mlp.fc2)]


def swin(depths=(2, 2, 2), dim: int = 32, heads=(2, 4, 8), window: int = 4, patch: int = 2, mlp_ratio: float = 2.0,
         image_size: int = 32, in_channels: int = 3, num_classes: int = 10, activation: str = "gelu",
         generator: torch.Generator | None = None) -> Swin:
    """A small Swin Transformer for ``image_size`` images: a (image_size/patch)² token grid of ``dim``
    features, then one stage per entry of ``depths`` (blocks) and ``heads`` (attention heads), the
    grid halved and the features doubled between stages, windows of ``window``×``window`` tokens
    (shifted by window/2 in every second block), MLPs of ``mlp_ratio``·width hidden units
    (``activation``, GELU by default). Weights from ``generator`` (see the module docstring).

    The grid of every stage must be a multiple of ``window``: image_size/patch/2^s for stage s.
    Parameters, with widths d_s = dim·2^s and hidden units h_s: (in_channels·patch² + 1)·dim + 2·dim for
    the embedding; per block of stage s 4d_s² + 4d_s (attention) + (2w − 1)²·heads_s (position
    bias) + 2d_s·h_s + h_s + d_s (MLP) + 4d_s (LayerNorms); per merging 8d_s² + 8d_s; the final
    LayerNorm and the classifier.
    """
    depths, heads = tuple(depths), tuple(heads)
    if not depths or len(depths) != len(heads):
        raise ValueError(f"depths and heads need one entry per stage, got {depths!r} and {heads!r}")
    for name, value in (("dim", dim), ("window", window), ("patch", patch), ("image_size", image_size),
                        ("in_channels", in_channels), ("num_classes", num_classes), *zip(["depths"] * len(depths), depths),
                        *zip(["heads"] * len(heads), heads)):
        positive_int(name, value)
    positive("mlp_ratio", mlp_ratio)
    one_of("activation", activation, ACTIVATIONS)
    if image_size % patch:
        raise ValueError(f"image_size ({image_size}) must be divisible by patch ({patch})")
    for s, n_heads in enumerate(heads):
        grid, width = image_size // patch // 2 ** s, dim * 2 ** s
        if grid < window or grid % window:
            raise ValueError(f"stage {s + 1} has a {grid}×{grid} token grid, not a multiple of window {window}")
        if width % n_heads:
            raise ValueError(f"stage {s + 1} has {width} features, not divisible by {n_heads} heads")
    model = Swin(patch, in_channels, num_classes, dim, depths, heads, window, mlp_ratio, activation)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal_(m.weight, 0.02, generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, WindowAttention):
                _trunc_normal_(m.bias_table, 0.02, generator)
        fan_in = model.patch_embed.weight[0].numel()
        nn.init.normal_(model.patch_embed.weight, 0.0, 1.0 / math.sqrt(fan_in), generator=generator)
        model.patch_embed.bias.zero_()
    return model
