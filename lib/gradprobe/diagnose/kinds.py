"""What the diagnosis recognizes in a model: weight layers, normalizations and activations.

A *weight layer* is a Linear, a Conv1d/2d/3d (not transposed), Hugging Face's ``Conv1D`` (GPT-2)
or an Embedding; :func:`_kind` names it. Between two weight layers the diagnosis looks for a
normalization (:func:`_norm_of_module`: BatchNorm, LayerNorm, GroupNorm, RMSNorm, InstanceNorm)
and an activation (:func:`_act_of_module`: a name the theory knows, or the module itself for one
it must integrate), either as modules or, when used functionally, as autograd nodes
(``_ACT_NODES``, ``_NORM_NODES``); pooling nodes (``_POOL_NODES``) end a run of layers.
"""
from __future__ import annotations

import re

import torch
from torch import nn


def _is_hf_conv1d(m: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2): a linear layer whose weight is stored [n_in, n_out]."""
    return type(m).__name__ == "Conv1D" and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 2


def _kind(m: nn.Module) -> str | None:
    """The kind of weight layer ``m`` is, or None."""
    if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
        return f"conv{len(m.kernel_size)}d"
    if isinstance(m, nn.Linear):
        return "linear"
    if _is_hf_conv1d(m):
        return "linear (Conv1D)"
    if isinstance(m, nn.Embedding):
        return "embedding"
    return None


# --------------------------------------------------------------------------- normalizations and activations

_ACT_NODES = {"ReluBackward0": "relu", "ThresholdBackward0": "relu", "GeluBackward0": "gelu",
              "TanhBackward0": "tanh", "SiluBackward0": "silu", "EluBackward0": "elu",
              "LeakyReluBackward0": "leaky_relu", "SoftplusBackward0": "softplus", "MishBackward0": "mish",
              "SigmoidBackward0": "sigmoid"}
_NORM_NODES = (("BatchNorm", "batch"), ("LayerNorm", "layer"), ("GroupNorm", "group"))
_POOL_NODES = ("Pool", "MeanBackward", "UpsampleBackward")
_PRETTY = {"relu": "ReLU", "gelu": "GELU", "tanh": "tanh", "silu": "SiLU", "elu": "ELU", "selu": "SELU",
           "leaky_relu": "LeakyReLU", "softplus": "softplus", "mish": "Mish", "sigmoid": "sigmoid",
           "identity": "linear"}
_NORM_PRETTY = {"batch": "BN", "layer": "LN", "group": "GN", "rms": "RMSNorm", "instance": "IN"}


def _norm_of_module(m: nn.Module) -> str | None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batch"
    if isinstance(m, nn.modules.instancenorm._InstanceNorm):
        return "instance"
    if isinstance(m, nn.GroupNorm):
        return "layer" if m.num_groups == 1 else "group"
    if isinstance(m, nn.LayerNorm):
        return "layer"
    name = type(m).__name__.lower()
    for key, kind in (("rmsnorm", "rms"), ("layernorm", "layer"), ("batchnorm", "batch"), ("groupnorm", "group")):
        if key in name:
            return kind
    return None


def _act_of_module(m: nn.Module):
    """A name of :data:`gradprobe.networks.layers.ACTIVATIONS` (or 'sigmoid'), the module itself
    (a callable the theory integrates) for other activations, or None for a non-activation."""
    from ..networks.layers import Elementwise

    if isinstance(m, Elementwise):
        return m.name
    simple = {nn.ReLU: "relu", nn.GELU: "gelu", nn.Tanh: "tanh", nn.SiLU: "silu", nn.SELU: "selu", nn.Mish: "mish",
              nn.Sigmoid: "sigmoid"}
    for cls, name in simple.items():
        if type(m) is cls:
            return name
    if type(m) is nn.ELU and m.alpha == 1.0:
        return "elu"
    if type(m) is nn.LeakyReLU and m.negative_slope == 0.01:
        return "leaky_relu"
    if type(m) is nn.Softplus and m.beta == 1 and m.threshold == 20:
        return "softplus"
    name = type(m).__name__
    if isinstance(m, (nn.ELU, nn.LeakyReLU, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.PReLU)):
        return m
    if re.search(r"gelu", name, re.I) and not re.search(r"quick", name, re.I):
        return "gelu"  # Hugging Face's GELU variants (tanh approximations): the theory's exact GELU
    if re.search(r"activation|relu|silu|swish|gelu|tanh|sigmoid|mish|softplus", name, re.I) and \
            not any(True for _ in m.parameters()):
        return m
    return None


def _act_label(act) -> str:
    if act is None:
        return "linear"
    if isinstance(act, str):
        return _PRETTY.get(act, act)
    return type(act).__name__


def _act_callable(act):
    """The activation as the theory takes it: a name, or a float64 callable."""
    if act == "sigmoid":
        return torch.sigmoid
    return act


def _pair_label(norm, act, norm_last: bool = False) -> str:
    """"BN–ReLU" for φ(BN(h)), "ReLU–BN" for BN(φ(h)) (``norm_last``), "ReLU", "BN" or "linear"."""
    parts = ([_NORM_PRETTY.get(norm, str(norm))] if norm else []) + ([_act_label(act)] if act is not None else [])
    return "–".join(reversed(parts) if norm_last else parts) if parts else "linear"
