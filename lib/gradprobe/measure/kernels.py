"""Measurements at the numbered layers of a CIFAR ResNet (Bjorck et al. 2018): why an unnormalized
ResNet diverges at learning rates a batch-normalized one takes in its stride.

Layers are addressed by the paper's numbers (:mod:`gradprobe.networks.resnet`: layer k is the k-th
weight layer from the input; its *output* is what the conv or the final Linear emits, before any
BN or activation, the O of the paper's Eq. (4)).

- :func:`channel_moments`            per-channel mean and variance of layer outputs (Figs. 4, 5)
- :func:`kernel_gradient`            ∂L/∂K of one layer (Fig. 2)
- :func:`gradient_sums`              Table 1's a = Σ|d| and b = |Σ d| (Eq. 4)
- :func:`output_gradients`           ∂L_b/∂O_{b,j} of the logits (Fig. 6)
- :func:`channel_gradient_map`       M_{i,o} = Σ_{x',y'} |∂L/∂K_{o,i,x',y'}| (Fig. 7), :func:`top_singular_share`
- :func:`one_pass`                   all of the above from one forward and backward pass

NaN and infinity are data here: they are returned, never raised.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from ..checks import labelled_images
from ..networks.resnet import layer, layer_map
from .hooks import hooks, record
from .stats import Moments, moments

__all__ = ["channel_moments", "kernel_gradient", "GradientSums", "gradient_sums", "output_gradients",
           "channel_gradient_map", "top_singular_share", "OnePass", "one_pass"]


@torch.no_grad()
def channel_moments(model, x: torch.Tensor, layers) -> dict[int, Moments]:
    """Per-channel moments μ_c = mean_{b,x,y} O_{b,c,x,y} and σ_c² of the outputs of the paper's
    ``layers`` (numbers, see :mod:`gradprobe.networks.resnet`) on the batch ``x``, in the model's
    current mode (train: BN uses batch statistics). Computed in float64
    (:func:`~gradprobe.measure.stats.moments`), so overflow shows as inf only where float32
    outputs themselves overflowed."""
    modules = layer_map(model, layers)
    numbers, found = list(modules), {}
    with hooks(modules.values(), lambda i, inputs, output: found.__setitem__(numbers[i], moments(output))):
        model(x)
    return found


def kernel_gradient(model, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """∂L/∂K of layer k (a copy) for the mean cross-entropy L of the batch (x, y)."""
    labelled_images(x, y)
    module = layer(model, k)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    grad = module.weight.grad.detach().clone()
    model.zero_grad(set_to_none=True)
    return grad


class GradientSums(NamedTuple):
    """Table 1 for one kernel: ``a`` = mean over parameters of Σ_{b,x,y} |d|, ``b`` = mean over
    parameters of |Σ_{b,x,y} d| = |∂L/∂K|; a ≥ b always. ``summands``: the number of terms
    B·H·W of each sum (H × W the layer's output map; 0 where not recorded)."""
    a: float
    b: float
    summands: int = 0

    @property
    def ratio(self) -> float:
        return self.a / self.b if self.b > 0 else math.inf

    @property
    def per_summand(self) -> tuple[float, float]:
        """(a, b) / (B·H·W): the mean |summand| and the mean summand's size, comparable between
        layers of different map sizes (NaN when ``summands`` is unknown)."""
        n = self.summands
        return (self.a / n, self.b / n) if n > 0 else (math.nan, math.nan)


def gradient_sums(model, x: torch.Tensor, y: torch.Tensor, layers) -> dict[int, GradientSums]:
    """Table 1 of the paper at conv ``layers``. With d^{bxy}_{o,i,x',y'} = (∂L/∂O_{b,o,x,y}) ·
    I_{b,i,x+x',y+y'} (Eq. 4), the kernel gradient is Σ_{b,x,y} d. ``b`` is the mean over the
    kernel's entries of |Σ d| (= |weight.grad|); ``a`` the mean of Σ |d|, computed as the weight
    gradient of the same convolution applied to |I| and |∂L/∂O| (``torch.nn.grad.conv2d_weight``).
    For a sum of summands of matching sign a/b ≈ 1; for signs that cancel a/b ≫ 1."""
    labelled_images(x, y)
    modules = layer_map(model, layers)
    for k, m in modules.items():
        if not isinstance(m, torch.nn.Conv2d):
            raise ValueError(f"layer {k} is not a convolution (Table 1 needs conv kernels), it is {type(m).__name__}")
    with record(model, list(modules.values()), inputs=True) as rec:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    result = {}
    for (k, m), inputs, grads in zip(modules.items(), rec.inputs, rec.gradients):
        absolute = conv2d_weight(inputs.abs(), m.weight.shape, grads.abs(), stride=m.stride,
                                 padding=m.padding, dilation=m.dilation, groups=m.groups)
        result[k] = GradientSums(a=float(absolute.mean()), b=float(m.weight.grad.abs().mean()),
                                 summands=grads.shape[0] * grads[0, 0].numel())
    model.zero_grad(set_to_none=True)
    return result


def output_gradients(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂L_b/∂O_{b,j} [B, classes] for each image's own cross-entropy L_b: softmax(O_b)_j − 1[j = y_b]
    (Figure 6). Positive: the step along −∇ weakens class j for image b."""
    labelled_images(x, y)
    with torch.no_grad():
        logits = model(x).double()
    return torch.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1]).double()


def channel_gradient_map(model, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """M_{i,o} = Σ_{x',y'} |∂L/∂K_{o,i,x',y'}| [in channels, out channels] at conv layer k (Figure 7)."""
    grad = kernel_gradient(model, x, y, k)
    if grad.dim() != 4:
        raise ValueError(f"layer {k} is not a convolution; Figure 7's map needs a conv kernel")
    return grad.abs().sum(dim=(2, 3)).T


def top_singular_share(matrix: torch.Tensor) -> float:
    """s_1² / Σ s_i²: the share of the squared Frobenius norm in the top singular direction
    (1 for a rank-one matrix; 2/π ≈ 0.64 for a large matrix of iid |Gaussian| entries)."""
    s = torch.linalg.svdvals(torch.as_tensor(matrix, dtype=torch.float64))
    total = float((s ** 2).sum())
    return float(s[0] ** 2) / total if total > 0 else math.nan


class OnePass(NamedTuple):
    """What :func:`one_pass` measured on one batch: the mean cross-entropy ``loss``, the ``logits``
    [B, classes], ``output_grads`` (:func:`output_gradients`), per-channel ``moments`` of layer
    outputs (:func:`channel_moments`), ``kernel_grads`` (:func:`kernel_gradient`) and
    ``sums`` (:func:`gradient_sums`), keyed by layer number."""
    loss: float
    logits: torch.Tensor
    output_grads: torch.Tensor
    moments: dict
    kernel_grads: dict
    sums: dict


def one_pass(model, x: torch.Tensor, y: torch.Tensor, *, moment_layers=(), kernel_layers=(),
             sum_layers=(), keep_grads: bool = False) -> OnePass:
    """Figures 2 and 5–7 and Table 1 of Bjorck et al. from a single forward and backward pass of
    the mean cross-entropy on (x, y), in the model's current mode: the same numbers as
    :func:`channel_moments` at ``moment_layers``, :func:`kernel_gradient` at ``kernel_layers``,
    :func:`gradient_sums` at ``sum_layers`` (convolutions) and :func:`output_gradients`, at a
    fraction of their cost for a deep network. Parameter gradients are cleared afterwards, unless
    ``keep_grads`` (e.g. for :func:`gradprobe.measure.steps.step_loss_ratios` with
    ``use_existing_grad=True``)."""
    labelled_images(x, y)
    numbers = list(dict.fromkeys([*moment_layers, *kernel_layers, *sum_layers]))
    modules = layer_map(model, numbers)
    for k in sum_layers:
        if not isinstance(modules[k], torch.nn.Conv2d):
            raise ValueError(f"layer {k} is not a convolution (Table 1 needs conv kernels), "
                             f"it is {type(modules[k]).__name__}")
    with record(model, list(modules.values()), inputs=True) as rec:
        model.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
    at = {k: i for i, k in enumerate(numbers)}
    found_moments = {k: moments(rec.activations[at[k]]) for k in moment_layers}
    grads = {k: modules[k].weight.grad.detach().clone() for k in kernel_layers}
    sums = {}
    for k in sum_layers:
        m, inputs, g = modules[k], rec.inputs[at[k]], rec.gradients[at[k]]
        absolute = conv2d_weight(inputs.abs(), m.weight.shape, g.abs(), stride=m.stride, padding=m.padding,
                                 dilation=m.dilation, groups=m.groups)
        sums[k] = GradientSums(float(absolute.mean()), float(m.weight.grad.abs().mean()), g.shape[0] * g[0, 0].numel())
    if not keep_grads:
        model.zero_grad(set_to_none=True)
    logits = logits.detach()
    out_grads = torch.softmax(logits.double(), dim=1) - F.one_hot(y, logits.shape[1]).double()
    return OnePass(float(loss.detach()), logits, out_grads, found_moments, grads, sums)
