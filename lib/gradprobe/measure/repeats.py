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

:func:`batched_variances` runs the same batched networks for Paik & Choi's per-layer variances:
Var[h_k] of every linear output and Var[∂ℓ/∂h_k] of its gradient, with BatchNorm, LayerNorm or no
normalization and any activation (DropOut included).
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
           "repeated_gradient_norms", "flops_per_repeat", "BN_EPS", "Signals", "batched_signals",
           "repeated_signals", "SIGNAL_LOSSES", "batched_variances"]

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
    _check(activation, norm, init)
    return torch.cat([batched_gradient_norms(draws, activation, norm, residual).double().cpu()
                      for draws in _chunked_draws(repeats, depth, width, batch, init, chunk, generator, device)])


def _chunked_draws(repeats, depth, width, batch, init, chunk, generator, device):
    """:func:`draw` ``repeats`` experiments ``chunk`` at a time (a progress bar over the chunks)."""
    positive_int("repeats", repeats)
    positive_int("chunk", chunk)
    dev = pick_device(device) if isinstance(device, str) else torch.device(device)
    for start in progress(range(0, repeats, chunk), desc="repeats"):
        yield draw(min(chunk, repeats - start), depth, width, batch, init, generator, dev)


def _layer_norm(h: torch.Tensor) -> torch.Tensor:
    """LayerNorm (no affine) of transposed activations h [R, d, B]: statistics over the d features
    of each sample, as ``torch.nn.LayerNorm(d)`` at initialization (eps 1e-5)."""
    mean = h.mean(dim=1, keepdim=True)
    var = h.var(dim=1, unbiased=False, keepdim=True)
    return (h - mean) / torch.sqrt(var + BN_EPS)


