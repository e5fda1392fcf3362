"""Measurements on a network: per-layer activations and gradients, and their geometric rate.

``record`` attaches hooks for the duration of a ``with`` block; ``gradient_norms`` does one
forward and backward pass with a given output gradient; ``fit_rate`` fits values[k] ≈ c · rate^k.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["variance", "scaling_ratios", "Recording", "record", "weight_layers", "gradient_norms", "RateFit", "fit_rate"]

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The linear and convolution modules of ``model`` in registration order (input to output for
    the sequential models of this book)."""
    layers = [m for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layer to measure")
    return layers


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


@dataclass
class Recording:
    """What :func:`record` saw: for each hooked module (in the order given), its output in the last
    forward pass and the gradient of the loss with respect to that output in the last backward."""

    modules: list[nn.Module]
    activations: list[torch.Tensor | None] = field(default_factory=list)
    gradients: list[torch.Tensor | None] = field(default_factory=list)

    def variances(self, which: str = "gradients") -> torch.Tensor:
        """Var[·] per module: the mean over features of the per-feature variance over the batch
        (dimension 0), the paper's Var[x]. ``which`` is ``"activations"`` or ``"gradients"``."""
        if which not in ("activations", "gradients"):
            raise ValueError(f"which must be 'activations' or 'gradients', got {which!r}")
        values = getattr(self, which)
        if any(v is None for v in values):
            raise ValueError(f"no {which} recorded for some modules: run a forward"
                             f"{' and backward' if which == 'gradients' else ''} pass inside the with-block")
        return torch.stack([variance(v) for v in values])


@contextlib.contextmanager
def record(model: nn.Module, modules: list[nn.Module] | None = None):
    """Record outputs and output-gradients of ``modules`` (default: :func:`weight_layers`).

    >>> with record(net) as rec:
    ...     net(x).backward(g)
    >>> rec.variances("gradients")   # Var[∂ℓ/∂h_k] per layer

    Tensors are detached; the hooks are removed when the block ends, also on error.
    """
    modules = weight_layers(model) if modules is None else list(modules)
    rec = Recording(modules, [None] * len(modules), [None] * len(modules))
    handles = []

    def hook(index):
        def forward_hook(module, inputs, output):
            rec.activations[index] = output.detach()
            if output.requires_grad:
                output.register_hook(lambda grad: rec.gradients.__setitem__(index, grad.detach()))
        return forward_hook

    try:
        handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
        yield rec
    finally:
        for h in handles:
            h.remove()


def gradient_norms(model: nn.Module, x: torch.Tensor, grad_output: torch.Tensor,
                   layers: list[nn.Module] | None = None) -> torch.Tensor:
    """‖∂ℓ/∂W_k‖_F for every weight layer k (input to output), where ℓ = ⟨f(x), grad_output⟩,
    i.e. the backward pass is seeded with ``grad_output`` = ∂ℓ/∂f(x). The model's existing
    ``.grad`` fields are left untouched (gradients are taken with ``torch.autograd.grad``)."""
    layers = weight_layers(model) if layers is None else list(layers)
    out = model(x)
    if out.shape != grad_output.shape:
        raise ValueError(f"grad_output has shape {tuple(grad_output.shape)} but the model's output is {tuple(out.shape)}")
    grads = torch.autograd.grad(out, [m.weight for m in layers], grad_output)
    return torch.stack([g.norm() for g in grads]).detach()


@dataclass(frozen=True)
class RateFit:
    """values[k] ≈ intercept · rate^k, fitted by least squares on log values; ``r2`` is the
    coefficient of determination of that line (1 = exactly geometric)."""

    rate: float
    intercept: float
    r2: float

    def predict(self, k) -> np.ndarray:
        return self.intercept * self.rate ** np.asarray(k, dtype=float)


def fit_rate(values, reverse: bool = False) -> RateFit:
    """Fit values[k] ≈ c · rate^k (k = 0, 1, ...) by least squares on log(values).

    ``reverse=True`` fits from the last value backward, which turns a gradient that grows toward
    the input (values listed input to output) into a rate above 1: the explosion rate per layer.
    """
    v = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"fit_rate needs at least 2 values, got {v.size}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("fit_rate needs finite positive values (it fits their logarithm); "
                         f"got min {np.nanmin(v):.3g} and {int(np.sum(~np.isfinite(v)))} non-finite")
    if reverse:
        v = v[::-1]
    k, y = np.arange(v.size, dtype=float), np.log(v)
    slope, icept = np.polyfit(k, y, 1)
    residual = y - (slope * k + icept)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - float(np.sum(residual ** 2) / total) if total > 0 else 1.0
    return RateFit(rate=math.exp(slope), intercept=math.exp(icept), r2=r2)
