"""ImageNet ResNets with torchvision's layout and parameter names, and their pre-activation variant.

:func:`imagenet_resnet` builds He et al.'s (2016a) ImageNet ResNet-18/34/50/101/152 exactly as
``torchvision.models.resnet`` lays it out (v1.5: the stride of a bottleneck sits on its 3×3 conv),
module for module and name for name, so that a torchvision state dict loads with
``load_state_dict(strict=True)``:

    conv1 (7×7, stride 2) -> bn1 -> relu -> maxpool (3×3, stride 2)
    layer1 … layer4: blocks (BasicBlock or Bottleneck), the first of layers 2–4 with stride 2
    avgpool (global) -> fc

A bottleneck computes ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``
with ``shortcut`` the identity or ``downsample`` = 1×1 conv (stride) -> BN where the shape changes.
Initialization as torchvision: convolutions ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``,
BN γ = 1, β = 0 (``zero_init_residual=True``: γ = 0 in each block's last BN), the Linear head
PyTorch's default U(−1/√fan_in, 1/√fan_in) for weight and bias; all drawn from ``generator``.
ResNet-50 has 25,557,032 parameters (torchvision's published count).

:func:`preact_resnet` is the pre-activation ResNet of He et al. (2016b, "Identity mappings"):
every block is ``x + conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))))`` (bottleneck; the
basic block has two 3×3 convs), the identity skip carries the stream untouched, a projection
``downsample`` (1×1 conv, no BN) is applied to ``relu(bn1(x))`` where the shape changes, the stem is
conv1 -> maxpool without normalization, and a final ``bn`` -> relu precedes the pooling.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import is_int, positive_int

__all__ = ["RESNET_LAYERS", "BasicBlock", "Bottleneck", "ResNet", "imagenet_resnet", "resnet50", "PreActBasicBlock",
           "PreActBottleneck", "PreActResNet", "preact_resnet", "resnet_parameter_count", "last_gamma_",
           "branch_scale_"]

# depth -> (block, blocks per stage), torchvision's table
RESNET_LAYERS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
                 101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}


def _conv3x3(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3×3 convs with BN, ReLU after the addition."""

    expansion = 1

    def __init__(self, c_in, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c_in, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample, self.stride = downsample, stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)   # after the branch, as torchvision
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5): 1×1 -> 3×3 (stride) -> 1×1 (×4 channels), BN after each, ReLU
    after the addition."""

    expansion = 4

    def __init__(self, c_in, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv1x1(c_in, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample, self.stride = downsample, stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)   # after the branch, as torchvision
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet layout (see the module docstring)."""

    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _linear_default_(linear: nn.Linear, generator) -> None:
    """PyTorch's default Linear init (kaiming_uniform with a = √5, i.e. U(±1/√fan_in), and the same
    bound for the bias), drawn from ``generator``."""
    bound = 1 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound, generator=generator)
    if linear.bias is not None:
        nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


