"""What theory predicts for a pair of weight layers joined by a normalization and an activation.

A layer's forward gain A and backward gain B (:func:`_gains`) carry its weights' scale and its
width change; :func:`_pair_prediction` is the predicted ratio Var[g_i]/Var[g_j] of the gradient
at layer i's output to that at layer j's, j fed by i through ``norm`` and ``act``: after
BatchNorm r(φ)·B_j/A_i (Paik & Choi 2023; the ghost paper's Eq. 1), after LayerNorm
E[φ'²]/E[φ²]·B_j/A_i, without normalization B_j·E[φ'(h_i)²] (He et al. 2015).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..theory.gaussian import explosion_rate, predicted_rate
from .kinds import _act_callable
from .watch import _Layer


# E[f(z)] for z ~ N(0, σ²) by the midpoint rule on ±12σ: one vectorized evaluation of φ and of φ'
# (by autograd) per σ; no node at 0, so a step at 0 (ReLU's φ') integrates exactly; the Gaussian's
# smoothness makes the rule accurate to ~10⁻⁶ elsewhere
_STEP = 0.001
_NODES = torch.arange(-12.0 + _STEP / 2, 12.0, _STEP, dtype=torch.float64)
_WEIGHTS = torch.exp(-_NODES ** 2 / 2) / math.sqrt(2 * math.pi) * _STEP


def _on_grid(act, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """φ(σx) and φ'(σx) on the nodes x, for the theory's activation ``act`` (a name or a callable)."""
    from ..networks.layers import activation_fn

    fn = _act_callable(act)
    fn = activation_fn(fn) if isinstance(fn, str) else fn
    x = (_NODES * std).requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        if not (isinstance(y, torch.Tensor) and y.requires_grad):
            return torch.as_tensor(y, dtype=torch.float64).detach().expand_as(x), torch.zeros_like(x)
        (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy


def _mean_derivative_sq(act, std: float) -> float:
    """E[φ'(z)²] for z ~ N(0, std²)."""
    if act is None or act == "identity":
        return 1.0
    if not std > 0:
        return math.nan
    return float((_WEIGHTS * _on_grid(act, std)[1] ** 2).sum())


def _moments(act, std: float) -> tuple[float, float]:
    """(E[φ(z)], E[φ(z)²]) for z ~ N(0, std²)."""
    y = _on_grid(act, std)[0]
    return float((_WEIGHTS * y).sum()), float((_WEIGHTS * y ** 2).sum())


def _gains(layer: _Layer) -> tuple[float, float]:
    """(A, B): the forward gain A = mean over outputs of Σ W² over the inputs each sees, and the
    backward gain B = mean over inputs of Σ W² over the outputs each feeds, so that
    Var[h] = A·Var[x] forward and Var[∂ℓ/∂x] = B·Var[∂ℓ/∂h] backward for independent entries. For a
    convolution only the (output position, kernel tap) pairs that land inside the image count: zero
    padding carries no signal forward and takes no gradient back, so a 3×3 convolution on a 1×1
    map has the gains of a 1×1 one (ImageNet networks fed CIFAR-size images end on such maps);
    other padding modes copy image pixels and count. Away from the border B = A·C_out/(C_in·stride²);
    with W ~ N(0, 2/fan_in) (He): A = 2 and B = 2·n_out/n_in, Paik & Choi's width factor."""
    w = layer.weight.detach().double()
    w2 = float(w.pow(2).mean())
    if layer.kind == "linear (Conv1D)":
        n_in, n_out = w.shape
        return n_in * w2, n_out * w2
    if not layer.kind.startswith("conv"):
        n_out, n_in = w.shape[0], w[0].numel()
        return n_in * w2, n_out * w2
    m = layer.module
    if len(layer.in_shape) != len(m.kernel_size) + 1:
        return math.nan, math.nan
    spatial = layer.in_shape[1:]
    ones = torch.ones((1, 1) + tuple(spatial), dtype=torch.float64)
    kernel = torch.ones((1, 1) + tuple(m.kernel_size), dtype=torch.float64)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(m.kernel_size)]
    padding = 0.0 if m.padding_mode == "zeros" else 1.0      # zeros: no signal; reflect, ...: image pixels
    ones = F.pad(ones, m._reversed_padding_repeated_twice, value=padding)
    valid = conv(ones, kernel, stride=m.stride, dilation=m.dilation)
    pairs = float(valid.sum())                    # (output position, kernel tap) pairs inside the image
    per_output = pairs / valid.numel()
    per_input = pairs / math.prod(spatial)
    c_in_group, c_out_group = m.in_channels // m.groups, m.out_channels // m.groups
    return c_in_group * per_output * w2, c_out_group * per_input * w2


def _pair_prediction(norm, act, gain_ratio: float, backward_gain: float, forward_variance: float,
                     norm_last: bool = False) -> float:
    """The predicted Var[g_i]/Var[g_j] for layer j fed by layer i through ``norm`` and ``act``
    (see the module docstring): for φ(norm(h_i)) r·B_j/A_i after BatchNorm, E[φ'²]/E[φ²]·B_j/A_i
    after LayerNorm; for norm(φ(h_i)) (``norm_last``) B_j·E[φ'(h)²]/Var[φ(h)] with h ~ N(0, A_i), layer
    i's input taken at unit second moment, as a normalization before it leaves it (E[φ²] in place of
    Var[φ] for RMSNorm, which keeps the mean; r·B_j/A_i for ReLU whatever the input's scale);
    B_j·E[φ'(h_i)²] without normalization."""
    act_theory = _act_callable(act) if act is not None else "identity"
    try:
        if norm_last and norm is not None and act is not None:
            std = math.sqrt(backward_gain / gain_ratio)          # √A_i
            mean, second = _moments(act, std)
            spread = second if norm == "rms" else second - mean ** 2
            return backward_gain * _mean_derivative_sq(act, std) / spread
        if norm == "batch":
            return explosion_rate(act_theory) * gain_ratio
        if norm == "layer":
            return predicted_rate(act_theory, "layer") * gain_ratio
        if norm is None:
            return backward_gain * _mean_derivative_sq(act, math.sqrt(forward_variance))
    except (ValueError, ZeroDivisionError):
        return math.nan
    return math.nan
