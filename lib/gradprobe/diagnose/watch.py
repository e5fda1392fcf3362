"""Watching the weight layers during one forward and backward pass.

:func:`_watched_layers` chooses the layers (all weight layers, or the user's list; an
``nn.MultiheadAttention`` contributes its functional input projections and its ``out_proj``,
measured at the attention module's output). :class:`_Watch` hooks them for one repeat: each
call's output variance, norm and size, and, through a tensor hook on the output, the gradient's
variance and squared norm and, for convolutions, Bjorck et al.'s a (the weight-gradient
convolution of |input| and |output gradient|). In the first repeat it also records every leaf
module's input and output graph nodes (``spans``), so the graph analysis can recognize
normalizations, activations, pooling and dropout used as modules.

Var[t] (:func:`_feature_variance`) is the mean over features (a conv's channels, a linear
layer's outputs) of the per-feature variance over samples and positions, the statistic a
BatchNorm layer normalizes.
"""
from __future__ import annotations

import collections.abc
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .kinds import _act_of_module, _kind, _norm_of_module

_CONV_WEIGHT_GRAD = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight, 3: torch.nn.grad.conv3d_weight}


# --------------------------------------------------------------------------- statistics

def _feature_variance(t: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Var[t]: per feature (``channel_dim``), the biased variance over every other index, averaged
    over features; float32 or wider. NaN when a feature has a single sample."""
    t = t.detach()
    t = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    if t.dim() < 2:
        return torch.tensor(math.nan, device=t.device)
    flat = t.movedim(channel_dim, -1).reshape(-1, t.shape[channel_dim])
    if flat.shape[0] < 2:
        return torch.tensor(math.nan, device=t.device)
    return flat.var(dim=0, unbiased=False).mean()


def _channel_dim(kind: str, t: torch.Tensor) -> int:
    return 1 if kind.startswith("conv") and t.dim() >= 3 else -1


def _output_channel_dim(t: torch.Tensor) -> int:
    return 1 if t.dim() >= 4 else -1


# --------------------------------------------------------------------------- the watched layers

@dataclass
class _Layer:
    """One watched weight layer and what one repeat saw of it."""

    name: str
    kind: str
    module: nn.Module | None
    weight: torch.Tensor
    via_attention: nn.Module | None = None   # out_proj of this nn.MultiheadAttention (used functionally)
    observable: bool = True                  # False: no output to watch (attention's in_proj)
    companions: list = field(default_factory=list)   # the attention's unobservable projections
    calls: int = 0
    first_call: int = -1
    out_shape: tuple = ()
    in_shape: tuple = ()
    width_ratio: float = math.nan
    out_node: object = None
    in_node: object = None
    fwd_var: list = field(default_factory=list)
    out_norm: list = field(default_factory=list)
    out_numel: list = field(default_factory=list)
    grad_var: dict = field(default_factory=dict)    # call -> Var[g] (backward visits calls in reverse)
    grad_sq: dict = field(default_factory=dict)     # call -> Σ g²
    inputs: list = field(default_factory=list)
    bjorck_a: object = None

    def reset(self):
        self.calls, self.first_call = 0, -1
        self.fwd_var, self.out_norm, self.out_numel, self.inputs = [], [], [], []
        self.grad_var, self.grad_sq = {}, {}
        self.bjorck_a = None


def _watched_layers(model: nn.Module, layers) -> list[_Layer]:
    names = {}
    for name, m in model.named_modules():
        names.setdefault(m, name or type(model).__name__)
    attention = {m.out_proj: m for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    if layers is None:
        chosen = [m for m in model.modules() if _kind(m) is not None or isinstance(m, nn.MultiheadAttention)]
    else:
        if isinstance(layers, (nn.Module, str)) or not isinstance(layers, collections.abc.Iterable):
            raise ValueError("layers must be a list of modules of the model or of their names, "
                             f"got {type(layers).__name__}")
        by_name = dict(model.named_modules())
        chosen = []
        for item in layers:
            m = by_name.get(item) if isinstance(item, str) else item
            if m is None or m not in names:
                raise ValueError(f"layers: {item!r} is not a submodule of the model")
            if _kind(m) is None and not isinstance(m, nn.MultiheadAttention) and m not in attention:
                raise ValueError(f"layers: {names[m]} is a {type(m).__name__}, not a weight layer "
                                 "(Linear, Conv, Conv1D, Embedding, MultiheadAttention)")
            chosen.append(m)
    out, seen = [], set()
    for m in chosen:
        if m in seen:
            continue
        seen.add(m)
        if isinstance(m, nn.MultiheadAttention):
            if m.in_proj_weight is not None:
                out.append(_Layer(f"{names[m]}.in_proj", "attention in_proj", None, m.in_proj_weight,
                                  via_attention=m, observable=False))
            else:
                for p in ("q", "k", "v"):
                    out.append(_Layer(f"{names[m]}.{p}_proj", f"attention {p}_proj", None,
                                      getattr(m, f"{p}_proj_weight"), via_attention=m, observable=False))
            seen.add(m.out_proj)
            out.append(_Layer(names[m.out_proj], "attention out_proj", m.out_proj, m.out_proj.weight, via_attention=m,
                              companions=[l for l in out if l.via_attention is m and not l.observable]))
        elif m in attention:
            if attention[m] not in seen:
                seen.add(attention[m])
                out.append(_Layer(names[m], "attention out_proj", m, m.weight, via_attention=attention[m]))
        else:
            out.append(_Layer(names[m], _kind(m), m, m.weight))
    if not out:
        raise ValueError(f"{type(model).__name__} has no weight layer to diagnose (Linear, Conv, Conv1D, Embedding, "
                         "MultiheadAttention)")
    return out


class _Watch:
    """Hooks for one repeat: weight layers' outputs, inputs and output gradients; in the first
    repeat also every leaf module's input and output graph nodes (to find norms and activations)."""

    def __init__(self, layers: list[_Layer], model: nn.Module):
        self.layers, self.model = layers, model
        self.order = 0
        self.spans = {}   # output node -> (module, input node) of leaf modules
        self._pending = {}
        self.handles = []

    def __enter__(self):
        for layer in self.layers:
            if not layer.observable:
                continue
            if layer.via_attention is not None:
                self.handles.append(layer.via_attention.register_forward_pre_hook(self._pre(layer), with_kwargs=True))
                self.handles.append(layer.via_attention.register_forward_hook(self._seen(layer, attention=True)))
            else:
                self.handles.append(layer.module.register_forward_pre_hook(self._pre(layer), with_kwargs=True))
                self.handles.append(layer.module.register_forward_hook(self._seen(layer)))
        watched = {l.module for l in self.layers} | {l.via_attention for l in self.layers}
        for m in self.model.modules():
            if m in watched or any(True for _ in m.children()):
                continue
            if _norm_of_module(m) is None and _act_of_module(m) is None and not isinstance(
                    m, (nn.Dropout, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                        nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
                continue
            self.handles.append(m.register_forward_pre_hook(self._span_pre(m), with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._span(m)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []

    @staticmethod
    def _first_tensor(args, kwargs, key=None):
        if args and isinstance(args[0], torch.Tensor):
            return args[0]
        if key is not None and isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
        for v in kwargs.values():
            if isinstance(v, torch.Tensor):
                return v
        return None

    def _pre(self, layer):
        def hook(module, args, kwargs):
            x = self._first_tensor(args, kwargs, "query" if layer.via_attention is not None else "input")
            self._pending[id(layer)] = x
            if layer.calls == 0 and x is not None:
                layer.in_node = x.grad_fn
        return hook

    def _seen(self, layer, attention: bool = False):
        def hook(module, args, output):
            x = self._pending.pop(id(layer), None)
            h = output[0] if attention else output
            if not isinstance(h, torch.Tensor):
                return
            for other in layer.companions:      # an attention's in_proj: used in this call, before out_proj
                other.calls += 1
                if other.first_call < 0:
                    other.first_call, self.order = self.order, self.order + 1
            layer.calls += 1
            if layer.first_call < 0:
                layer.first_call = self.order
                self.order += 1
                layer.out_node = h.grad_fn
                batched = lambda t: tuple(t.shape[1:]) if t.dim() > 1 else tuple(t.shape)
                layer.out_shape = batched(h)
                if x is not None:
                    layer.in_shape = batched(x)
                    n_in = x[0].numel() if x.dim() > 1 else x.numel()
                    n_out = h[0].numel() if h.dim() > 1 else h.numel()
                    layer.width_ratio = n_out / n_in if layer.kind != "embedding" and n_in else math.nan
            cdim = _channel_dim(layer.kind, h)
            layer.fwd_var.append(_feature_variance(h, cdim))
            layer.out_norm.append(h.detach().float().norm())
            layer.out_numel.append(h.numel())
            keep_input = layer.kind.startswith("conv") and x is not None
            if keep_input:
                layer.inputs.append(x.detach())
            if h.requires_grad:
                call = len(layer.fwd_var) - 1
                h.register_hook(lambda g, layer=layer, call=call, cdim=cdim: self._grad(layer, call, cdim, g))
        return hook

    @staticmethod
    def _grad(layer, call, cdim, g):
        layer.grad_var[call] = _feature_variance(g, cdim)
        layer.grad_sq[call] = g.detach().float().pow(2).sum()
        if layer.kind.startswith("conv") and call < len(layer.inputs):
            m = layer.module
            x = layer.inputs[call].abs()
            padding = m.padding
            if isinstance(padding, str) or m.padding_mode != "zeros":
                mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
                x = F.pad(x, m._reversed_padding_repeated_twice, mode=mode)
                padding = 0
            a = _CONV_WEIGHT_GRAD[len(m.kernel_size)](x, m.weight.shape, g.detach().abs().to(x.dtype), stride=m.stride,
                                                      padding=padding, dilation=m.dilation, groups=m.groups)
            layer.bjorck_a = a if layer.bjorck_a is None else layer.bjorck_a + a
            layer.inputs[call] = None

    def _span_pre(self, m):
        def hook(module, args, kwargs):
            x = self._first_tensor(args, kwargs)
            self._pending[id(m)] = x.grad_fn if x is not None else None
        return hook

    def _span(self, m):
        def hook(module, args, output):
            in_node = self._pending.pop(id(m), None)
            if isinstance(output, torch.Tensor) and output.grad_fn is not None and output.grad_fn is not in_node:
                self.spans.setdefault(output.grad_fn, (m, in_node))
        return hook
