"""Per-layer gradients of a network and the rate at which they grow toward the input.

- :func:`fit_rate`: the one rate fitter of the book. values[k] ≈ c_s · rate^(x_k) by least squares
  on log values, with x_k the layer index or a given depth, one rate shared by all *segments* and
  one intercept c_s per segment; ``reverse=True`` counts the growth from the output toward the
  input (> 1 when the gradient explodes).
- :func:`gradient_norms`: ‖∂ℓ/∂W_k‖_F for every weight layer, for a given output gradient.
- :func:`gradient_variances`: Var(g_n) for every weight layer n, g_n = ∂ℓ/∂h_n the gradient with
  respect to the layer's output h_n, Var = mean over elements of the variance over the batch
  (:meth:`gradprobe.measure.hooks.Recording.variances`).
- :func:`segments_of`: the runs of consecutive layers whose gradient ratio is the per-layer rate
  (Paik & Choi 2023). A max-pool or a change of width multiplies the gradient by a factor of its
  own (the n_out/n_in factor, the pooling's); separate intercepts keep those jumps out of the rate.
- :func:`network_rate`: both together, on the layers of :func:`gradprobe.measure.hooks.rate_layers`.
- :class:`RateTracker`: a ``callback`` for :func:`gradprobe.train.loop.fit` measuring the rate and
  the correlation (:mod:`gradprobe.measure.correlation`) on a fixed probe batch at chosen steps,
  without touching the model's ``.grad`` or BatchNorm statistics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .correlation import correlation
from .hooks import preserved_state, rate_layers, record, weight_layers

__all__ = ["RateFit", "fit_rate", "gradient_norms", "gradient_variances", "segments_of", "NetworkRate",
           "network_rate", "RateTracker"]


@dataclass(frozen=True)
class RateFit:
    """values[k] ≈ intercept · rate^(x_k), or rate^(−x_k) for a fit made with ``reverse=True``, for
    the first segment (x_k: the layer index k or the given depth); ``r2`` is the fraction of the
    within-segment variation of log values that the line explains (1 = exactly geometric)."""

    rate: float
    intercept: float
    r2: float
    reverse: bool = False

    def predict(self, x) -> np.ndarray:
        """The fitted values at positions (indices or depths) ``x`` of the first segment."""
        x = np.asarray(x, dtype=float)
        return self.intercept * self.rate ** (-x if self.reverse else x)


def fit_rate(values, *, depths=None, segments=None, reverse: bool = False) -> RateFit:
    """Fit log values[k] = log c_{s(k)} + x_k · log rate by least squares: one rate for all values,
    one intercept per segment.

    ``depths`` gives each value's position x_k (default k = 0, 1, ...; e.g. the linear layer of a
    GSC measurement). ``segments`` gives each value's segment id (default: one segment, an ordinary
    least-squares line); the slope is fitted within segments, so a jump between segments (a width
    change, a pooling) does not enter the rate, and a segment of one value carries no information
    about it. ``reverse=True`` reports the growth per unit of x from the last value back toward
    the first: for values listed input to output, a gradient that grows toward the input gets a
    rate above 1 (the explosion rate per layer).
    """
    v = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"fit_rate needs at least 2 values, got {v.size}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("fit_rate needs finite positive values (it fits their logarithm); "
                         f"got min {np.nanmin(v):.3g} and {int(np.sum(~np.isfinite(v)))} non-finite")
    x = np.arange(v.size, dtype=float) if depths is None else np.asarray(depths, dtype=float).ravel()
    if x.size != v.size:
        raise ValueError(f"fit_rate needs one value per depth, got {v.size} values and {x.size} depths")
    seg = np.zeros(v.size, dtype=int) if segments is None else np.asarray(segments).ravel()
    if seg.size != v.size:
        raise ValueError(f"got {v.size} values but {seg.size} segment ids")
    labels = np.unique(seg)
    if not any(np.sum(seg == s) >= 2 for s in labels):
        raise ValueError("fit_rate needs a segment of at least 2 layers to fit a slope")
    y = np.log(v)
    # within-segment demeaning: the slope of the fixed-effects regression (one segment: the OLS line)
    x_c, y_c = x.copy(), y.copy()
    for s in labels:
        m = seg == s
        x_c[m] -= x[m].mean()
        y_c[m] -= y[m].mean()
    spread = float(np.sum(x_c ** 2))
    if spread == 0:
        raise ValueError("fit_rate needs depths that differ within a segment")
    slope = float(np.sum(x_c * y_c) / spread)
    resid = y_c - slope * x_c
    total = float(np.sum(y_c ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / total if total > 0 else 1.0
    first = seg == labels[0]
    icept = float(np.mean(y[first] - slope * x[first]))
    return RateFit(rate=math.exp(-slope if reverse else slope), intercept=math.exp(icept), r2=r2, reverse=reverse)


def gradient_norms(model: nn.Module, x: torch.Tensor, grad_output: torch.Tensor,
                   layers: list[nn.Module] | None = None) -> torch.Tensor:
    """‖∂ℓ/∂W_k‖_F for every weight layer k (default
    :func:`~gradprobe.measure.hooks.weight_layers`, input to output), where ℓ = ⟨f(x), grad_output⟩,
    i.e. the backward pass is seeded with ``grad_output`` = ∂ℓ/∂f(x). The model's existing
    ``.grad`` fields are left untouched (gradients are taken with ``torch.autograd.grad``)."""
    layers = weight_layers(model) if layers is None else list(layers)
    out = model(x)
    if out.shape != grad_output.shape:
        raise ValueError(f"grad_output has shape {tuple(grad_output.shape)} but the model's output is {tuple(out.shape)}")
    grads = torch.autograd.grad(out, [m.weight for m in layers], grad_output)
    return torch.stack([g.norm() for g in grads]).detach()


def _loss(out: torch.Tensor, target, grad_output) -> torch.Tensor:
    if (target is None) == (grad_output is None):
        raise ValueError("give exactly one of target (class labels: cross-entropy loss) or grad_output "
                         "(∂ℓ/∂output: the loss ⟨output, grad_output⟩)")
    if target is not None:
        return F.cross_entropy(out, target)
    if grad_output.shape != out.shape:
        raise ValueError(f"grad_output has shape {tuple(grad_output.shape)} but the output is {tuple(out.shape)}")
    return (out * grad_output).sum()


def gradient_variances(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, *,
                       grad_output: torch.Tensor | None = None, layers: list[nn.Module] | None = None
                       ) -> tuple[torch.Tensor, list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Var(g_n) for each layer n of ``layers`` (default
    :func:`~gradprobe.measure.hooks.rate_layers`), from one forward and backward pass of ``x`` in
    the model's current mode (train mode at initialization: BatchNorm uses batch statistics). The
    loss is the cross-entropy with ``target``, or ⟨f(x), grad_output⟩. Returns the variances
    (float64), each layer's output shape and input shape (without the batch dimension). The
    model's ``.grad`` fields are not touched (``torch.autograd.grad``)."""
    layers = rate_layers(model) if layers is None else list(layers)
    with record(model, layers, inputs=True) as rec:
        loss = _loss(model(x), target, grad_output)
        torch.autograd.grad(loss, [m.weight for m in layers], allow_unused=True)
    out_shapes = [tuple(a.shape[1:]) for a in rec.activations]
    in_shapes = [tuple(a.shape[1:]) for a in rec.inputs]
    return rec.variances("gradients").double(), out_shapes, in_shapes


