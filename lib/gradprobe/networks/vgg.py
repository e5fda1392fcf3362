"""VGG-style plain convolution networks (Simonyan & Zisserman 2015) with torchvision's module names.

One conv layer is ``Conv3x3 -> norm -> activation``; ``"M"`` in the configuration is a 2×2
max-pool with stride 2 (or, with ``pool="avg"``, a 2×2 average pool: the linear contrast).
Modules are named exactly as in ``torchvision.models.vgg``: ``features.<i>`` (conv, norm, act
per layer, then the pools, numbered consecutively), ``avgpool`` and ``classifier.<i>``. With
``head="imagenet"`` the classifier is torchvision's, so the state dict of torchvision's ImageNet
``vgg19_bn`` checkpoint loads with ``load_state_dict(strict=True)`` (:func:`load_checkpoint`);
``head="cifar"`` is a small head: global average pool + one Linear. :func:`pool_positions` says
where the pools sit among the normalization layers.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checks import is_int, one_of, positive_int
from .layers import ACTIVATIONS, INITS, activation_module, init_weights_

__all__ = ["CONFIGS", "VGG_NORMS", "HEADS", "POOLS", "VGG", "vgg", "norm_layer", "pool_positions", "load_checkpoint",
           "VGG19_BN_URL"]

# torchvision's configurations "A", "B", "D", "E" (numbers: output channels of a 3×3 conv; "M": max-pool)
CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
VGG_NORMS = ("batch", "group", "layer", None)
HEADS = ("cifar", "imagenet")
POOLS = ("max", "avg")  # the 2x2 stride-2 downsampling of an "M" entry
VGG19_BN_URL = "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth"


def _groups(channels: int, most: int = 32) -> int:
    """The largest divisor of ``channels`` not above ``most`` (= min(32, C) when C is a multiple of
    32 or at most 32, the usual GroupNorm setting)."""
    return max(g for g in range(1, min(most, channels) + 1) if channels % g == 0)


def norm_layer(norm: str | None, channels: int, group_size: int | None = None) -> nn.Module:
    """The normalization after a conv of ``channels`` outputs: ``"batch"`` BatchNorm2d(C),
    ``"group"`` GroupNorm(min(32, C), C) (the largest divisor of C up to 32 when 32 does not divide
    C), or with ``group_size`` GroupNorm(C / group_size, C), groups of ``group_size`` channels each
    (which must divide C), ``"layer"`` GroupNorm(1, C) (LayerNorm over channels and pixels), ``None``
    nothing (``nn.Identity``, which has no parameters and so does not change the state dict)."""
    one_of("norm", norm, VGG_NORMS)
    if group_size is not None:
        positive_int("group_size", group_size)
        if norm != "group":
            raise ValueError(f"group_size is for norm='group', got norm={norm!r}")
        if channels % group_size:
            raise ValueError(f"group_size {group_size} does not divide {channels} channels")
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(_groups(channels) if group_size is None else channels // group_size, channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class VGG(nn.Module):
    """``features -> avgpool -> flatten -> classifier``, torchvision's layout."""

    def __init__(self, features: nn.Sequential, avgpool: nn.Module, classifier: nn.Sequential):
        super().__init__()
        self.features, self.avgpool, self.classifier = features, avgpool, classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def convs(self) -> list[nn.Conv2d]:
        """The 3×3 convolutions, input to output."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)]

    def norms(self) -> list[nn.Module]:
        """The normalization layers (BatchNorm2d or GroupNorm), input to output."""
        return [m for m in self.features if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]


def _resolve_cfg(cfg) -> list:
    if isinstance(cfg, str):
        one_of("cfg", cfg, tuple(CONFIGS))
        return list(CONFIGS[cfg])
    if not isinstance(cfg, (list, tuple)) or not cfg:
        raise ValueError(f"cfg must be one of {', '.join(CONFIGS)} or a non-empty list of ints and 'M', got {cfg!r}")
    for item in cfg:
        if item != "M" and (not is_int(item) or item < 1):
            raise ValueError(f"cfg entries must be positive ints (conv channels) or 'M' (max-pool), got {item!r}")
    if not any(item != "M" for item in cfg):
        raise ValueError(f"cfg needs at least one conv layer, got {cfg!r}")
    return list(cfg)


def vgg(cfg="vgg19", norm: str | None = "batch", activation: str = "relu", num_classes: int = 10,
        in_channels: int = 3, head: str = "cifar", init: str = "he", generator: torch.Generator | None = None,
        dropout: float = 0.5, pool: str = "max", group_size: int | None = None) -> VGG:
    """A plain VGG-style network: per entry of ``cfg``, ``Conv3x3(pad 1) -> norm -> act`` or a 2×2 max-pool.

    ``cfg``: ``"vgg11" | "vgg13" | "vgg16" | "vgg19"`` (torchvision's) or a list of ints (conv output
    channels) and ``"M"``. ``norm`` and ``group_size``: see :func:`norm_layer`. ``activation``: a name of
    :data:`gradprobe.networks.layers.ACTIVATIONS` (``"dropout"`` uses probability ``dropout``). ``head``:
    ``"cifar"`` = AdaptiveAvgPool2d(1) + Linear(C_last, num_classes); ``"imagenet"`` = torchvision's
    AdaptiveAvgPool2d(7) + Linear(C_last·49, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
    Linear(4096, num_classes). ``pool``: ``"max"`` (VGG's 2×2 max-pool) or ``"avg"`` (a 2×2 average
    pool: the same layout with a linear downsampling). Convs have biases (zero), as torchvision's;
    weights are drawn with
    ``init`` (:func:`gradprobe.networks.layers.init_weights_`) from ``generator``; head Linear
    layers get N(0, 0.01²) as torchvision's.

    Parameters: 9·C_in·C_out + C_out per conv (C_in of the first is ``in_channels``), 2·C_out per
    normalization layer (none for ``norm=None``), and the head's Linear layers (weights and biases):
    C_last·num_classes + num_classes for ``"cifar"``.
    """
    layers_cfg = _resolve_cfg(cfg)
    one_of("norm", norm, VGG_NORMS)
    one_of("activation", activation, ACTIVATIONS)
    one_of("head", head, HEADS)
    one_of("init", init, INITS)
    one_of("pool", pool, POOLS)
    positive_int("num_classes", num_classes)
    positive_int("in_channels", in_channels)

    features, channels = [], in_channels
    for item in layers_cfg:
        if item == "M":
            features.append(nn.MaxPool2d(kernel_size=2, stride=2) if pool == "max"
                            else nn.AvgPool2d(kernel_size=2, stride=2))
            continue
        conv = init_weights_(nn.Conv2d(channels, item, kernel_size=3, padding=1), init, activation, generator)
        features.append(conv)
        if norm is not None:  # torchvision's plain "vgg19" has no norm module (indices shift)
            features.append(norm_layer(norm, item, group_size))
        # torchvision uses nn.ReLU(inplace=True); a parameter-free module either way, so names match
        features.append(activation_module(activation, dropout))
        channels = item

    if head == "imagenet":
        avgpool = nn.AdaptiveAvgPool2d((7, 7))
        classifier = nn.Sequential(nn.Linear(channels * 49, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                   nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                   nn.Linear(4096, num_classes))
    else:
        avgpool = nn.AdaptiveAvgPool2d(1)
        classifier = nn.Sequential(nn.Linear(channels, num_classes))
    with torch.no_grad():
        for m in classifier:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01, generator=generator)
                m.bias.zero_()
    return VGG(nn.Sequential(*features), avgpool, classifier)


def pool_positions(model: VGG) -> list[int]:
    """For each pool (max or average) of ``model.features`` that is followed by a normalization
    layer, the index (0-based, among the model's norm layers) of the first norm layer after it."""
    out, seen_norms = [], 0
    for m in model.features:
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            out.append(seen_norms)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            seen_norms += 1
    return [p for p in out if p < seen_norms]


def load_checkpoint(path, cfg="vgg19", norm: str | None = "batch", map_location="cpu") -> VGG:
    """Build torchvision's ImageNet VGG (default ``vgg19_bn``) and load a state dict saved by
    torchvision (e.g. ``vgg19_bn-c79401a0.pth`` from :data:`VGG19_BN_URL`) with ``strict=True``.

    A file without BatchNorm ``num_batches_tracked`` entries (written by torch before 0.4.1, as
    older torchvision weights are) is accepted, as torch's own strict load accepts it: the counters
    start at 0 (they only matter for a cumulative running average).

    Raises ``FileNotFoundError`` when ``path`` does not exist, and ``ValueError`` naming the missing,
    unexpected or mis-shaped keys when the file is not such a state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: download torchvision's vgg19_bn ImageNet weights "
                                f"({VGG19_BN_URL}) on a machine with internet and pass the file's path")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    num_classes = state["classifier.6.weight"].shape[0] if "classifier.6.weight" in state else 1000
    with torch.device("meta"):  # no memory and no random init for weights about to be replaced
        model = vgg(cfg, norm=norm, num_classes=num_classes, head="imagenet")
    expected = model.state_dict()
    state = dict(state)
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        show = lambda xs: ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "") or "none"
        raise ValueError(f"{path} does not match torchvision's {cfg}{'_bn' if norm == 'batch' else ''}: "
                         f"missing keys: {show(missing)}; unexpected keys: {show(unexpected)}; "
                         f"shape mismatches: {show(shapes)}")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
