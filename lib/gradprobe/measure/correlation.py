"""The correlation that relieves the explosion in training (Paik & Choi 2023).

ρ_n = Var[W_n x_n] / Var_⊥[W_n x_n]: the forward variance of a layer's output relative to its
value if the input's elements were uncorrelated with each other and with the weights
(Var_⊥ = Σ_j W_ij² Var[x_j], averaged over outputs). ρ = 1 at initialization; it grows when inputs
align with the weights, which offsets the explosion: BatchNorm divides the gradient by the forward
variance, so the per-layer rate becomes ≈ r(φ)/ρ.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import rate_layers, record

__all__ = ["uncorrelated_variance", "correlation"]


def uncorrelated_variance(layer: nn.Module, input_variance: torch.Tensor) -> torch.Tensor:
    """Σ_j W_ij² Var[x_j] per output element: the ``layer`` (Linear, Conv1d or zero-padded Conv2d)
    applied with squared weights and no bias to the per-element input variance (for a conv,
    padding and stride as the layer's), in float64."""
    w2 = layer.weight.detach().double() ** 2
    v = input_variance.double().unsqueeze(0)
    if isinstance(layer, nn.Linear):
        return F.linear(v, w2)
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"correlation supports zero-padded convolutions, got padding_mode={layer.padding_mode!r}")
        return F.conv2d(v, w2, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, nn.Conv1d):
        return F.conv1d(v, w2, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    raise ValueError(f"correlation supports Linear, Conv1d and Conv2d layers, got {type(layer).__name__}")


@torch.no_grad()
def correlation(model: nn.Module, x: torch.Tensor, layers: list[nn.Module] | None = None) -> torch.Tensor:
    """ρ_n = Var[W_n x_n] / Σ_j W_ij² Var[x_j] (both averaged over output elements) for each layer
    (default :func:`~gradprobe.measure.hooks.rate_layers`), from one forward pass of ``x`` in the
    model's current mode.

    Var is over the batch, per element. The numerator is the output's variance without the bias
    (a bias does not change a variance over the batch). ρ ≈ 1 when the layer's input elements are
    uncorrelated with each other given the weights (at initialization, weights drawn independently
    of the data); ρ > 1 when inputs align with the weights' directions of large gain."""
    layers = rate_layers(model) if layers is None else list(layers)
    with record(model, layers, inputs=True) as rec:
        model(x)
    rho = []
    for layer, xin, out in zip(layers, rec.inputs, rec.activations):
        if xin is None:
            raise ValueError(f"layer {layer} was not called in the forward pass")
        if xin.ndim != out.ndim:
            raise ValueError(f"correlation needs the layer's input and output to have the same rank, got "
                             f"{tuple(xin.shape)} -> {tuple(out.shape)}")
        var_out = out.double().var(dim=0, unbiased=False).mean()
        predicted = uncorrelated_variance(layer, xin.double().var(dim=0, unbiased=False))
        rho.append(var_out / predicted.mean())
    return torch.stack(rho)
