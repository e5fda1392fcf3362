"""BatchNorm's running statistics as a measurement: the scale σ each BatchNorm layer has seen
(the ghost paper's Figure 1, right), and recomputing them for an untrained network."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import positive_int

__all__ = ["batchnorm_layers", "bn_running_std", "calibrate_running_stats"]


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers (1d, 2d, 3d) of ``model`` in registration order (input to output for
    the networks of :mod:`gradprobe.networks`)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_running_std(model: nn.Module) -> torch.Tensor:
    """σ = √((1/d) Σ_i running_var_i) for every BatchNorm layer of ``model`` (input to output):
    the square root of the mean running variance, ghost 2024 Appendix A, Figure 1 (right)."""
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer with a running variance")
    if any(m.running_var is None for m in layers):
        raise ValueError("some BatchNorm layer does not track running statistics (track_running_stats=False)")
    return torch.stack([m.running_var.detach().float().mean().sqrt().cpu() for m in layers])


@torch.no_grad()
def calibrate_running_stats(model: nn.Module, x: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """Reset every BatchNorm's running statistics and recompute them as the plain average over the
    mini-batches of ``x`` (forward passes in training mode, no gradient, weights unchanged): the
    running variance an untrained network would show. The model's mode and momenta are restored."""
    positive_int("batch_size", batch_size)
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer to calibrate")
    was_training, momenta = model.training, [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.train(was_training)
    return model
