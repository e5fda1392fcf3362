"""The explosion rate of any network at initialization, the correlation that relieves it in
training, and a callback that tracks both during training (Paik & Choi 2023).

- :func:`predicted_rate`: the theory, r(φ)·n_out/n_in with BatchNorm, E[φ'²]/E[φ²]·n_out/n_in
  with LayerNorm.
- :func:`gradient_variances`: Var(g_n) for every weight layer n, g_n = ∂ℓ/∂h_n the gradient with
  respect to the layer's output h_n, Var = mean over elements of the variance over the batch
  (:meth:`gradprobe.measure.Recording.variances`).
- :func:`fit_segmented_rate`: Var(g_n) ≈ c_s · r^(−n): one common rate r per layer (growing toward
  the input) and one intercept c_s per *segment* (:func:`segments_of`), a run of consecutive layers
  of equal width fed by each other's activations. A max-pool or a change of width multiplies the
  gradient by a factor of its own (the n_out/n_in factor, the pooling's); separate intercepts keep
  those jumps out of the rate.
- :func:`explosion_rate`: both together, on the layers of :func:`rate_layers`;
  :func:`mlp_rates` for fresh MLPs of any activation and normalization.
- :func:`correlation`: ρ_n = Var[W_n x_n] / Var_⊥[W_n x_n], the forward variance of a layer's
  output relative to its value if the input's elements were uncorrelated with each other and with
  the weights (Var_⊥ = Σ_j W_ij² Var[x_j], averaged over outputs). ρ = 1 at initialization; it
  grows when inputs align with the weights, which offsets the explosion: BatchNorm divides the
  gradient by the forward variance, so the per-layer rate becomes ≈ r(φ)/ρ.
- :class:`RateTracker`: a ``callback`` for :func:`gradprobe.train.fit` measuring both on a fixed
  probe batch at chosen steps, without touching the model's ``.grad`` or BatchNorm statistics.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import theory
from .measure import RateFit, record, weight_layers
from .models import activation_fn

__all__ = ["predicted_rate", "rate_layers", "gradient_variances", "segments_of", "fit_segmented_rate",
           "ExplosionRate", "explosion_rate", "mlp_rates", "correlation", "RateTracker", "preserved_state"]


def predicted_rate(act, norm: str = "batch", width_ratio: float = 1.0, p: float = 0.5) -> float:
    """The per-layer growth of the gradient variance of a ``linear -> norm -> φ`` network at
    initialization, z ~ N(0, 1) the normalized pre-activation and n_out/n_in = ``width_ratio`` the
    width ratio of the linear map the gradient passes back through:

    - ``norm="batch"``: r(φ)·n_out/n_in with r = E[φ'(z)²]/Var[φ(z)]. BatchNorm's batch mean removes
      the mean E[φ] that every sample shares, so it divides by the *variance* of φ.
    - ``norm="layer"``: E[φ'(z)²]/E[φ(z)²]·n_out/n_in. LayerNorm's mean is over the features of one
      sample; the shared mean E[φ], spread over features by a random W, is not removed, so it divides
      by the *second moment*: ReLU gives exactly 1, He's assumption; odd φ (tanh) gain nothing.

    ``"dropout"`` (p) gives 1 for both. ``act`` is a name of :data:`gradprobe.models.ACTIVATIONS`.
    """
    if norm not in ("batch", "layer"):
        raise ValueError(f"norm must be 'batch' or 'layer', got {norm!r}")
    if isinstance(width_ratio, bool) or not isinstance(width_ratio, (int, float)) or not width_ratio > 0:
        raise ValueError(f"width_ratio must be a positive number (n_out/n_in), got {width_ratio!r}")
    if act == "dropout" or norm == "batch":
        return theory.explosion_rate(act, p) * width_ratio
    return theory.backward_ratio(act) / _second_moment(act) * width_ratio


@functools.lru_cache(maxsize=None)
def _second_moment(act: str) -> float:
    """E[φ(z)²], z ~ N(0, 1), by quadrature (cached per named activation)."""
    phi = activation_fn(act)
    return theory.gaussian_expectation(lambda x: float(phi(torch.tensor(x, dtype=torch.float64))) ** 2)


def rate_layers(model: nn.Module) -> list[nn.Module]:
    """The layers along which the rate is measured, input to output: ``model.rate_layers()`` if the
    model defines it (the ViT: the layers that write into its residual stream), else every Linear and
    Conv layer except 1×1 convolutions (ResNet shortcuts) and the last layer (the classifier)."""
    if hasattr(model, "rate_layers"):
        return list(model.rate_layers())
    layers = [m for m in weight_layers(model)
              if not (isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1))]
    if len(layers) < 3:
        raise ValueError(f"{type(model).__name__} has {len(layers)} weight layers: too few to fit a rate "
                         "(at least 2 besides the classifier)")
    return layers[:-1]


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
    """Var(g_n) for each layer n of ``layers`` (default :func:`rate_layers`), from one forward and
    backward pass of ``x`` in the model's current mode (train mode at initialization: BatchNorm uses
    batch statistics). The loss is the cross-entropy with ``target``, or ⟨f(x), grad_output⟩.
    Returns the variances (float64), each layer's output shape and input shape (without the batch
    dimension). The model's ``.grad`` fields are not touched (``torch.autograd.grad``)."""
    layers = rate_layers(model) if layers is None else list(layers)
    in_shapes: list = [None] * len(layers)

    def pre_hook(i):
        def fn(module, args):
            in_shapes[i] = tuple(args[0].shape[1:])
        return fn

    handles = [m.register_forward_pre_hook(pre_hook(i)) for i, m in enumerate(layers)]
    try:
        with record(model, layers) as rec:
            loss = _loss(model(x), target, grad_output)
            torch.autograd.grad(loss, [m.weight for m in layers], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    out_shapes = [tuple(a.shape[1:]) for a in rec.activations]
    return rec.variances("gradients").double(), out_shapes, in_shapes


def segments_of(out_shapes, in_shapes=None) -> list[int]:
    """Segment ids for layers 0, 1, ... (input to output).

    Without ``in_shapes``: a new segment starts where the output shape changes.

    With ``in_shapes`` (the default of :func:`explosion_rate`): layers n and n+1 share a segment
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


def fit_segmented_rate(values, segments=None) -> RateFit:
    """Fit log values[n] = a_{s(n)} − n·log r by least squares: one rate r per layer (> 1 when the
    values grow toward the input, index 0) shared by all segments, one intercept per segment.

    ``segments`` gives each value's segment id (default: one segment, which is
    :func:`gradprobe.measure.fit_rate` with ``reverse``). ``r2`` is the fraction of the
    within-segment variation of log values that the common slope explains; ``intercept`` is the
    first segment's c. Segments of a single layer carry no information about the slope.
    """
    v = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=float).ravel()
    seg = np.zeros(v.size, dtype=int) if segments is None else np.asarray(segments).ravel()
    if seg.size != v.size:
        raise ValueError(f"got {v.size} values but {seg.size} segment ids")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("fit_segmented_rate needs finite positive values (it fits their logarithm); got "
                         f"min {np.nanmin(v) if v.size else float('nan'):.3g} and {int(np.sum(~np.isfinite(v)))} non-finite")
    labels = np.unique(seg)
    sizes = np.array([np.sum(seg == s) for s in labels])
    if not np.any(sizes >= 2):
        raise ValueError("fit_segmented_rate needs a segment of at least 2 layers to fit a slope")
    n, y = np.arange(v.size, dtype=float), np.log(v)
    # within-segment demeaning: the slope of the fixed-effects regression
    n_c, y_c = n.copy(), y.copy()
    for s in labels:
        m = seg == s
        n_c[m] -= n[m].mean()
        y_c[m] -= y[m].mean()
    slope = float(np.sum(n_c * y_c) / np.sum(n_c ** 2))
    resid = y_c - slope * n_c
    total = float(np.sum(y_c ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / total if total > 0 else 1.0
    first = seg == labels[0]
    icept = float(np.mean(y[first] - slope * n[first]))
    return RateFit(rate=math.exp(-slope), intercept=math.exp(icept), r2=r2)


@dataclass
class ExplosionRate:
    """The rate of one network: ``rate`` is the fitted growth of Var(g) per layer toward the input
    (``norm_rate`` = √rate, the growth of the gradient's norm), from ``variances`` (input to output)
    with ``segments``; ``r2`` of the within-segment fit; ``overall`` = (Var(g_1)/Var(g_N))^(1/(N−1)),
    the paper's Var(g_n)/Var(g_N) per layer without the segment correction."""

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


def explosion_rate(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, *,
                   grad_output: torch.Tensor | None = None, layers: list[nn.Module] | None = None) -> ExplosionRate:
    """Measure Var(g_n) on the layers of :func:`rate_layers` (or ``layers``) with one batch and fit
    the rate per layer (:func:`fit_segmented_rate`) on the segments of :func:`segments_of`: with
    the input shapes, or, for a model that names its own ``rate_layers()`` (the ViT's residual
    stream, whose layers are not fed by each other), the output shapes only."""
    variances, out_shapes, in_shapes = gradient_variances(model, x, target, grad_output=grad_output, layers=layers)
    segments = segments_of(out_shapes, None if hasattr(model, "rate_layers") else in_shapes)
    fit = fit_segmented_rate(variances, segments)
    v = variances.numpy()
    overall = float((v[0] / v[-1]) ** (1.0 / (len(v) - 1)))
    return ExplosionRate(fit.rate, fit.r2, v, segments, overall)


def mlp_rates(act: str, norm: str = "batch", depth: int = 30, width: int = 256, batch: int = 256,
              repeats: int = 2, generators=None) -> np.ndarray:
    """The measured rate of ``repeats`` fresh ``linear -> norm -> act`` MLPs
    (:func:`gradprobe.models.mlp`, He init, a linear head to 10 classes) on Gaussian inputs with
    random labels; weights from ``generators.weights``, data from ``generators.data``
    (:func:`gradprobe.seed`; default: fresh unseeded generators)."""
    from .models import mlp

    w_gen = generators.weights if generators is not None else None
    d_gen = generators.data if generators is not None else None
    out = []
    for _ in range(repeats):
        net = mlp(depth, width, act, norm=norm, out_dim=10, generator=w_gen)
        x = torch.randn(batch, width, generator=d_gen)
        y = torch.randint(0, 10, (batch,), generator=d_gen)
        out.append(explosion_rate(net, x, y).rate)
    return np.array(out)


# ----------------------------------------------------------------------------- correlation

def _uncorrelated_variance(layer: nn.Module, input_variance: torch.Tensor) -> torch.Tensor:
    """Σ_j W_ij² Var[x_j] per output element: the layer applied with squared weights (no bias) to
    the per-element input variance (for a conv, padding and stride as the layer's)."""
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
    (default :func:`rate_layers`), from one forward pass of ``x`` in the model's current mode.

    Var is over the batch, per element. The numerator is the output's variance without the bias
    (a bias does not change a variance over the batch). ρ ≈ 1 when the layer's input elements are
    uncorrelated with each other given the weights (at initialization, weights drawn independently
    of the data); ρ > 1 when inputs align with the weights' directions of large gain."""
    layers = rate_layers(model) if layers is None else list(layers)
    inputs: list = [None] * len(layers)
    outputs: list = [None] * len(layers)

    def hook(i):
        def fn(module, args, out):
            inputs[i], outputs[i] = args[0].detach(), out.detach()
        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(layers)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    rho = []
    for layer, xin, out in zip(layers, inputs, outputs):
        if xin is None:
            raise ValueError(f"layer {layer} was not called in the forward pass")
        if xin.ndim != out.ndim:
            raise ValueError(f"correlation needs the layer's input and output to have the same rank, got "
                             f"{tuple(xin.shape)} -> {tuple(out.shape)}")
        var_out = out.double().var(dim=0, unbiased=False).mean()
        predicted = _uncorrelated_variance(layer, xin.double().var(dim=0, unbiased=False))
        rho.append(var_out / predicted.mean())
    return torch.stack(rho)


# ----------------------------------------------------------------------------- tracking in training

class preserved_state:
    """Context manager: restores every buffer of ``model`` (BatchNorm running statistics and
    counters) and the train/eval mode on exit, so a probe pass leaves no trace."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        self.training = [(m, m.training) for m in self.model.modules()]
        return self.model

    def __exit__(self, *exc):
        with torch.no_grad():
            for b, saved in self.buffers:
                b.copy_(saved)
        for m, mode in self.training:
            m.training = mode
        return False


@dataclass
class RateTracker:
    """A ``callback(step, model, xb, yb, loss)`` for :func:`gradprobe.train.fit` that, at the steps
    in ``steps`` (default every step), measures on the fixed probe batch (``probe_x``,
    ``probe_y``), in train mode, at the weights before that step's update:

    - ``rates``: the explosion rate per layer (:func:`explosion_rate`),
    - ``correlations``: the per-layer ρ (:func:`correlation`), one array per measured step,
    - ``variances``: the per-layer Var(g_n).

    The model's ``.grad`` (this step's gradient, about to be used) and its BatchNorm running
    statistics are left as they were. ``layers_fn`` picks the layers (default :func:`rate_layers`).
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
                result = explosion_rate(model, self.probe_x, self.probe_y, layers=layers)
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
