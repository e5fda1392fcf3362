"""Many independent repeats of one gradient measurement, batched into large products.

The ghost paper's Figure 1 (left) averages per-layer weight-gradient norms over 4096 repeats of
one small experiment: a fresh fully connected network (d = 256, L = 20 layers of
``Linear -> BatchNorm -> activation``, optionally He basic blocks), a fresh Gaussian input batch
x ~ N(0, I_d) of B = 128 rows, a fresh output gradient ∂ℓ/∂x^(L) ~ N(0, I_d/d), one backward pass,
and ‖∂ℓ/∂W_k‖_F for every layer k.

One repeat is ~6·B·d²·L ≈ 1 GFLOP in products of 128×256 by 256×256, far too small to use a CPU
well. :func:`batched_gradient_norms` runs R repeats at once: the weights of a layer are an
[R, d, d] tensor and every product is a ``torch.bmm`` over the repeats; BatchNorm normalizes
over the batch dimension separately for every repeat and feature (``F.batch_norm`` with the
R·d features as channels). :func:`loop_gradient_norms` is the reference: the same repeats one by one with
:func:`gradprobe.networks.mlp.mlp` and :func:`gradprobe.measure.rates.gradient_norms`. Given the same
draws both give the same numbers (up to float rounding).

Random draws are made repeat by repeat (:func:`draw`: weights W_1..W_L, then x, then the output
gradient), so results do not depend on how the repeats are grouped into chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import one_of, positive_int
from ..networks.layers import ACTIVATIONS, activation_fn
from ..networks.mlp import mlp
from ..runtime import device as pick_device, progress
from .rates import gradient_norms

__all__ = ["Draws", "draw", "weight_std", "batched_gradient_norms", "loop_gradient_norms",
           "repeated_gradient_norms", "flops_per_repeat", "BN_EPS"]

BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default, so that both ways normalize identically
_NORMS = (None, "batch")
_INITS = ("he", "lecun", "xavier")


def _check(activation: str, norm, init: str) -> None:
    one_of("activation", activation, tuple(a for a in ACTIVATIONS if a != "dropout"))
    one_of("norm", norm, _NORMS)
    one_of("init", init, _INITS)


def weight_std(init: str, width: int) -> float:
    """Standard deviation of a width×width weight entry: he √(2/d), lecun √(1/d), xavier √(2/(2d))."""
    _check("relu", None, init)
    return math.sqrt({"he": 2.0, "lecun": 1.0, "xavier": 1.0}[init] / width)


@dataclass
class Draws:
    """R repeats of one experiment: ``weights`` [L, R, d, d] (layer k's W as nn.Linear stores it,
    [out, in]), ``x`` [R, B, d] input batches and ``grad_output`` [R, B, d] = ∂ℓ/∂x^(L)."""

    weights: torch.Tensor
    x: torch.Tensor
    grad_output: torch.Tensor

    @property
    def repeats(self) -> int:
        return self.x.shape[0]


def draw(repeats: int, depth: int = 20, width: int = 256, batch: int = 128, init: str = "he",
         generator: torch.Generator | None = None, device=None) -> Draws:
    """Draw ``repeats`` independent experiments, repeat by repeat: W_k ~ N(0, std²) (``init``, see
    :func:`weight_std`) for k = 1..depth, x ~ N(0, I_d) (``batch`` rows), ∂ℓ/∂x^(L) ~ N(0, I_d/d).
    Draws are made on the CPU from ``generator`` (reproducible on every device), then moved."""
    for name, value in (("repeats", repeats), ("depth", depth), ("width", width), ("batch", batch)):
        positive_int(name, value)
    std = weight_std(init, width)
    weights = torch.empty(depth, repeats, width, width)
    x = torch.empty(repeats, batch, width)
    grad_output = torch.empty(repeats, batch, width)
    for r in range(repeats):
        weights[:, r] = torch.randn(depth, width, width, generator=generator) * std
        x[r] = torch.randn(batch, width, generator=generator)
        grad_output[r] = torch.randn(batch, width, generator=generator) / math.sqrt(width)
    dev = torch.device("cpu") if device is None else torch.device(device)
    return Draws(weights.to(dev), x.to(dev), grad_output.to(dev))


def _batch_norm(h: torch.Tensor) -> torch.Tensor:
    """BatchNorm in training mode (no affine) of transposed activations h [R, d, B]: statistics
    over the batch B, separately per repeat and feature. The R·d features are the channels of one
    ``F.batch_norm`` call on a [1, R·d, B] view (the reduction runs along contiguous memory)."""
    r, d, b = h.shape
    return F.batch_norm(h.reshape(1, r * d, b), None, None, training=True, eps=BN_EPS).reshape(r, d, b)


def batched_gradient_norms(draws: Draws, activation: str = "relu", norm: str | None = "batch",
                           residual: bool = False) -> torch.Tensor:
    """‖∂ℓ/∂W_k‖_F for every repeat r and layer k, shape [R, L], all repeats in one pass.

    Layer k: x ↦ act(norm(W_k x)) (a plain network, ghost 2024 Section 2), or with
    ``residual=True`` He basic blocks x^(k+2) = act(norm(W_{k+1} act(norm(W_k x^(k)))) + x^(k)).
    The backward pass is seeded with ``draws.grad_output`` (ℓ = ⟨x^(L), grad_output⟩).
    Activations are kept transposed, [R, d, B], so that layer k is ``torch.bmm(W_k, h)`` and
    BatchNorm reduces along contiguous memory.
    """
    _check(activation, norm, "he")
    depth = draws.weights.shape[0]
    if residual and depth % 2:
        raise ValueError(f"a residual network pairs layers into blocks: depth must be even, got {depth}")
    act = activation_fn(activation)
    normalize = _batch_norm if norm == "batch" else (lambda h: h)
    layers = [w.detach().requires_grad_(True) for w in draws.weights]  # one leaf per layer, no copies
    h = draws.x.transpose(1, 2).contiguous()
    skip = None
    for k, w in enumerate(layers):
        pre = normalize(torch.bmm(w, h))
        if residual and k % 2 == 1:
            h = act(pre + skip)
        else:
            skip = h
            h = act(pre)
    grads = torch.autograd.grad(h, layers, draws.grad_output.transpose(1, 2))
    return torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1)


def loop_gradient_norms(draws: Draws, activation: str = "relu", norm: str | None = "batch",
                        residual: bool = False) -> torch.Tensor:
    """The reference for :func:`batched_gradient_norms`: every repeat separately, a
    :func:`gradprobe.networks.mlp.mlp` with the drawn weights copied in and
    :func:`gradprobe.measure.rates.gradient_norms`. Shape [R, L]."""
    _check(activation, norm, "he")
    depth, _, width, _ = draws.weights.shape
    net = mlp(depth, width, activation, norm=norm, residual=residual).to(draws.x.device)
    linears = net.linears()
    rows = []
    for r in range(draws.repeats):
        with torch.no_grad():
            for k, linear in enumerate(linears):
                linear.weight.copy_(draws.weights[k, r])
        rows.append(gradient_norms(net, draws.x[r], draws.grad_output[r], layers=linears))
    return torch.stack(rows)


def flops_per_repeat(depth: int = 20, width: int = 256, batch: int = 128) -> int:
    """Matrix-product FLOPs of one repeat: forward x Wᵀ (2·B·d² per layer), backward input
    gradient (2·B·d², all layers but the first) and weight gradient (2·B·d²)."""
    return 2 * batch * width * width * (3 * depth - 1)


def repeated_gradient_norms(repeats: int, depth: int = 20, width: int = 256, batch: int = 128,
                            activation: str = "relu", norm: str | None = "batch", residual: bool = False,
                            init: str = "he", chunk: int = 32, generator: torch.Generator | None = None,
                            device="auto") -> torch.Tensor:
    """Per-layer weight-gradient norms of ``repeats`` fresh networks, shape [repeats, depth]
    (float64 on the CPU): :func:`draw` then :func:`batched_gradient_norms`, ``chunk`` repeats at a
    time (memory ≈ chunk · depth · (2d² + 6B·d) floats). The paper plots the mean over repeats."""
    positive_int("repeats", repeats)
    positive_int("chunk", chunk)
    _check(activation, norm, init)
    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
    out = []
    for start in progress(range(0, repeats, chunk), desc="repeats"):
        draws = draw(min(chunk, repeats - start), depth, width, batch, init, generator, dev)
        out.append(batched_gradient_norms(draws, activation, norm, residual).double().cpu())
    return torch.cat(out)
