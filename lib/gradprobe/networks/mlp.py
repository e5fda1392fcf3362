"""Fully connected networks with a choice of activation, normalization, residual blocks and init.

Every network is a stack of :class:`~gradprobe.networks.layers.Layer` (``Linear -> norm ->
activation``). ``residual=True`` groups layers in pairs into He et al.'s basic block,
``x_{k+2} = act(norm(W_{k+1} act(norm(W_k x_k))) + x_k)``, the "ResNet" of the ghost paper;
``residual="preact"`` is Philipp et al.'s ResNet of pre-activation blocks; ``init="looks_linear"``
makes a plain ReLU network linear at initialization. :func:`scaled_residual_net` is the
y = x + F(x)/√L network of the ghost paper's Proposition B.17.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import one_of, positive_int
from .layers import ACTIVATIONS, INITS, NORMS, Layer, PreActLayer, activation_module, init_weights_, looks_linear_

__all__ = ["MLP", "Block", "PreActBlock", "mlp", "ScaledResidualBlock", "scaled_residual_net"]


class Block(nn.Module):
    """He et al.'s basic block on vectors: ``act(layer2(layer1(x)) + x)``, both layers
    ``width -> width`` (:class:`~gradprobe.networks.layers.Layer`, the second without its activation)."""

    def __init__(self, width: int, *, activation: str, norm: str | None = None, init: str = "he", bias: bool = False,
                 dropout: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        kw = dict(activation=activation, norm=norm, init=init, bias=bias, dropout=dropout, generator=generator)
        self.layer1 = Layer(width, width, **kw)
        self.layer2 = Layer(width, width, skip_activation=True, **kw)
        self.act = activation_module(activation, dropout)

    def forward(self, x):
        return self.act(self.layer2(self.layer1(x)) + x)


class PreActBlock(nn.Module):
    """Philipp et al.'s residual block ``f = s + r`` with an identity skip ``s = x`` and a branch
    ``r = W2 φ(N(W1 φ(N(x))))`` of two pre-activation layers, so that the Pythagorean equation
    ‖s + r‖² ≈ ‖s‖² + ‖r‖² applies to the block's output as it is."""

    def __init__(self, width: int, *, activation: str, norm: str | None = None, init: str = "he", bias: bool = False,
                 dropout: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        kw = dict(activation=activation, norm=norm, init=init, bias=bias, dropout=dropout, generator=generator)
        self.layer1 = PreActLayer(width, width, **kw)
        self.layer2 = PreActLayer(width, width, **kw)

    def residual(self, x):
        """The residual branch r(x)."""
        return self.layer2(self.layer1(x))

    def forward(self, x):
        return x + self.residual(x)


class MLP(nn.Sequential):
    """A stack of :class:`~gradprobe.networks.layers.Layer`, :class:`Block` or :class:`PreActBlock`
    modules, optionally followed by a linear head."""

    def linears(self) -> list[nn.Linear]:
        """The hidden layers' linear maps, input to output (the head excluded)."""
        return [m.linear for m in self.modules() if isinstance(m, Layer)]


def mlp(depth: int, width: int, activation: str = "relu", norm: str | None = None, residual: bool | str = False,
        init: str = "he", in_dim: int | None = None, out_dim: int | None = None, bias: bool = False,
        dropout: float = 0.5, generator: torch.Generator | None = None) -> MLP:
    """A fully connected network of ``depth`` hidden layers of ``width`` units.

    Layer k computes ``act(norm(W_k x))`` with W_k initialized by ``init`` (see
    :func:`~gradprobe.networks.layers.init_weights_`). ``in_dim`` defaults to ``width``;
    ``out_dim`` adds a linear head with a bias (Xavier init; not counted in ``depth``).
    ``residual=True`` pairs the layers into basic blocks (``depth`` must be even and ``in_dim``
    equal to ``width``). ``generator`` draws the weights, so that weights and data can come from
    separate streams (:func:`gradprobe.seed`).

    ``residual="preact"`` is Philipp et al.'s ResNet: a linear stem (``in_dim -> width``, no norm
    or activation), then ``(depth - 1) / 2`` :class:`PreActBlock` (``depth`` must be odd).
    ``init="looks_linear"`` (ReLU, plain, even width) is :func:`~gradprobe.networks.layers.looks_linear_`
    for every layer and the head: the network is linear at initialization.

    Parameters: in_dim·width + (depth − 1)·width² weights, plus ``width`` per hidden layer with
    ``bias`` and 2·width per normalized layer (in a pre-activation ResNet the stem has no norm),
    plus width·out_dim + out_dim for the head.
    """
    positive_int("depth", depth)
    positive_int("width", width)
    one_of("activation", activation, ACTIVATIONS)
    one_of("norm", norm, NORMS)
    one_of("init", init, INITS + ("looks_linear",))
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
    kw = dict(activation=activation, norm=norm, init=init, bias=bias, dropout=dropout, generator=generator)
    if residual == "preact":
        if depth % 2 == 0:
            raise ValueError(f"residual='preact' is a stem and blocks of 2 layers: depth must be odd, got {depth}")
        body = [Layer(in_dim, width, activation="identity", init=init, bias=bias, dropout=dropout, generator=generator)]
        body += [PreActBlock(width, **kw) for _ in range((depth - 1) // 2)]
    elif residual:
        if depth % 2:
            raise ValueError(f"a residual MLP pairs layers into blocks: depth must be even, got {depth}")
        if in_dim != width:
            raise ValueError(f"a residual MLP needs in_dim == width for its first skip, got {in_dim} != {width}")
        body = [Block(width, **kw) for _ in range(depth // 2)]
    else:
        body = [Layer(in_dim if k == 0 else width, width, **kw) for k in range(depth)]
    if out_dim is not None:
        body.append(init_weights_(nn.Linear(width, out_dim, bias=True), "xavier", generator=generator))
    return MLP(*body)


def _looks_linear_mlp(depth, width, norm, in_dim, out_dim, bias, generator) -> MLP:
    # the orthogonal init from the global stream is overwritten by looks_linear_ from ``generator``
    body = [Layer(in_dim if k == 0 else width, width, activation="relu", norm=norm, init="orthogonal", bias=bias)
            for k in range(depth)]
    for k, layer in enumerate(body):
        looks_linear_(layer.linear, first=k == 0, generator=generator)
    if out_dim is not None:
        body.append(looks_linear_(nn.Linear(width, out_dim, bias=True), generator=generator))
    return MLP(*body)


class ScaledResidualBlock(nn.Module):
    """y = x + F(x)·``scale`` with the branch F = BN ∘ W_2 ∘ act ∘ BN ∘ W_1, two
    :class:`~gradprobe.networks.layers.Layer` (He init, BatchNorm, no bias; the second without its
    activation). ``scale`` = 1/√L is Balduzzi et al.'s 1/√L initialization, written as in the ghost
    paper's Prop. B.17."""

    def __init__(self, width: int, scale: float, activation: str = "relu", generator: torch.Generator | None = None):
        super().__init__()
        self.scale = scale
        kw = dict(activation=activation, norm="batch", init="he", generator=generator)
        self.branch = nn.Sequential(Layer(width, width, **kw), Layer(width, width, skip_activation=True, **kw))

    def forward(self, x):
        return x + self.scale * self.branch(x)


def scaled_residual_net(blocks: int, width: int = 128, activation: str = "relu",
                        generator: torch.Generator | None = None) -> nn.Sequential:
    """L = ``blocks`` residual blocks y = x + F(x)/√L (:class:`ScaledResidualBlock`): 2L weight
    layers of ``width``, weights from ``generator``. Parameters: L·(2·width² + 4·width)."""
    positive_int("blocks", blocks)
    positive_int("width", width)
    return nn.Sequential(*[ScaledResidualBlock(width, 1 / math.sqrt(blocks), activation, generator)
                           for _ in range(blocks)])
