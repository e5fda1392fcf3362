"""The parts every network of the book is built from: named activations, normalizations and
initializations, and the layer ``Linear -> norm -> activation``.

One layer is ``Linear -> norm -> activation`` (the order of Ioffe & Szegedy and of the papers in
this book); :class:`PreActLayer` is the pre-activation order ``norm -> activation -> Linear`` of
He et al. (2016b) used in residual branches.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..checks import one_of, positive_int, probability

__all__ = ["ACTIVATIONS", "NORMS", "INITS", "activation_fn", "Elementwise", "activation_module", "init_weights_",
           "looks_linear_", "Layer", "PreActLayer"]

# name -> elementwise torch function (used by the theory too); dropout is handled separately
_FUNCTIONS = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "identity": lambda x: x,
}
ACTIVATIONS = tuple(_FUNCTIONS) + ("dropout",)
NORMS = (None, "batch", "layer")
INITS = ("he", "lecun", "xavier", "orthogonal")


def activation_fn(name: str):
    """The elementwise function of a named activation (``torch.Tensor -> torch.Tensor``).

    LeakyReLU has slope 0.01, GELU is the exact (erf) form. ``dropout`` has no elementwise
    function: it is random, independent of its input (see :func:`activation_module`).
    """
    one_of("activation", name, tuple(_FUNCTIONS))
    return _FUNCTIONS[name]


class Elementwise(nn.Module):
    """A named elementwise activation as a module (``name`` in :data:`ACTIVATIONS`, not dropout)."""

    def __init__(self, name: str):
        super().__init__()
        self.name, self.fn = name, activation_fn(name)

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self):
        return self.name


def activation_module(name: str, p: float = 0.5) -> nn.Module:
    """A module for a named activation (see ``ACTIVATIONS``): :class:`Elementwise`, or for
    ``dropout`` ``nn.Dropout(p)``, used in place of an activation as in Paik & Choi's Figure 1(b)."""
    one_of("activation", name, ACTIVATIONS)
    if name == "dropout":
        probability("dropout probability", p)
        return nn.Dropout(p)
    return Elementwise(name)


def init_weights_(layer: nn.Module, init: str, activation_name: str = "relu", generator=None) -> nn.Module:
    """Initialize a linear or convolution layer in place; its bias is set to zero.

    fan_in = C_in·k·k and fan_out = C_out·k·k (k = 1 for a linear layer):

    - ``he``: W ~ N(0, 2/fan_in) (He et al. 2015)
    - ``lecun``: W ~ N(0, 1/fan_in) (LeCun 1998; SELU's init)
    - ``xavier``: W ~ N(0, 2/(fan_in + fan_out)) (Glorot & Bengio 2010)
    - ``orthogonal``: the [C_out, C_in·k·k] matrix random orthogonal, times gain √2 for the ReLU
      family (relu, leaky_relu), else gain 1 (Saxe et al. 2014)
    """
    one_of("init", init, INITS)
    weight = layer.weight
    fan_in = weight[0].numel()
    fan_out = weight.shape[0] * weight[0].numel() // weight.shape[1]
    with torch.no_grad():
        if init == "orthogonal":
            gain = math.sqrt(2.0) if activation_name in ("relu", "leaky_relu") else 1.0
            nn.init.orthogonal_(weight, gain=gain, generator=generator)
        else:
            var = {"he": 2.0 / fan_in, "lecun": 1.0 / fan_in, "xavier": 2.0 / (fan_in + fan_out)}[init]
            nn.init.normal_(weight, 0.0, math.sqrt(var), generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def looks_linear_(linear: nn.Linear, first: bool = False, generator=None) -> nn.Linear:
    """Looks-linear initialization (Balduzzi et al. 2017) of a ReLU layer, in place; bias zeroed.

    Units come in mirrored pairs: a layer's pre-activation is ``z = [u, -u]``, so
    ``relu(z) = [relu(u), relu(-u)]`` and the next layer's ``[[A, -A], [-A, A]]`` gives
    ``[A u, -A u]``: the network computes a linear function at initialization.
    ``first=True`` (the layer that sees the raw input x) is ``[B; -B]``; the others (their input
    is mirrored) are ``[[A, -A], [-A, A]]``; a head (``first=False`` and fan_out != fan_in) is
    ``[C, -C]``. A, B, C have orthonormal rows or columns (``nn.init.orthogonal_``), so every
    hidden layer preserves the norm of u exactly.
    """
    fan_out, fan_in = linear.weight.shape
    with torch.no_grad():
        if first:
            if fan_out % 2:
                raise ValueError(f"looks-linear needs an even number of units, got {fan_out}")
            b = nn.init.orthogonal_(torch.empty(fan_out // 2, fan_in), generator=generator)
            linear.weight.copy_(torch.cat([b, -b], 0))
        elif fan_out == fan_in:
            if fan_in % 2:
                raise ValueError(f"looks-linear needs an even number of units, got {fan_in}")
            a = nn.init.orthogonal_(torch.empty(fan_in // 2, fan_in // 2), generator=generator)
            linear.weight.copy_(torch.cat([torch.cat([a, -a], 1), torch.cat([-a, a], 1)], 0))
        else:
            if fan_in % 2:
                raise ValueError(f"looks-linear needs an even number of input units, got {fan_in}")
            c = nn.init.orthogonal_(torch.empty(fan_out, fan_in // 2), generator=generator)
            linear.weight.copy_(torch.cat([c, -c], 1))
        if linear.bias is not None:
            linear.bias.zero_()
    return linear


class Layer(nn.Module):
    """``Linear(n_in, n_out) -> norm -> activation``, the layer of every fully connected network here.

    ``activation``: a name of :data:`ACTIVATIONS` (``dropout`` with probability ``dropout``);
    ``norm``: ``None``, ``"batch"`` (BatchNorm1d) or ``"layer"`` (LayerNorm) over the ``n_out``
    features; the weights are drawn by :func:`init_weights_` with ``init`` from ``generator``;
    ``bias`` adds a (zero) bias. ``skip_activation=True`` stops before the activation (the second
    layer of a residual block adds the skip first). Parameters: n_in·n_out (+ n_out with ``bias``,
    + 2·n_out with a norm).
    """

    def __init__(self, n_in: int, n_out: int, *, activation: str, norm: str | None = None, init: str = "he",
                 bias: bool = False, dropout: float = 0.5, generator: torch.Generator | None = None,
                 skip_activation: bool = False):
        super().__init__()
        positive_int("n_in", n_in)
        positive_int("n_out", n_out)
        one_of("norm", norm, NORMS)
        self.linear = init_weights_(nn.Linear(n_in, n_out, bias=bias), init, activation, generator)
        self.norm = {None: nn.Identity(), "batch": nn.BatchNorm1d(n_out), "layer": nn.LayerNorm(n_out)}[norm]
        self.act = nn.Identity() if skip_activation else activation_module(activation, dropout)

    def forward(self, x):
        return self.act(self.norm(self.linear(x)))


class PreActLayer(Layer):
    """``norm -> activation -> Linear`` (He et al. 2016b's pre-activation order), for residual
    branches; the norm acts on the layer's input (``n_in == n_out``)."""

    def forward(self, x):
        return self.linear(self.act(self.norm(x)))