def segments_of(out_shapes, in_shapes=None) -> list[int]:
    """Segment ids for layers 0, 1, ... (input to output).

    Without ``in_shapes``: a new segment starts where the output shape changes.

    With ``in_shapes`` (the default of :func:`network_rate`): layers n and n+1 share a segment
    only when the ratio Var(g_n)/Var(g_{n+1}) is the per-layer rate: equal output shapes (n_out/n_in
    = 1 for layer n+1), layer n+1 fed directly by layer n's activation (its input shape is layer n's
    output shape: no pooling between them) and layer n itself fed by an activation of layer n−1
    (not by the data, not through a pooling). The reason for the last condition: BatchNorm after
    layer n divides by Var[W_n x_n] ∝ Var[x_n], which is Var[φ] only when x_n = φ(z); after a
    max-pool it is larger, and the first layer sees the data. So Var(g_n)/Var(g_{n+1}) =
    E[φ'²]·(n_out/n_in)_{n+1}/Var[x_n] equals r(φ) on the pairs that share a segment.
    """
    out_shapes = [tuple(s) for s in out_shapes]
    if in_shapes is None:
        linked = [out_shapes[n] == out_shapes[n + 1] for n in range(len(out_shapes) - 1)]
    else:
        in_shapes = [tuple(s) for s in in_shapes]
        if len(in_shapes) != len(out_shapes):
            raise ValueError(f"got {len(out_shapes)} output shapes but {len(in_shapes)} input shapes")
        fed = [False] + [in_shapes[n] == out_shapes[n - 1] for n in range(1, len(out_shapes))]
        linked = [out_shapes[n] == out_shapes[n + 1] and fed[n] and fed[n + 1] for n in range(len(out_shapes) - 1)]
    ids, current = [0] * len(out_shapes), 0
    for n in range(1, len(out_shapes)):
        if not linked[n - 1]:
            current += 1
        ids[n] = current
    return ids