def _init_like_torchvision_(model: nn.Module, generator) -> None:
    """torchvision's ResNet initialization: convolutions He normal (fan_out, ReLU gain), BN γ = 1,
    β = 0, PyTorch's default Linear head; every draw from ``generator``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        _linear_default_(model.fc, generator)


def _check_depth(depth):
    if not is_int(depth) or depth not in RESNET_LAYERS:
        raise ValueError(f"depth must be one of {', '.join(map(str, RESNET_LAYERS))} (torchvision's ResNets), got {depth!r}")


def imagenet_resnet(depth: int = 50, num_classes: int = 1000, zero_init_residual: bool = False,
                    generator: torch.Generator | None = None) -> ResNet:
    """torchvision's ``resnet{depth}`` (18, 34, 50, 101, 152) with random weights from ``generator``
    (see the module docstring). Parameters: :func:`resnet_parameter_count` (25,557,032 for
    ResNet-50 with 1000 classes)."""
    _check_depth(depth)
    positive_int("num_classes", num_classes)
    kind, layers = RESNET_LAYERS[depth]
    model = ResNet(BasicBlock if kind == "basic" else Bottleneck, layers, num_classes)
    _init_like_torchvision_(model, generator)
    return last_gamma_(model, 0.0) if zero_init_residual else model


def last_gamma_(model: nn.Module, value: float) -> nn.Module:
    """Set γ of the last BatchNorm of every residual branch (``bn3`` of a bottleneck, ``bn2`` of a
    basic block) to ``value``, in place, and return the model: 0 is Goyal et al.'s zero-γ
    (torchvision's ``zero_init_residual``)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Bottleneck):
                m.bn3.weight.fill_(value)
            elif isinstance(m, BasicBlock):
                m.bn2.weight.fill_(value)
    return model


def resnet50(num_classes: int = 1000, generator: torch.Generator | None = None) -> ResNet:
    """torchvision's ResNet-50 layout with random weights (25,557,032 parameters for 1000 classes)."""
    return imagenet_resnet(50, num_classes, generator=generator)


# --------------------------------------------------------------------------- pre-activation

class PreActBasicBlock(nn.Module):
    """``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``; ``downsample`` (1×1 conv) acts on relu(bn1(x))."""

    expansion = 1

    def __init__(self, c_in, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv3x3(c_in, planes, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), _conv3x3(planes, planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.downsample is None else self.downsample(pre))


class PreActBottleneck(nn.Module):
    """``x + conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))))`` (stride on conv2);
    ``downsample`` (1×1 conv, stride) acts on relu(bn1(x))."""

    expansion = 4

    def __init__(self, c_in, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv1x1(c_in, planes)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), _conv3x3(planes, planes, stride)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), _conv1x1(planes, planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(pre))


class PreActResNet(nn.Module):
    """conv1 -> maxpool -> layer1…layer4 (pre-activation blocks) -> bn -> relu -> avgpool -> fc."""

    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.bn = nn.BatchNorm2d(512 * block.expansion)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = _conv1x1(self.inplanes, planes * block.expansion, stride)
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def preact_resnet(depth: int = 50, num_classes: int = 1000, generator: torch.Generator | None = None) -> PreActResNet:
    """He et al.'s (2016b) pre-activation ResNet of ``depth`` (18, 34, 50, 101, 152; the same stages
    as :func:`imagenet_resnet`), initialized as it: convolutions He (fan_out), BN γ = 1, β = 0,
    PyTorch's default Linear head, from ``generator``. Parameters: :func:`resnet_parameter_count`
    with ``preact=True``."""
    _check_depth(depth)
    positive_int("num_classes", num_classes)
    kind, layers = RESNET_LAYERS[depth]
    model = PreActResNet(PreActBasicBlock if kind == "basic" else PreActBottleneck, layers, num_classes)
    _init_like_torchvision_(model, generator)
    return model


def branch_scale_(model: nn.Module, value: float) -> nn.Module:
    """Multiply the last convolution of every branch of a pre-activation ResNet (``conv3`` of a
    bottleneck, ``conv2`` of a basic block) by ``value``, in place, and return the model: each block
    becomes y = x + value·F(x) (value = 1/√L: Balduzzi et al.'s scaling, the ghost paper's
    Proposition B.17)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, PreActBottleneck):
                m.conv3.weight.mul_(value)
            elif isinstance(m, PreActBasicBlock):
                m.conv2.weight.mul_(value)
    return model


def resnet_parameter_count(depth: int = 50, num_classes: int = 1000, preact: bool = False) -> int:
    """The number of parameters of :func:`imagenet_resnet` (``preact=False``) or
    :func:`preact_resnet`, counted from the layout rather than from a model: the stem conv
    (3·64·7·7) and its BN (2·64, not in the pre-activation net), per block its convolutions
    (C_in·C_out·k²), its BNs (2·channels each; in a pre-activation block the first BN is over the
    block's input channels), the shortcut projections (1×1 conv, plus a BN in the original), the
    final BN of the pre-activation net, and the head (2048·classes + classes for a bottleneck net)."""
    _check_depth(depth)
    kind, layers = RESNET_LAYERS[depth]
    expansion = 1 if kind == "basic" else 4
    total = 3 * 64 * 49 + (0 if preact else 2 * 64)
    c_in = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        for b in range(blocks):
            c_out = planes * expansion
            if kind == "basic":
                convs = 9 * c_in * planes + 9 * planes * planes
                bns = [c_in, planes] if preact else [planes, planes]
            else:
                convs = c_in * planes + 9 * planes * planes + planes * c_out
                bns = [c_in, planes, planes] if preact else [planes, planes, c_out]
            total += convs + 2 * sum(bns)
            if b == 0 and (stage > 0 or c_in != c_out):
                total += c_in * c_out + (0 if preact else 2 * c_out)
            c_in = c_out
    if preact:
        total += 2 * c_in
    return total + c_in * num_classes + num_classes
