"""Fully connected networks with a choice of activation, normalization, residual blocks and init.

One layer is ``Linear -> norm -> activation`` (the order of Ioffe & Szegedy and of the papers in
this book). ``residual=True`` groups layers in pairs into He et al.'s basic block,
``x_{k+2} = act(norm(W_{k+1} act(norm(W_k x_k))) + x_k)``, the "ResNet" of the ghost paper.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "NORMS", "INITS", "activation", "activation_fn", "mlp", "MLP", "init_weights_",
           "looks_linear_", "PreActLayer", "PreActBlock"]

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


def check_choice(kind: str, value, allowed) -> None:
    """Raise ``ValueError("unknown <kind> <value>; choose one of ...")`` unless value is allowed."""
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(map(repr, allowed))}")


def activation_fn(name: str):
    """The elementwise function of a named activation (``torch.Tensor -> torch.Tensor``).

    LeakyReLU has slope 0.01, GELU is the exact (erf) form. ``dropout`` has no elementwise
    function: it is random, independent of its input (see :func:`activation`).
    """
    check_choice("activation", name, tuple(_FUNCTIONS))
    return _FUNCTIONS[name]


class _Elementwise(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name, self.fn = name, _FUNCTIONS[name]

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self):
        return self.name


def activation(name: str, p: float = 0.5) -> nn.Module:
    """A module for a named activation (see ``ACTIVATIONS``); ``dropout`` is ``nn.Dropout(p)``,
    used in place of an activation as in Paik & Choi's Figure 1(b)."""
    check_choice("activation", name, ACTIVATIONS)
    if name == "dropout":
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        return nn.Dropout(p)
    return _Elementwise(name)


def init_weights_(layer: nn.Module, init: str, activation_name: str = "relu", generator=None) -> nn.Module:
    """Initialize a linear or convolution layer in place; its bias is set to zero.

    fan_in = C_in·k·k and fan_out = C_out·k·k (k = 1 for a linear layer):

    - ``he``: W ~ N(0, 2/fan_in) (He et al. 2015)
    - ``lecun``: W ~ N(0, 1/fan_in) (LeCun 1998; SELU's init)
    - ``xavier``: W ~ N(0, 2/(fan_in + fan_out)) (Glorot & Bengio 2010)
    - ``orthogonal``: the [C_out, C_in·k·k] matrix random orthogonal, times gain √2 for the ReLU
      family (relu, leaky_relu), else gain 1 (Saxe et al. 2014)
    """
    check_choice("init", init, INITS)
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
    """``Linear -> norm -> activation``; ``skip_activation=True`` stops before the activation
    (the second layer of a residual block adds the skip first)."""

    def __init__(self, n_in, n_out, activation_name, norm, init, bias, p, generator, skip_activation=False):
        super().__init__()
        self.linear = init_weights_(nn.Linear(n_in, n_out, bias=bias), init, activation_name, generator)
        self.norm = {None: nn.Identity(), "batch": nn.BatchNorm1d(n_out), "layer": nn.LayerNorm(n_out)}[norm]
        self.act = nn.Identity() if skip_activation else activation(activation_name, p)

    def forward(self, x):
        return self.act(self.norm(self.linear(x)))


class Block(nn.Module):
    """He et al.'s basic block on vectors: ``act(layer2(layer1(x)) + x)``."""

    def __init__(self, width, activation_name, norm, init, bias, p, generator):
        super().__init__()
        self.layer1 = Layer(width, width, activation_name, norm, init, bias, p, generator)
        self.layer2 = Layer(width, width, activation_name, norm, init, bias, p, generator, skip_activation=True)
        self.act = activation(activation_name, p)

    def forward(self, x):
        return self.act(self.layer2(self.layer1(x)) + x)


class PreActLayer(Layer):
    """``norm -> activation -> Linear`` (He et al. 2016b's pre-activation order), for residual
    branches; the norm acts on the layer's input (``n_in == n_out``)."""

    def forward(self, x):
        return self.linear(self.act(self.norm(x)))


