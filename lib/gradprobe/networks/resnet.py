"""The CIFAR ResNets of He et al. (2016), Sec. 4.2: depth 6n+2, option-A shortcuts.

    conv3×3(3→w) -> [norm] -> act                                   layer 1
    stage 1: n basic blocks, w channels on 32×32                     layers 2 … 2n+1
    stage 2: n basic blocks, 2w channels on 16×16 (stride 2 first)   layers 2n+2 … 4n+1
    stage 3: n basic blocks, 4w channels on 8×8 (stride 2 first)     layers 4n+2 … 6n+1
    [final BN] -> global average pool -> Linear(4w → classes)        layer 6n+2

A basic block is ``act(norm(conv2(act(norm(conv1(x))))) + shortcut(x))``; the option-A shortcut
is the identity, or, where a stage halves the resolution and doubles the channels, the input
subsampled by 2 and zero-padded with w/2 … channels on both sides (no parameters).

**Layer numbering** (Bjorck et al. 2018 count this way: in ResNet-110 layer 8 has 16 channels,
44 has 32, 80 has 64, layer 55 is the midpoint 32→32 kernel): layer k is the k-th weight layer
from the input; layers 1 … 6n+1 are the 3×3 convolutions in the order the data meets them and
layer 6n+2 is the final Linear. :func:`layer` returns the module of layer k, :func:`layer_map` the
modules of several, :func:`conv_layers` the list of convolutions (``conv_layers(net)[k - 1]`` is
layer k), :func:`numbered_layers` all of them, :func:`paper_layer` maps a ResNet-110 layer number
to the same place in a shallower net.

``norm`` is ``"batch"`` (BatchNorm2d after every conv, before the activation), ``None`` (every
BN removed; the paper's "unnormalized network") or ``"final"`` (one BatchNorm2d on the output of
the last residual block only, before the pooling: the paper's Appendix E network).
Convolutions have no bias (He et al.); the Linear's bias starts at zero. Both can be changed
(``conv_bias``, ``classifier_init``), and ``init="torch"`` draws PyTorch's own default
initialization, to measure what each choice does to a network without normalization.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..checks import is_int, one_of, positive_int
from .layers import ACTIVATIONS, INITS, activation_module, init_weights_

__all__ = ["RESNET_NORMS", "RESNET_INITS", "CONV_BIASES", "CifarResNet", "BasicBlock", "cifar_resnet",
           "blocks_per_stage", "conv_layers", "numbered_layers", "layer", "layer_map", "layer_stage", "paper_layer"]

RESNET_NORMS = ("batch", None, "final")
RESNET_INITS = INITS + ("torch",)  # he, lecun, xavier (the paper's choice), orthogonal; PyTorch's default
CONV_BIASES = (None, "zero", "torch")  # no bias (He et al.), a bias starting at 0, PyTorch's default bias


def blocks_per_stage(depth: int) -> int:
    """n for a ResNet of depth 6n+2 (20 → 3, 32 → 5, 56 → 9, 110 → 18)."""
    if not is_int(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2 with n >= 1 (8, 14, 20, 32, 56, 110, ...), got {depth!r}")
    return (depth - 2) // 6


def _norm(norm, channels):
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


class _OptionA(nn.Module):
    """The parameter-free shortcut: subsample by ``stride`` and zero-pad the channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x

    def extra_repr(self):
        return f"stride={self.stride}, pad_channels={self.extra}"


class BasicBlock(nn.Module):
    """``act(norm2(conv2(act(norm1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_channels, out_channels, stride, norm, activation_name, bias=False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.norm1 = _norm(norm, out_channels)
        self.act1 = activation_module(activation_name)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.norm2 = _norm(norm, out_channels)
        self.shortcut = _OptionA(in_channels, out_channels, stride)
        self.act2 = activation_module(activation_name)

    def forward(self, x):
        out = self.act1(self.norm1(self.conv1(x)))
        return self.act2(self.norm2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet; see the module docstring for the layout and the layer numbers."""

    def __init__(self, depth, norm, activation_name, width, num_classes, conv_bias=False):
        super().__init__()
        n = blocks_per_stage(depth)
        self.depth, self.norm_kind = depth, norm
        inner = "batch" if norm == "batch" else None
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=conv_bias)
        self.norm1 = _norm(inner, width)
        self.act1 = activation_module(activation_name)
        stages, channels = [], width
        for s, out_channels in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(channels, out_channels, stride, inner, activation_name, conv_bias))
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.final_norm = nn.BatchNorm2d(channels) if norm == "final" else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)

    def features(self, x):
        """The output of the last residual block (after the final BN for ``norm="final"``)."""
        x = self.act1(self.norm1(self.conv1(x)))
        return self.final_norm(self.stage3(self.stage2(self.stage1(x))))

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _torch_default_(tensor: torch.Tensor, fan_in: int, generator: torch.Generator | None = None) -> None:
    """PyTorch's default initialization of a Conv2d's or Linear's weight or bias, drawn from
    ``generator``: U(−1/√fan_in, 1/√fan_in) (``kaiming_uniform_(a=√5)`` gives the same bound)."""
    bound = 1 / math.sqrt(fan_in)
    with torch.no_grad():
        nn.init.uniform_(tensor, -bound, bound, generator=generator)