def batched_variances(draws: Draws, activation: str = "relu", norm: str | None = "batch", dropout: float = 0.5,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward variances of R plain networks at once: ``(Var[h_k], Var[g_k])``, each
    [R, L], for layer k: x ↦ act(norm(W_k x)) with h_k = W_k x_{k−1} the linear output and
    g_k = ∂ℓ/∂h_k, ℓ = ⟨x^(L), grad_output⟩. Var is Paik & Choi's: the variance over the batch of
    each feature, averaged over the features (:func:`gradprobe.measure.stats.variance`), per repeat.

    ``norm``: ``"batch"`` (BatchNorm in training mode), ``"layer"`` (LayerNorm) or None, without
    affine parameters (their values at initialization). ``activation``: a name of
    :data:`gradprobe.networks.layers.ACTIVATIONS`; ``"dropout"`` multiplies by a Bernoulli(1 − p)
    mask / (1 − p), p = ``dropout``, drawn from ``generator`` (on the CPU, then moved) in place of an
    activation. The reference computation is :func:`gradprobe.networks.mlp.mlp` with
    :func:`gradprobe.measure.rates.gradient_variances`; both give the same numbers up to rounding.
    """
    one_of("activation", activation, ACTIVATIONS)
    one_of("norm", norm, (None, "batch", "layer"))
    if activation == "dropout" and not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    act = None if activation == "dropout" else activation_fn(activation)
    normalize = {"batch": _batch_norm, "layer": _layer_norm, None: (lambda t: t)}[norm]
    layers = [w.detach().requires_grad_(True) for w in draws.weights]
    h = draws.x.transpose(1, 2).contiguous()
    pres = []
    for w in layers:
        pre = torch.bmm(w, h)
        pres.append(pre)
        z = normalize(pre)
        if act is None:
            mask = torch.bernoulli(torch.full(z.shape, 1.0 - dropout), generator=generator).to(z.device)
            h = z * mask / (1.0 - dropout)
        else:
            h = act(z)
    grads = torch.autograd.grad(h, pres, draws.grad_output.transpose(1, 2))
    forward = torch.stack([p.detach().var(dim=2, unbiased=False).mean(dim=1) for p in pres], dim=1)
    backward = torch.stack([g.var(dim=2, unbiased=False).mean(dim=1) for g in grads], dim=1)
    return forward, backward


# ------------------------------------------------------------------ every signal of one pass
SIGNAL_LOSSES = ("linear", "square")


@dataclass
class Signals:
    """The signals of R repeats of one network, per repeat r (rows) and layer k = 1..L (columns,
    input to output); h_k = W_k x^(k−1) is layer k's linear output, y_k its activation's input,
    g_k = ∂ℓ/∂φ(y_k) the gradient at the activation's output, and Var the per-feature variance
    over the batch averaged over features (:func:`gradprobe.measure.stats.variance`):

    - ``weight_norms`` [R, L]: ‖∂ℓ/∂W_k‖_F;
    - ``forward`` [R, L]: Var[h_k]; ``backward`` [R, L]: Var[∂ℓ/∂h_k];
    - ``stream`` [R, L + 1]: ‖∂ℓ/∂x^(k)‖_F over the batch for k = 0..L (x^(0) the input, x^(L) the
      output): the backward signal itself, defined whether or not a layer has a weight gradient;
    - ``independence`` [R, L]: E[g_k² φ'(y_k)²] / (E[g_k²]·E[φ'(y_k)²]) over batch and features, the
      factorization the ghost paper's R_b(g) = E[g'(x)²] rests on (1 when g_k and y_k are independent,
      its Assumption B.6);
    - ``correlation`` [R, L]: the batch correlation of y_k with ∂ℓ/∂y_k, per feature, averaged over
      features (0 when a neuron's forward and backward signals are uncorrelated, its Remark B.9);
    - ``mean_square`` [R, L]: (batch mean of ∂ℓ/∂y_k)² / (batch mean of (∂ℓ/∂y_k)²) per feature,
      averaged over features: of order 1/B for a zero-mean derivative (its Corollary B.7), 1 for a
      derivative that is the same for every sample.

    All float64 on the CPU.
    """

    weight_norms: torch.Tensor
    forward: torch.Tensor
    backward: torch.Tensor
    stream: torch.Tensor
    independence: torch.Tensor
    correlation: torch.Tensor
    mean_square: torch.Tensor

    def __post_init__(self):
        rows = {name: getattr(self, name).shape[0] for name in self.__dataclass_fields__}
        if len(set(rows.values())) != 1:
            raise ValueError(f"every signal needs one row per repeat, got {rows}")

    @classmethod
    def cat(cls, parts: list["Signals"]) -> "Signals":
        """The repeats of several :class:`Signals` (same network), one after another."""
        if not parts:
            raise ValueError("Signals.cat needs at least one part")
        return cls(*(torch.cat([getattr(p, name) for p in parts]) for name in cls.__dataclass_fields__))


def batched_signals(draws: Draws, activation: str = "relu", norm: str | None = "batch", residual: bool = False,
                    branch_scale: float = 1.0, loss: str = "linear") -> Signals:
    """Every :class:`Signals` of R networks at once (as :func:`batched_gradient_norms` computes
    ``weight_norms``): layer k is x ↦ act(norm(W_k x)); with ``residual=True`` He's basic blocks,
    x^(k+2) = act(``branch_scale``·norm(W_{k+1} act(norm(W_k x^(k)))) + x^(k)), where
    ``branch_scale`` is the scale γ of the branch's last BatchNorm at initialization (1: He et al.,
    1/√(blocks): Balduzzi et al.'s 1/√L initialization, 0: Goyal et al.'s zero-γ, with which the
    branch's weights receive no gradient at all).

    ``loss``: ``"linear"``, ℓ = ⟨x^(L), grad_output⟩ (the ghost paper's Figure 1: an output
    gradient drawn independently of the input), or ``"square"``, ℓ = ½‖x^(L)‖² (the output gradient
    is the output itself: forward and backward signals fully correlated at the top).
    """
    _check(activation, norm, "he")
    one_of("loss", loss, SIGNAL_LOSSES)
    if isinstance(branch_scale, bool) or not isinstance(branch_scale, (int, float)) \
            or not math.isfinite(branch_scale) or branch_scale < 0:
        raise ValueError(f"branch_scale must be a finite number >= 0, got {branch_scale!r}")
    depth = draws.weights.shape[0]
    if residual and depth % 2:
        raise ValueError(f"a residual network pairs layers into blocks: depth must be even, got {depth}")
    if not residual and branch_scale != 1.0:
        raise ValueError("branch_scale scales residual branches: it needs residual=True")
    act = activation_fn(activation)
    normalize = _batch_norm if norm == "batch" else (lambda h: h)
    weights = [w.detach().requires_grad_(True) for w in draws.weights]
    h = draws.x.transpose(1, 2).contiguous().requires_grad_(True)
    stream, pres, inputs, skip = [h], [], [], None
    for k, w in enumerate(weights):
        pre = torch.bmm(w, h)
        z = normalize(pre)
        if residual and k % 2 == 1:
            y = (z if branch_scale == 1.0 else branch_scale * z) + skip
        else:
            skip = h
            y = z
        h = act(y)
        pres.append(pre)
        inputs.append(y)
        stream.append(h)
    top = draws.grad_output.transpose(1, 2) if loss == "linear" else h.detach()
    grads = torch.autograd.grad(h, weights + pres + stream, top, allow_unused=True)
    g_w, g_pre, g_stream = grads[:depth], grads[depth:2 * depth], grads[2 * depth:]
    g_w = [torch.zeros_like(w) if g is None else g for g, w in zip(g_w, weights)]

    def var(t):                                      # [R, d, B] -> [R]
        return t.detach().double().var(dim=2, unbiased=False).mean(dim=1)

    independence, correlation, mean_square = [], [], []
    for y, g in zip(inputs, g_stream[1:]):
        y = y.detach().double().requires_grad_(True)
        (slope,) = torch.autograd.grad(act(y).sum(), y)
        y, g = y.detach(), g.detach().double()
        dy = slope * g                               # ∂ℓ/∂y
        independence.append((g.square() * slope.square()).mean(dim=(1, 2))
                             / (g.square().mean(dim=(1, 2)) * slope.square().mean(dim=(1, 2))))
        yc, dc = y - y.mean(dim=2, keepdim=True), dy - dy.mean(dim=2, keepdim=True)
        denom = (yc.square().mean(dim=2) * dc.square().mean(dim=2)).sqrt()
        corr = torch.where(denom > 0, (yc * dc).mean(dim=2) / denom.clamp_min(1e-300), torch.zeros_like(denom))
        correlation.append(corr.mean(dim=1))
        second = dy.square().mean(dim=2)
        frac = torch.where(second > 0, dy.mean(dim=2).square() / second.clamp_min(1e-300), torch.zeros_like(second))
        mean_square.append(frac.mean(dim=1))
    stack = lambda xs: torch.stack(xs, dim=1).cpu()
    return Signals(
        weight_norms=stack([g.flatten(1).double().norm(dim=1) for g in g_w]),
        forward=stack([var(p) for p in pres]),
        backward=stack([var(g) for g in g_pre]),
        stream=stack([g.detach().flatten(1).double().norm(dim=1) for g in g_stream]),
        independence=stack(independence), correlation=stack(correlation), mean_square=stack(mean_square))


def repeated_signals(repeats: int, depth: int = 20, width: int = 256, batch: int = 128, activation: str = "relu",
                     norm: str | None = "batch", residual: bool = False, branch_scale: float = 1.0,
                     loss: str = "linear", init: str = "he", chunk: int = 32,
                     generator: torch.Generator | None = None, device="auto") -> Signals:
    """:class:`Signals` of ``repeats`` fresh networks: :func:`draw` then :func:`batched_signals`,
    ``chunk`` repeats at a time (memory ≈ chunk · depth · (2d² + 10B·d) floats; draws are made
    repeat by repeat, so the numbers do not depend on ``chunk``)."""
    _check(activation, norm, init)
    return Signals.cat([batched_signals(draws, activation, norm, residual, branch_scale, loss)
                        for draws in _chunked_draws(repeats, depth, width, batch, init, chunk, generator, device)])

