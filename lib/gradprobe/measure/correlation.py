"""The correlation that relieves the explosion in training (Paik & Choi 2023).

ρ_n = Var[W_n x_n] / Var_⊥[W_n x_n]: the forward variance of a layer's output relative to its
value if the input's elements were uncorrelated with each other and with the weights
(Var_⊥ = Σ_j W_ij² Var[x_j], averaged over outputs). ρ = 1 at initialization; it grows when inputs
align with the weights, which offsets the explosion: BatchNorm divides the gradient by the forward
variance, so the per-layer rate becomes ≈ r(φ)/ρ.

The backward pass has its own correlation (:func:`backward_correlation`): κ = Var[Wᵀg] /
Σ_i W_ij² Var[g_i], the variance of the gradient a linear map sends back relative to its value if
the output gradient's elements were uncorrelated. :func:`rate_factors` splits the measured ratio
Var(g_n)/Var(g_{n+1}) of consecutive ``Linear -> norm -> activation`` layers exactly into six
measured factors (the forward and backward correlations among them), so that what relieves the
explosion in training can be read off rather than assumed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dataclasses import dataclass

import numpy as np

from ..networks.layers import Layer
from .hooks import hooks, preserved_state, rate_layers, record
from .stats import variance

__all__ = ["uncorrelated_variance", "correlation", "backward_uncorrelated_variance", "backward_correlation",
           "RateFactors", "rate_factors"]


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


def backward_uncorrelated_variance(layer: nn.Module, grad_variance: torch.Tensor) -> torch.Tensor:
    """Σ_i W_ij² Var[g_i] per input element j: what the variance of the gradient Wᵀg that ``layer``
    (Linear or Conv2d) sends back to its input would be if the elements of its output gradient g
    were uncorrelated, from the per-element output-gradient variance ``grad_variance``; float64.
    For a convolution, the transposed convolution with squared weights (same stride, padding)."""
    w2 = layer.weight.detach().double() ** 2
    v = grad_variance.double().unsqueeze(0)
    if isinstance(layer, nn.Linear):
        return F.linear(v, w2.t())
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"backward correlation supports zero-padded convolutions, got {layer.padding_mode!r}")
        size = (1, layer.in_channels) + tuple(
            (s - 1) * st - 2 * p + d * (k - 1) + 1 for s, st, p, d, k in
            zip(v.shape[2:], layer.stride, layer.padding, layer.dilation, layer.kernel_size))
        return torch.nn.grad.conv2d_input(size, w2, v, layer.stride, layer.padding, layer.dilation, layer.groups)
    raise ValueError(f"backward correlation supports Linear and Conv2d layers, got {type(layer).__name__}")


def backward_correlation(layer: nn.Module, grad_output: torch.Tensor, grad_input: torch.Tensor) -> float:
    """κ = Var[Wᵀg] / Σ_i W_ij² Var[g_i] (both averaged over input elements) of ``layer``, from
    one batch of its output gradients g (``grad_output``) and of the gradients it sent to its input
    (``grad_input`` = Wᵀg); Var over the batch, per element. κ ≈ 1 while g is uncorrelated with the
    weights' columns (at initialization); κ > 1 when output gradients align with them."""
    if grad_output.shape[0] != grad_input.shape[0] or grad_output.shape[0] < 2:
        raise ValueError(f"need batches of equal size >= 2, got {grad_output.shape[0]} and {grad_input.shape[0]}")
    measured = grad_input.double().var(dim=0, unbiased=False).mean()
    predicted = backward_uncorrelated_variance(layer, grad_output.double().var(dim=0, unbiased=False)).mean()
    return float(measured / predicted)


