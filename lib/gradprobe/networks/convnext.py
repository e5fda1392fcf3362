"""ConvNeXt (Liu et al. 2022) with torchvision's layout and parameter names: convolutions with
LayerNorm, GELU and layer scale.

    features.0: stem, Conv2d(3 → d_0, 4×4, stride 4) -> LayerNorm2d
    features.1, 3, 5, 7: stages of CNBlocks at widths d_0 … d_3
    features.2, 4, 6: downsampling, LayerNorm2d -> Conv2d(d_i → d_{i+1}, 2×2, stride 2)
    avgpool (global) -> classifier: LayerNorm2d -> Flatten -> Linear

A CNBlock is ``x + layer_scale · block(x)`` with ``block`` = depthwise Conv2d 7×7 -> (to channels
last) -> LayerNorm -> Linear(d → 4d) -> GELU -> Linear(4d → d) -> (back to channels first), and
``layer_scale`` a per-channel parameter that starts at 10⁻⁶: at initialization every residual
branch is nearly off. LayerNorm normalizes each position's channels (eps 10⁻⁶). Convolutions and
Linear layers are drawn from a truncated normal with std 0.02 (biases zero), as torchvision does;
all from ``generator``. ``convnext(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768))`` is ConvNeXt-T,
28,589,128 parameters with 1000 classes (torchvision's count). Stochastic depth, a training-time
regularizer without parameters, is left out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import positive, positive_int

__all__ = ["LayerNorm2d", "Permute", "CNBlock", "ConvNeXt", "convnext", "convnext_parameter_count"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each position of a [B, C, H, W] batch."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module (torchvision's ``ops.misc.Permute``)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x):
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """``x + layer_scale · block(x)`` (see the module docstring)."""

    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, x):
        return x + self.layer_scale * self.block(x)


class ConvNeXt(nn.Module):
    """features -> avgpool -> classifier, torchvision's layout."""

    def __init__(self, depths, dims, layer_scale: float, num_classes: int):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4, bias=True), LayerNorm2d(dims[0], eps=1e-6))]
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            layers.append(nn.Sequential(*[CNBlock(dim, layer_scale) for _ in range(depth)]))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def convnext(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes: int = 1000, layer_scale: float = 1e-6,
             generator: torch.Generator | None = None) -> ConvNeXt:
    """A ConvNeXt of ``len(depths)`` stages with ``depths[i]`` blocks of width ``dims[i]``
    (defaults: ConvNeXt-T); ``layer_scale`` is the initial value of every block's layer scale
    (10⁻⁶ as in the paper; 1 switches the branches fully on). Weights from ``generator`` (see the
    module docstring). Parameters: :func:`convnext_parameter_count`."""
    depths, dims = list(depths), list(dims)
    if not depths or len(depths) != len(dims):
        raise ValueError(f"depths and dims need one entry per stage, got {depths} and {dims}")
    for d in depths + dims:
        positive_int("depths and dims entries", d)
    positive_int("num_classes", num_classes)
    positive("layer_scale", layer_scale)
    model = ConvNeXt(depths, dims, layer_scale, num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02, generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


def convnext_parameter_count(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes: int = 1000) -> int:
    """Parameters of :func:`convnext`, counted from the layout: the stem (48·d_0 + d_0 conv, 2·d_0 LN),
    per block 49·d + d (depthwise conv), 2·d (LN), 8·d² + 5·d (the two Linear layers) and d (layer
    scale), per downsampling 2·d_i (LN) and 4·d_i·d_{i+1} + d_{i+1} (conv), and the head 2·d_last +
    d_last·classes + classes."""
    total = 48 * dims[0] + dims[0] + 2 * dims[0]
    for i, (depth, d) in enumerate(zip(depths, dims)):
        total += depth * (49 * d + d + 2 * d + 8 * d * d + 5 * d + d)
        if i + 1 < len(dims):
            total += 2 * d + 4 * d * dims[i + 1] + dims[i + 1]
    return total + 2 * dims[-1] + dims[-1] * num_classes + num_classes
