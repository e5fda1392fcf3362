"""Statistics of tensors that every measurement of the book is made of.

- :func:`variance`: Var[x] as the papers define it, the mean over features of the per-feature
  variance over the batch;
- :func:`scaling_ratios`: the forward and backward scaling ratios (R_f, R_b) of an operator
  (ghost 2024, Definition B.1);
- :func:`moments`: per-channel mean and variance of a batch of feature maps (Bjorck et al.).
"""
from __future__ import annotations

from typing import NamedTuple

import math

import numpy as np
import torch
from torch import nn

from ..checks import positive_int

__all__ = ["variance", "scaling_ratios", "network_ratios", "Moments", "moments"]


def variance(t: torch.Tensor) -> torch.Tensor:
    """Var[t]: per-feature variance over dimension 0 (biased, 1/N), averaged over the features
    (every other dimension, e.g. C·H·W of an image batch). The paper's Var[x] = (1/d) Σ_i Var[x_i]."""
    if t.dim() < 2 or t.shape[0] < 2:
        raise ValueError(f"variance needs a batch of at least 2 samples along dimension 0, got shape {tuple(t.shape)}")
    return t.flatten(1).var(dim=0, unbiased=False).mean()


def scaling_ratios(module, x: torch.Tensor, grad_y: torch.Tensor) -> tuple[float, float]:
    """(R_f, R_b) of ``module`` (any callable of tensors) measured on the batch ``x`` with output
    gradient ``grad_y``: R_f = Var[π(x)]/Var[x], R_b = Var[∂ℓ/∂x]/Var[∂ℓ/∂y] with
    ∂ℓ/∂x = π'(x)ᵀ grad_y from autograd (ghost2024, Definition B.1)."""
    x = x.detach().requires_grad_(True)
    y = module(x)
    if y.shape != grad_y.shape:
        raise ValueError(f"grad_y has shape {tuple(grad_y.shape)} but the module's output is {tuple(y.shape)}")
    (grad_x,) = torch.autograd.grad(y, x, grad_y)
    r_f = variance(y.detach()) / variance(x.detach())
    r_b = variance(grad_x) / variance(grad_y)
    return float(r_f), float(r_b)


def network_ratios(net: nn.Module, repeats: int = 4, batch: int = 128,
                   generator: torch.Generator | None = None) -> tuple[float, float]:
    """Whole-network (R_f, R_b), averaged over ``repeats`` input batches x ~ N(0, I_d) with output
    gradients ∂ℓ/∂y ~ N(0, I_d/d) (the network's weights stay fixed, as Remark B.2 asks)."""
    positive_int("repeats", repeats)
    positive_int("batch", batch)
    width = next(m for m in net.modules() if isinstance(m, nn.Linear)).in_features
    rf, rb = [], []
    for _ in range(repeats):
        x = torch.randn(batch, width, generator=generator)
        g = torch.randn(batch, width, generator=generator) / math.sqrt(width)
        f, b = scaling_ratios(net, x, g)
        rf.append(f)
        rb.append(b)
    return float(np.mean(rf)), float(np.mean(rb))


class Moments(NamedTuple):
    """Per-channel mean and (biased) variance over batch and space, float64 [C]."""
    mean: torch.Tensor
    var: torch.Tensor


def moments(out: torch.Tensor) -> Moments:
    """Per-channel moments of ``out`` [B, C, ...]: μ_c = mean over the batch and every spatial
    position of channel c, σ_c² the biased variance over the same, both computed in float64 (so an
    overflow shows as inf only where ``out`` itself overflowed)."""
    if out.dim() < 2:
        raise ValueError(f"moments needs a batch of channels [B, C, ...], got shape {tuple(out.shape)}")
    dims = [0] + list(range(2, out.dim()))
    o = out.detach().double()
    return Moments(o.mean(dim=dims), o.var(dim=dims, unbiased=False))