@dataclass
class NetworkRate:
    """The measured rate of one network: ``rate`` is the fitted growth of Var(g) per layer toward
    the input (``norm_rate`` = √rate, the growth of the gradient's norm), from ``variances`` (input
    to output) with ``segments``; ``r2`` of the within-segment fit; ``overall`` =
    (Var(g_1)/Var(g_N))^(1/(N−1)), the paper's Var(g_n)/Var(g_N) per layer without the segment
    correction."""

    rate: float
    r2: float
    variances: np.ndarray
    segments: list[int]
    overall: float

    @property
    def norm_rate(self) -> float:
        return math.sqrt(self.rate)

    @property
    def layers(self) -> int:
        return len(self.variances)


def network_rate(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, *,
                 grad_output: torch.Tensor | None = None, layers: list[nn.Module] | None = None) -> NetworkRate:
    """The explosion rate of ``model`` as measured: Var(g_n) on the layers of
    :func:`~gradprobe.measure.hooks.rate_layers` (or ``layers``) with one batch (see
    :func:`gradient_variances`), and the rate per layer toward the input fitted
    (:func:`fit_rate`) on the segments of :func:`segments_of`: with the input shapes, or, for a
    model that names its own ``rate_layers()`` (the ViT's residual stream, whose layers are not fed
    by each other), the output shapes only. (The theory's rate of an activation is
    :func:`gradprobe.theory.gaussian.explosion_rate`.)"""
    variances, out_shapes, in_shapes = gradient_variances(model, x, target, grad_output=grad_output, layers=layers)
    segments = segments_of(out_shapes, None if hasattr(model, "rate_layers") else in_shapes)
    fit = fit_rate(variances, segments=segments, reverse=True)
    v = variances.numpy()
    overall = float((v[0] / v[-1]) ** (1.0 / (len(v) - 1)))
    return NetworkRate(fit.rate, fit.r2, v, segments, overall)


@dataclass
class RateTracker:
    """A ``callback(step, model, xb, yb, loss)`` for :func:`gradprobe.train.loop.fit` that, at the
    steps in ``steps`` (default every step), measures on the fixed probe batch (``probe_x``,
    ``probe_y``), in train mode, at the weights before that step's update:

    - ``rates``: the explosion rate per layer (:func:`network_rate`),
    - ``correlations``: the per-layer ρ (:func:`gradprobe.measure.correlation.correlation`), one
      array per measured step,
    - ``variances``: the per-layer Var(g_n).

    The model's ``.grad`` (this step's gradient, about to be used) and its BatchNorm running
    statistics are left as they were. ``layers_fn`` picks the layers (default
    :func:`~gradprobe.measure.hooks.rate_layers`).
    """

    probe_x: torch.Tensor
    probe_y: torch.Tensor
    steps: object = None
    layers_fn: object = None
    measured_steps: list = field(default_factory=list)
    rates: list = field(default_factory=list)
    correlations: list = field(default_factory=list)
    variances: list = field(default_factory=list)

    def __post_init__(self):
        if len(self.probe_x) != len(self.probe_y):
            raise ValueError(f"probe_x has {len(self.probe_x)} examples but probe_y has {len(self.probe_y)}")
        if self.steps is not None:
            self.steps = set(int(s) for s in self.steps)

    def __call__(self, step: int, model: nn.Module, xb=None, yb=None, loss=None) -> None:
        if self.steps is not None and step not in self.steps:
            return
        layers = (self.layers_fn or rate_layers)(model)
        with preserved_state(model):
            model.train()
            try:
                result = network_rate(model, self.probe_x, self.probe_y, layers=layers)
                rate, variances = result.rate, result.variances
            except ValueError:  # collapsed network: a zero or non-finite gradient variance
                rate, variances = math.nan, np.full(len(layers), math.nan)
            rho = correlation(model, self.probe_x, layers).numpy()
        self.measured_steps.append(step)
        self.rates.append(rate)
        self.correlations.append(rho)
        self.variances.append(variances)

    def mean_correlation(self) -> np.ndarray:
        """The mean over layers (the first excluded: its input is the data) of ρ, per measured step."""
        return np.array([float(np.mean(r[1:])) if len(r) > 1 else float(r[0]) for r in self.correlations])