@dataclass
class RateFactors:
    """The ratio Var(g_n)/Var(g_{n+1}) of consecutive layers n, n+1 of a network of
    ``Linear -> norm -> φ`` layers (:func:`rate_factors`), one entry per pair n = 1 … L−1 (arrays of
    L − 1, input to output), and the six measured factors whose product is that ratio exactly:

        ratio = bn · act · kappa · gain / (rho · forward_gain · input_var)

    - ``rho``: the forward correlation of layer n, Var[h_n] / Σ_j W_ij² Var[x_j] (:func:`correlation`);
    - ``forward_gain``: A_n = Σ_j W_ij² Var[x_j] / Var[x_n], averaged over outputs (2 for He's
      initialization);
    - ``input_var``: Var[x_n], the variance of layer n's input (Var[φ] for a hidden layer at init);
    - ``bn``: Var(g_n)·Var[h_n]/Var[∂ℓ/∂u_n], u_n the normalization's output: what the normalization's
      backward pass multiplies by beyond 1/Var[h_n] (≈ 1 at init). Of it, ``bn_gamma`` is its
      affine scale, γ_i² averaged with the weights w_i = Var[∂ℓ/∂u_i]/Var[h_i] (1 without affine
      parameters), and ``bn_spread`` = mean_i w_i · Var[h_n] / Var[∂ℓ/∂u_n], the gain from units of
      unequal variance (BatchNorm divides each unit by its own σ_i; 1 when all are equal; for
      LayerNorm, per-feature variances over the batch are used the same way); the rest is the
      normalization's projections (removing the mean and the normalized direction);
    - ``act``: Var[∂ℓ/∂u_n]/Var[∂ℓ/∂x_{n+1}], the activation's backward factor (≈ E[φ'(z)²] at init);
    - ``kappa``: the backward correlation of layer n+1 (:func:`backward_correlation`);
    - ``gain``: G_{n+1} = Σ_i W_ij² Var[g_i] / Var(g_{n+1}), averaged over inputs (2·n_out/n_in for
      He's initialization).

    ``grad_var``: Var(g_n) of every layer (L entries). Every Var is the paper's: the variance over
    the batch of each element, averaged over elements.
    """

    ratio: np.ndarray
    rho: np.ndarray
    forward_gain: np.ndarray
    input_var: np.ndarray
    bn: np.ndarray
    act: np.ndarray
    kappa: np.ndarray
    gain: np.ndarray
    bn_gamma: np.ndarray
    bn_spread: np.ndarray
    grad_var: np.ndarray

    def product(self) -> np.ndarray:
        """bn · act · kappa · gain / (rho · forward_gain · input_var): equal to ``ratio`` up to rounding."""
        return self.bn * self.act * self.kappa * self.gain / (self.rho * self.forward_gain * self.input_var)


def rate_factors(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, *,
                 grad_output: torch.Tensor | None = None) -> RateFactors:
    """Split the per-layer gradient ratios of ``model`` into measured factors (:class:`RateFactors`),
    from one forward and backward pass of ``x`` in training mode (BatchNorm: batch statistics).

    ``model``'s layers are the :class:`gradprobe.networks.layers.Layer` modules it contains, in
    order (``Linear -> norm -> activation``, e.g. :func:`gradprobe.networks.mlp.mlp`), each fed by
    the previous one. The loss is the cross-entropy with ``target`` or ⟨model(x), grad_output⟩.
    The model is left as it was (buffers, modes, ``.grad``)."""
    layers = [m for m in model.modules() if isinstance(m, Layer)]
    if len(layers) < 2:
        raise ValueError(f"rate_factors needs at least 2 Layer modules (Linear -> norm -> activation), got {len(layers)}")
    if (target is None) == (grad_output is None):
        raise ValueError("give exactly one of target (class labels) or grad_output (∂ℓ/∂output)")
    n = len(layers)
    inp, out, nrm = [None] * n, [None] * n, [None] * n
    d_in, d_out, d_nrm = [None] * n, [None] * n, [None] * n

    def store(where, i):
        return lambda g: where.__setitem__(i, g.detach())

    def linear_seen(i, inputs, output):
        inp[i], out[i] = inputs[0].detach(), output.detach()
        if inputs[0].requires_grad:
            inputs[0].register_hook(store(d_in, i))
        output.register_hook(store(d_out, i))

    def norm_seen(i, inputs, output):
        nrm[i] = output.detach()
        output.register_hook(store(d_nrm, i))

    with preserved_state(model), hooks([l.linear for l in layers], linear_seen), \
            hooks([l.norm for l in layers], norm_seen):
        model.train()
        y = model(x)
        if target is not None:
            loss = F.cross_entropy(y, target)
        else:
            if grad_output.shape != y.shape:
                raise ValueError(f"grad_output has shape {tuple(grad_output.shape)} but the output is {tuple(y.shape)}")
            loss = (y * grad_output).sum()
        torch.autograd.grad(loss, [l.linear.weight for l in layers])
    var = lambda t: float(variance(t.double()))
    grad_var = np.array([var(g) for g in d_out])
    rows = []
    for k in range(n - 1):
        here, nxt = layers[k].linear, layers[k + 1].linear
        u = float(uncorrelated_variance(here, inp[k].double().var(dim=0, unbiased=False)).mean())
        v_perp = float(backward_uncorrelated_variance(nxt, d_out[k + 1].double().var(dim=0, unbiased=False)).mean())
        var_h, var_x, var_du, var_dx = var(out[k]), var(inp[k]), var(d_nrm[k]), var(d_in[k + 1])
        w = (d_nrm[k].double().flatten(1).var(dim=0, unbiased=False)
             / out[k].double().flatten(1).var(dim=0, unbiased=False))
        gamma = getattr(layers[k].norm, "weight", None)
        gamma2 = float((w * gamma.detach().double().flatten() ** 2).sum() / w.sum()) if gamma is not None else 1.0
        rows.append((grad_var[k] / grad_var[k + 1], var_h / u, u / var_x, var_x, grad_var[k] * var_h / var_du,
                     var_du / var_dx, var_dx / v_perp, v_perp / grad_var[k + 1], gamma2,
                     float(w.mean()) * var_h / var_du))
    cols = np.array(rows).T
    return RateFactors(*cols, grad_var=grad_var)