def cifar_resnet(depth: int, norm: str | None = "batch", activation: str = "relu", width: int = 16,
                 num_classes: int = 10, init: str = "xavier",
                 generator: torch.Generator | None = None, *, classifier_init: str | None = None,
                 conv_bias: str | None = None) -> CifarResNet:
    """He et al.'s CIFAR ResNet of ``depth`` = 6n+2 weight layers (20, 32, 56, 110, ...).

    ``norm``: ``"batch"`` (BN after every conv), ``None`` (no BN anywhere) or ``"final"`` (one BN on
    the last block's output only, Bjorck et al.'s Appendix E). ``activation``: a name from
    :data:`gradprobe.networks.layers.ACTIVATIONS`. ``width``: channels of stage 1 (stages have w,
    2w, 4w). ``init``: every conv and the Linear drawn by
    :func:`gradprobe.networks.layers.init_weights_` (default Xavier, as in the paper) from
    ``generator``, or ``"torch"``: PyTorch's default, W ~ U(−1/√fan_in, 1/√fan_in); BN starts at
    γ = 1, β = 0; the Linear's bias at 0. ``classifier_init``: the final Linear's initialization
    when it differs from ``init`` (``"torch"`` also draws its bias, as PyTorch does). ``conv_bias``:
    ``None`` (no conv biases, He et al.), ``"zero"`` (biases starting at 0: the same function at
    initialization) or ``"torch"`` (PyTorch's default U(−1/√fan_in, 1/√fan_in)); biases are
    drawn after every weight, so the weights do not depend on ``conv_bias``.

    Parameters, with n = (depth − 2)/6 and w = ``width``: 9·(3w + (42n − 10)·w²) conv weights,
    2w·(14n + 1) BatchNorm parameters with ``norm="batch"`` (8w with ``"final"``, none with
    ``None``) and 4w·num_classes + num_classes in the final Linear.
    """
    blocks_per_stage(depth)
    one_of("norm", norm, RESNET_NORMS)
    one_of("activation", activation, ACTIVATIONS)
    one_of("init", init, RESNET_INITS)
    if classifier_init is not None:
        one_of("classifier_init", classifier_init, RESNET_INITS)
    one_of("conv_bias", conv_bias, CONV_BIASES)
    positive_int("width", width)
    positive_int("num_classes", num_classes)
    net = CifarResNet(depth, norm, activation, width, num_classes, conv_bias=conv_bias is not None)
    layers = numbered_layers(net)
    for module in layers:
        how = classifier_init if module is net.fc and classifier_init is not None else init
        if how == "torch":
            _torch_default_(module.weight, module.weight[0].numel(), generator)
        else:
            init_weights_(module, how, activation, generator)
    if (classifier_init or init) == "torch":
        _torch_default_(net.fc.bias, net.fc.in_features, generator)
    else:
        nn.init.zeros_(net.fc.bias)
    for module in layers[:-1]:                   # conv biases, after every weight
        if conv_bias == "torch":
            _torch_default_(module.bias, module.weight[0].numel(), generator)
        elif conv_bias == "zero":
            nn.init.zeros_(module.bias)
    return net


def conv_layers(model: CifarResNet) -> list[nn.Conv2d]:
    """The 3×3 convolutions in the order the data meets them: ``conv_layers(net)[k - 1]`` is the
    paper's layer k (k = 1 … depth − 1)."""
    if not isinstance(model, CifarResNet):
        raise ValueError(f"conv_layers expects a CifarResNet from cifar_resnet(), got {type(model).__name__}")
    convs = [model.conv1]
    for stage in (model.stage1, model.stage2, model.stage3):
        for block in stage:
            convs += [block.conv1, block.conv2]
    return convs


def numbered_layers(model: CifarResNet) -> list[nn.Module]:
    """All ``depth`` weight layers, input to output: the convolutions, then the final Linear;
    ``numbered_layers(net)[k - 1]`` is layer k."""
    return conv_layers(model) + [model.fc]


def layer(model: CifarResNet, k: int) -> nn.Module:
    """The paper's layer k: the k-th conv from the input, or the final Linear for k = depth."""
    layers = numbered_layers(model)
    if not is_int(k) or not 1 <= k <= len(layers):
        raise ValueError(f"layer number must be an integer in 1 … {len(layers)} for a ResNet-{model.depth}, got {k!r}")
    return layers[k - 1]


def layer_map(model: CifarResNet, ks) -> dict[int, nn.Module]:
    """``{k: layer(model, k)}`` for one layer number ``ks`` or each of several, in the order given."""
    ks = [ks] if is_int(ks) else list(ks)
    return {k: layer(model, k) for k in ks}


def layer_stage(k: int, depth: int) -> int:
    """The stage (1, 2, 3) of conv layer k in a ResNet of ``depth``; 0 for the stem conv (k = 1)
    and 4 for the final Linear (k = depth)."""
    n = blocks_per_stage(depth)
    if not is_int(k) or not 1 <= k <= depth:
        raise ValueError(f"layer number must be an integer in 1 … {depth}, got {k!r}")
    if k == 1:
        return 0
    if k == depth:
        return 4
    return (k - 2) // (2 * n) + 1


def paper_layer(k: int, depth: int, paper_depth: int = 110) -> int:
    """Map layer k of a ResNet-``paper_depth`` to the layer at the same place of a ResNet-``depth``:
    the same stage, the same conv of its block (first or second), the block at the same relative
    position within the stage (rounded). Layers 1 and the final Linear map to themselves.
    ResNet-110 → ResNet-56: 8 → 4, 44 → 22, 55 → 29, 80 → 40."""
    stage = layer_stage(k, paper_depth)
    if stage == 0:
        return 1
    if stage == 4:
        return depth
    n_paper, n = blocks_per_stage(paper_depth), blocks_per_stage(depth)
    offset = k - 2 - (stage - 1) * 2 * n_paper          # 0 … 2·n_paper − 1 within the stage
    block, second = divmod(offset, 2)
    new_block = min(n - 1, round(block * (n - 1) / (n_paper - 1))) if n_paper > 1 else 0
    return 2 + (stage - 1) * 2 * n + 2 * new_block + second