class PreActBlock(nn.Module):
    """Philipp et al.'s residual block ``f = s + r`` with an identity skip ``s = x`` and a branch
    ``r = W2 φ(N(W1 φ(N(x))))`` of two pre-activation layers, so that the Pythagorean equation
    ‖s + r‖² ≈ ‖s‖² + ‖r‖² applies to the block's output as it is."""

    def __init__(self, width, activation_name, norm, init, bias, p, generator):
        super().__init__()
        self.layer1 = PreActLayer(width, width, activation_name, norm, init, bias, p, generator)
        self.layer2 = PreActLayer(width, width, activation_name, norm, init, bias, p, generator)

    def residual(self, x):
        """The residual branch r(x)."""
        return self.layer2(self.layer1(x))

    def forward(self, x):
        return x + self.residual(x)


class MLP(nn.Sequential):
    """A stack of :class:`Layer` or :class:`Block` modules, optionally followed by a linear head."""

    def linears(self) -> list[nn.Linear]:
        """The hidden layers' linear maps, input to output (the head excluded)."""
        return [m.linear for m in self.modules() if isinstance(m, Layer)]


def mlp(depth: int, width: int, activation: str = "relu", norm: str | None = None, residual: bool | str = False,
        init: str = "he", in_dim: int | None = None, out_dim: int | None = None, bias: bool = False,
        dropout: float = 0.5, generator: torch.Generator | None = None) -> MLP:
    """A fully connected network of ``depth`` hidden layers of ``width`` units.

    Layer k computes ``act(norm(W_k x))`` with W_k initialized by ``init`` (see
    :func:`init_weights_`). ``in_dim`` defaults to ``width``; ``out_dim`` adds a linear head (not
    counted in ``depth``). ``residual=True`` pairs the layers into basic blocks (``depth`` must
    be even and ``in_dim`` equal to ``width``). ``generator`` draws the weights, so that weights
    and data can come from separate streams (:func:`gradprobe.seed`).

    ``residual="preact"`` is Philipp et al.'s ResNet: a linear stem (``in_dim -> width``, no norm
    or activation), then ``(depth - 1) / 2`` :class:`PreActBlock` (``depth`` must be odd).
    ``init="looks_linear"`` (ReLU, plain, even width) is :func:`looks_linear_` for every layer
    and the head: the network is linear at initialization.
    """
    for name, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("norm", norm, NORMS)
    check_choice("init", init, INITS + ("looks_linear",))
    if isinstance(residual, str) and residual != "preact":
        raise ValueError(f"unknown residual {residual!r}; choose False, True (basic blocks) or 'preact'")
    in_dim = width if in_dim is None else in_dim
    if in_dim < 1 or (out_dim is not None and out_dim < 1):
        raise ValueError(f"in_dim and out_dim must be positive, got in_dim={in_dim}, out_dim={out_dim}")
    if init == "looks_linear":
        if activation != "relu" or residual:
            raise ValueError(f"init='looks_linear' is for plain ReLU networks, got activation={activation!r}, "
                             f"residual={residual!r}")
        if width % 2:
            raise ValueError(f"init='looks_linear' pairs units: width must be even, got {width}")
        return _looks_linear_mlp(depth, width, norm, in_dim, out_dim, bias, generator)
    args = (activation, norm, init, bias, dropout, generator)
    if residual == "preact":
        if depth % 2 == 0:
            raise ValueError(f"residual='preact' is a stem and blocks of 2 layers: depth must be odd, got {depth}")
        body = [Layer(in_dim, width, "identity", None, init, bias, dropout, generator)]
        body += [PreActBlock(width, *args) for _ in range((depth - 1) // 2)]
    elif residual:
        if depth % 2:
            raise ValueError(f"a residual MLP pairs layers into blocks: depth must be even, got {depth}")
        if in_dim != width:
            raise ValueError(f"a residual MLP needs in_dim == width for its first skip, got {in_dim} != {width}")
        body = [Block(width, *args) for _ in range(depth // 2)]
    else:
        body = [Layer(in_dim if k == 0 else width, width, *args) for k in range(depth)]
    if out_dim is not None:
        body.append(init_weights_(nn.Linear(width, out_dim, bias=True), "xavier", generator=generator))
    return MLP(*body)


def _looks_linear_mlp(depth, width, norm, in_dim, out_dim, bias, generator) -> MLP:
    body = [Layer(in_dim if k == 0 else width, width, "relu", norm, "orthogonal", bias, 0.5, None) for k in range(depth)]
    for k, layer in enumerate(body):
        looks_linear_(layer.linear, first=k == 0, generator=generator)
    if out_dim is not None:
        body.append(looks_linear_(nn.Linear(width, out_dim, bias=True), generator=generator))
    return MLP(*body)
