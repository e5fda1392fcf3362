"""Diagnose your own network: one call, any PyTorch model, the four papers' measures side by side.

    >>> from gradprobe.diagnose import diagnose
    >>> d = diagnose(model, torch.randn(32, 3, 224, 224))
    >>> print(d.verdict)       # "the gradient grows ×1.21 per BN–ReLU layer toward the input, ..."
    >>> d.to_frame()           # one row per weight layer, input to output
    >>> d.plot(); d.save("resnet.json")

or from a shell: ``python -m gradprobe.diagnose package.module:factory --input-shape 8,3,224,224``.

What is measured, per weight layer k (Linear, Conv1d/2d/3d, Hugging Face's ``Conv1D``, the
projections of ``nn.MultiheadAttention``, embeddings), with h_k its output, g_k = ∂ℓ/∂h_k and f the
model's output; Var[t] is the mean over features (a conv's channels, a linear layer's outputs) of
the per-feature variance over the samples and positions (batch, pixels, tokens), the statistic a
BatchNorm layer normalizes (for a [batch, features] tensor it is
:func:`gradprobe.measure.stats.variance`):

- ``weight_grad_norm``  ‖∂ℓ/∂W_k‖_F, the total over every use of the weight;
- ``grad_variance``     Var[g_k] (Paik & Choi 2023 fit their rate to it);
- ``forward_variance``  Var[h_k];
- ``R_f``, ``R_b``      the forward and backward scaling ratios (ghost 2024, Definition B.1) of the
  operator h_k ↦ f, the rest of the network: R_f = Var[f]/Var[h_k], R_b = Var[∂ℓ/∂h_k]/Var[∂ℓ/∂f];
- ``gsc``               the gradient scale coefficient GSC(k, ·) of Philipp et al. (2018, Def. 1):
  ‖J‖_qm ‖h_k‖/‖f‖ with ‖J‖²_qm = ‖Jᵀu‖²/numel(h_k) for the loss's own output gradient u. With
  the default loss (below) u is Gaussian and this is the one-probe estimate of GSC(k, output) of
  :func:`gradprobe.measure.gsc.gsc_profile`; with a scalar loss of yours it is GSC(k, 0) exactly,
  with |ℓ| in place of ‖f‖. Since Var[u] = Var[∂ℓ/∂f], GSC² ≈ (R_b/R_f)·numel(h_k)/numel(f);
- ``bjorck_a``, ``bjorck_b``  for convolutions, Table 1 of Bjorck et al. (2018), Eq. (4): the mean
  over kernel entries of Σ|d| (a) and of |Σ d| = |∂ℓ/∂K| (b), d the per-position summands of the
  kernel gradient (:func:`gradprobe.measure.kernels.gradient_sums`); a/b ≫ 1: the summands cancel;
- ``pair_ratio``, ``pair_predicted``  where the next weight layer j is fed by this one (i) through
  a normalization and/or an activation only: Var[g_i]/Var[g_j] divided by the pair's gain ratio
  B_j/A_i (below), measured and predicted.

The **explosion rate** (Paik & Choi 2023) is the growth of Var[g] per layer toward the input,
fitted on log Var[g] by :func:`gradprobe.measure.rates.fit_rate` (one slope, one intercept per run
of layers). Two fits are made:

- **per layer**: on the runs of layers each fed by the previous one through ``norm → activation``
  (or one of them) only: no pooling, no residual addition, no dropout; after a normalization the
  first layer of the pair must itself be fed by φ(norm(·)), so that its input has variance Var[φ].
  Theory (:mod:`gradprobe.theory.gaussian`) predicts a pair's ratio from what it finds between the
  layers: after BatchNorm r(φ)·B_j/A_i with r(φ) = E[φ'(z)²]/Var[φ(z)] (π/(π−1) ≈ 1.467 for ReLU,
  :func:`~gradprobe.theory.gaussian.explosion_rate`), after LayerNorm E[φ'²]/E[φ²]·B_j/A_i
  (:func:`~gradprobe.theory.gaussian.predicted_rate`), without normalization B_j·E[φ'(z)²] for
  z ~ N(0, Var[h_i]). A = fan_in·E[W²] and B = (outputs per input)·E[W²] are a layer's forward and
  backward gains (Var[h] = A·Var[x], Var[∂ℓ/∂x] = B·Var[∂ℓ/∂h]); B_j/A_i is Paik & Choi's width
  factor n_out/n_in for He's fan-in initialization, and what it becomes for any other (torchvision
  initializes with fan-out). Values are divided by these gain ratios before the fit, so widths may
  change along a run, and the rate is compared with r(φ) itself; where the pairs differ the
  prediction is their geometric mean.
- **per effective depth**: a residual network's gradient travels along its residual stream, the
  running sum to which each residual branch adds its output. Here the *effective depth* of a point
  is the number of residual branches between it and the output: one unit per addition of a branch
  into the stream, whatever the branch's own depth (a ResNet bottleneck, a transformer's attention
  or MLP sublayer: one each). The rate per effective depth is the growth per branch, toward the
  input, of Var[∂ℓ/∂s] with s the stream just after each addition (read by a hook on the addition's
  autograd node), fitted per chain of additions that follow each other (a stage of a ResNet, whose
  projection shortcut starts a new chain; the whole stack of a transformer). Additions are found in
  the autograd graph: an ``add`` whose two operands come from disjoint, non-empty sets of weight
  layers (or the input data), reached without passing another weight layer. The *residual stream's
  layers* (``stream`` in the table) are the last weight layers of the branches and the projection
  shortcuts. A plain network has no such additions: its effective depth is its depth and its rate
  per effective depth is its rate per layer. No closed form is predicted per branch.

**Repeats.** The weights are the user's network, so they are never re-drawn. Each repeat draws a
fresh random output gradient (default loss), fresh dropout masks and, when ``inputs`` is a callable
or an iterator, fresh inputs; the per-layer numbers are means over repeats, the rates' uncertainty
is the standard error of the per-repeat fits (NaN for one repeat).

**Cost.** One forward and one backward pass per repeat (plus, for convolutions, one weight-gradient
convolution of |input| and |output gradient| for Bjorck's a), and a single walk of the autograd
graph; ``benchmarks/bench_diagnose.py`` reports the ratio to a plain forward–backward pass.

**The model is left as it was**: parameters, buffers (BatchNorm's running statistics and
``num_batches_tracked``), every submodule's train/eval mode, ``requires_grad`` and ``.grad`` of
every parameter; no hook stays; torch's global random state is restored (dropout draws come from
``generator``).
"""
from __future__ import annotations

import argparse
import collections.abc
import contextlib
import dataclasses
import html
import importlib
import json
import math
import re
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checks import positive_int
from .measure.hooks import preserved_state
from .measure.rates import fit_rate
from .theory.gaussian import explosion_rate, gaussian_expectation, predicted_rate

__all__ = ["diagnose", "Diagnosis", "main"]

# --------------------------------------------------------------------------- what a layer is

_CONV_WEIGHT_GRAD = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight, 3: torch.nn.grad.conv3d_weight}


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
    from .networks.layers import Elementwise

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


def _pair_label(norm, act) -> str:
    parts = ([_NORM_PRETTY.get(norm, str(norm))] if norm else []) + ([_act_label(act)] if act is not None else [])
    return "–".join(parts) if parts else "linear"


def _mean_derivative_sq(act, std: float) -> float:
    """E[φ'(z)²] for z ~ N(0, std²) (the theory's quadrature)."""
    from .networks.layers import activation_fn

    if act is None or act == "identity":
        return 1.0
    fn = _act_callable(act)
    fn = activation_fn(fn) if isinstance(fn, str) else fn

    def dphi_sq(x: float) -> float:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            y = fn(t)
            if not (isinstance(y, torch.Tensor) and y.requires_grad):
                return 0.0
            (g,) = torch.autograd.grad(y, t)
        return float(g) ** 2

    return gaussian_expectation(dphi_sq, 0.0, std) if std > 0 else math.nan


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


# --------------------------------------------------------------------------- inputs, outputs and the loss

def _map_tensors(obj, fn):
    """``fn`` applied to every tensor in nested tuples, lists and mappings (as dicts and lists)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, collections.abc.Mapping):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_map_tensors(v, fn) for v in obj)
    if isinstance(obj, list):
        return [_map_tensors(v, fn) for v in obj]
    return obj


def _call(model: nn.Module, inputs):
    """Call the model as the inputs say: a tensor is one positional argument, a tuple or list the
    positional arguments, a mapping the keyword arguments."""
    if isinstance(inputs, collections.abc.Mapping):
        return model(**dict(inputs))
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _primary(output, path: str = "output"):
    """The first floating-point tensor of more than one element in ``output`` (a tensor, a tuple
    or list, a mapping, a dataclass such as Hugging Face's ``ModelOutput``) and where it sits."""
    if isinstance(output, torch.Tensor):
        if output.is_floating_point() and output.numel() > 1:
            return output, path
        return None, None
    if isinstance(output, collections.abc.Mapping):
        items = [(f"{path}[{k!r}]", v) for k, v in output.items()]
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = [(f"{path}.{f.name}", getattr(output, f.name)) for f in dataclasses.fields(output)]
    elif isinstance(output, (tuple, list)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(output)]
    else:
        return None, None
    for where, value in items:
        found, at = _primary(value, where)
        if found is not None:
            return found, at
    return None, None


def _default_target_loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for integer targets (classes on the last dimension when the targets have the
    output's shape without it, else on dimension 1), mean squared error for targets of the output's
    shape."""
    if targets.is_floating_point():
        if targets.shape != out.shape:
            raise ValueError(f"float targets must have the output's shape {tuple(out.shape)}, got {tuple(targets.shape)}")
        return F.mse_loss(out, targets)
    if targets.shape == out.shape[:-1]:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), targets.reshape(-1))
    if out.dim() >= 2 and targets.shape == (out.shape[0],) + out.shape[2:]:
        return F.cross_entropy(out.float(), targets)
    raise ValueError(f"integer targets {tuple(targets.shape)} do not fit the output {tuple(out.shape)}: give class "
                     "labels of the output's shape without its class dimension (last, or dimension 1)")


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


# --------------------------------------------------------------------------- the autograd graph

def _analyze_graph(stops: dict, roots) -> tuple[dict, dict]:
    """Walk the autograd graph backward from ``roots`` without passing a weight layer's output
    (``stops``: node -> layer index). Returns, per node, the set of weight layers reached
    (``preds``), and, per residual addition (an ``AddBackward`` whose operands reach disjoint,
    non-empty sets of layers), the nearest additions below it (``merges``, every addition listed
    after those below it)."""
    preds, near, merges = {}, {}, {}
    empty = frozenset()
    for root in roots:
        if root is None or root in preds:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in preds:
                continue
            if node in stops:
                preds[node], near[node] = frozenset([stops[node]]), empty
                continue
            kids = [n for n, _ in node.next_functions if n is not None]
            if not expanded:
                stack.append((node, True))
                stack.extend((k, False) for k in kids if k not in preds)
                continue
            sets = [preds[k] for k in kids]
            below = empty.union(*(near[k] for k in kids))
            nonempty = [s for s in sets if s]
            residual = (node.name().startswith("AddBackward") and len(nonempty) >= 2
                        and all(a.isdisjoint(b) for i, a in enumerate(nonempty) for b in nonempty[i + 1:]))
            if residual:
                merges[node] = below
                near[node] = frozenset([node])
            else:
                near[node] = below
            preds[node] = empty.union(*sets)
    return preds, merges


def _path_events(start, source: int | None, preds: dict, spans: dict, stops: dict, merges: dict,
                 most: int = 8) -> list:
    """What lies on the way back from a weight layer's input node ``start`` toward the weight layer
    ``source`` (``None``: toward any), nearest first, at most ``most`` events: ('norm', kind),
    ('act', activation), ('pool', what), ('dropout', p), ('add', None) for a residual addition
    (not passed). Modules seen by hooks are taken whole (their inner operations skipped)."""
    events, frontier, seen = [], collections.deque([start]), set()
    while frontier and len(events) < most:
        node = frontier.popleft()
        if node is None or node in seen or node in stops:
            continue
        seen.add(node)
        if node in merges:
            events.append(("add", None))
            continue
        if node in spans:
            m, in_node = spans[node]
            norm, act = _norm_of_module(m), _act_of_module(m)
            if norm:
                events.append(("norm", norm))
            elif act is not None:
                events.append(("act", act))
            elif isinstance(m, nn.Dropout):
                if m.p > 0 and m.training:
                    events.append(("dropout", m.p))
            else:
                events.append(("pool", type(m).__name__))
            frontier.append(in_node)
            continue
        name = node.name()
        if name in _ACT_NODES:
            events.append(("act", _ACT_NODES[name]))
        elif any(key in name for key, _ in _NORM_NODES):
            events.append(("norm", next(kind for key, kind in _NORM_NODES if key in name)))
        elif any(key in name for key in _POOL_NODES):
            events.append(("pool", name))
        elif "Dropout" in name:
            events.append(("dropout", None))
        for k, _ in node.next_functions:
            reach = preds.get(k, ()) if k is not None else ()
            if reach and (source is None or source in reach):
                frontier.append(k)
    return events


@dataclass
class _Links:
    """Per layer j fed by exactly one weight layer i through a normalization and/or an activation
    only: ``link[j] = (i, norm, act)``; ``normalized`` the layers whose input is φ(norm(·))."""

    link: dict
    normalized: dict      # layer -> norm kind of its input φ(norm(·))


def _links(layers: list[_Layer], spans: dict, preds: dict, stops: dict, merges: dict) -> _Links:
    link, normalized = {}, {}
    for j, layer in enumerate(layers):
        start = layer.in_node
        if layer.calls != 1 or start is None or layer.kind == "embedding":
            continue
        source = preds.get(start, frozenset())
        if not source:
            continue
        events = [e for e in _path_events(start, None, preds, spans, stops, merges, most=3) if e[0] != "dropout"]
        if len(events) >= 2 and events[0][0] == "act" and events[1][0] == "norm":
            normalized[j] = events[1][1]
        if len(source) != 1:
            continue
        (i,) = source
        if i >= len(layers) or layers[i].kind == "embedding" or layers[i].calls != 1:   # fed by the data
            continue
        events = _path_events(start, i, preds, spans, stops, merges)
        kinds = [e[0] for e in events]
        if any(k in ("pool", "add", "dropout") for k in kinds) or kinds.count("act") > 1 or kinds.count("norm") > 1:
            continue
        if kinds not in (["act"], ["norm"], ["act", "norm"]):   # nearest first: φ(norm(h_i)), φ(h_i), norm(h_i)
            continue
        act = next((e[1] for e in events if e[0] == "act"), None)
        norm = next((e[1] for e in events if e[0] == "norm"), None)
        link[j] = (i, norm, act)
    return _Links(link, normalized)


@dataclass
class _Stream:
    """The residual additions of one forward pass, input to output: for each, its effective depth
    (0, 1, …: branches added before it along its chain), its chain (segment) and the weight layers
    it brings into the stream."""

    nodes: list
    depth: list
    segment: list
    writes: list


def _stream(preds: dict, merges: dict, embedding: set) -> _Stream:
    level, segment, out = {}, {}, _Stream([], [], [], [])
    for node, below in merges.items():      # every addition comes after those below it
        new = preds[node].difference(*(preds[b] for b in below)) if below else preds[node]
        counts = bool(new - embedding)      # embeddings summed (token + position) are no branch
        base = max(below, key=lambda b: level[b]) if below else None
        level[node] = (level[base] if base is not None else -1) + (1 if counts else 0)
        segment[node] = segment[base] if base is not None else len(segment)
        if counts:
            out.nodes.append(node)
            out.depth.append(level[node])
            out.segment.append(segment[node])
            out.writes.append(sorted(new - embedding))
    first = {}
    out.segment = [first.setdefault(seg, len(first)) for seg in out.segment]
    return out


def _gains(layer: _Layer) -> tuple[float, float]:
    """(A, B): the forward gain A = mean over outputs of Σ W² over the inputs each sees, and the
    backward gain B = mean over inputs of Σ W² over the outputs each feeds, so that
    Var[h] = A·Var[x] forward and Var[∂ℓ/∂x] = B·Var[∂ℓ/∂h] backward for independent entries. For a
    convolution the connections are counted on the padded input (padding counts as image: its
    small border loss is not modeled), so B = A·C_out/(C_in·stride²). With W ~ N(0, 2/fan_in) (He):
    A = 2 and B = 2·n_out/n_in, Paik & Choi's width factor."""
    w = layer.weight.detach().double()
    w2 = float(w.pow(2).mean())
    if layer.kind == "linear (Conv1D)":
        n_in, n_out = w.shape
        return n_in * w2, n_out * w2
    if not layer.kind.startswith("conv"):
        n_out, n_in = w.shape[0], w[0].numel()
        return n_in * w2, n_out * w2
    m = layer.module
    if len(layer.in_shape) != len(m.kernel_size) + 1:
        return math.nan, math.nan
    spatial = layer.in_shape[1:]
    ones = torch.ones((1, 1) + tuple(spatial), dtype=torch.float64)
    kernel = torch.ones((1, 1) + tuple(m.kernel_size), dtype=torch.float64)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(m.kernel_size)]
    ones = F.pad(ones, m._reversed_padding_repeated_twice, value=1.0)
    valid = conv(ones, kernel, stride=m.stride, dilation=m.dilation)
    pairs = float(valid.sum())                    # (output position, kernel position) pairs
    per_output = pairs / valid.numel()
    per_input = pairs / math.prod(spatial)
    c_in_group, c_out_group = m.in_channels // m.groups, m.out_channels // m.groups
    return c_in_group * per_output * w2, c_out_group * per_input * w2


def _pair_prediction(norm, act, gain_ratio: float, backward_gain: float, forward_variance: float) -> float:
    """The predicted Var[g_i]/Var[g_j] for layer j fed by layer i through ``norm`` and ``act``
    (see the module docstring): r·B_j/A_i after BatchNorm, E[φ'²]/E[φ²]·B_j/A_i after LayerNorm,
    B_j·E[φ'(h_i)²] without normalization."""
    act_theory = _act_callable(act) if act is not None else "identity"
    try:
        if norm == "batch":
            return explosion_rate(act_theory) * gain_ratio
        if norm == "layer":
            return predicted_rate(act_theory, "layer") * gain_ratio
        if norm is None:
            return backward_gain * _mean_derivative_sq(act, math.sqrt(forward_variance))
    except (ValueError, ZeroDivisionError):
        return math.nan
    return math.nan


# --------------------------------------------------------------------------- the result

_NUMBER_COLUMNS = ("weight_grad_norm", "grad_variance", "forward_variance", "R_f", "R_b", "gsc", "bjorck_a",
                   "bjorck_b", "width_ratio", "pair_ratio", "pair_predicted")


def _fmt_growth(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if x >= 100 or x < 0.01:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{x:.3g}"


@dataclass
class Diagnosis:
    """The result of :func:`diagnose`. ``layers``: one dict per weight layer, input to output (see
    :meth:`to_frame` for the columns and the module docstring for their definitions).

    Rates are growths of the gradient *variance* toward the input, per layer or per effective depth
    (their square roots, the growth of the gradient's norm, are what the verdict quotes):
    ``rate_per_layer`` ± ``rate_per_layer_se`` (standard error over repeats) beside
    ``predicted_per_layer`` for the normalization–activation pairs ``kinds``; ``rate_per_depth`` ±
    ``rate_per_depth_se`` per residual branch along the residual stream (``effective_depth``
    branches; for a plain network the same as per layer, and ``predicted_per_depth`` then too);
    ``stream``: one dict per residual addition, input to output: its effective depth, its chain
    (``segment``), Var of the stream's gradient just after it, and the last layer of its branch;
    ``overall_growth``: the gradient norm's growth from the last to the first layer of the fit.
    """

    model: str
    loss: str
    repeats: int
    train: bool
    device: str
    layers: list
    stream: list
    rate_per_layer: float
    rate_per_layer_se: float
    predicted_per_layer: float
    layers_in_fit: int
    rate_per_depth: float
    rate_per_depth_se: float
    predicted_per_depth: float
    effective_depth: int
    residual: bool
    overall_growth: float
    kinds: str
    unused: list
    functional: list
    shared: list
    notes: list
    verdict: str = ""

    # ----------------------------------------------------------------- views
    def to_frame(self):
        """One row per weight layer, input to output: name, kind, calls, the quantities of the module
        docstring, and ``stream`` (a residual-stream layer), ``effective_depth`` (its branch count),
        ``in_fit`` (used by the per-layer fit), ``between`` (the norm–activation to the next layer)."""
        import pandas as pd

        return pd.DataFrame(self.layers).set_index("index")

    def summary(self) -> dict:
        """The headline numbers as a dict (the per-layer table left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "layers"}

    def report(self) -> str:
        """A plain-text report: the verdict, the rates side by side, notes, and the per-layer table."""
        lines = [f"gradprobe diagnosis of {self.model} ({self.device}, {'training' if self.train else 'as-is'} mode, "
                 f"{self.repeats} repeat{'s' if self.repeats != 1 else ''})", "", self.verdict, "",
                 f"loss: {self.loss}",
                 f"rate per layer (Var[g], toward the input): measured {self._pm(self.rate_per_layer, self.rate_per_layer_se)}"
                 f" on {self.layers_in_fit} layers, predicted {self.predicted_per_layer:.4g} ({self.kinds or 'none found'})",
                 f"rate per effective depth: measured {self._pm(self.rate_per_depth, self.rate_per_depth_se)}, "
                 f"predicted {self.predicted_per_depth:.4g}; effective depth {self.effective_depth}"
                 f"{' residual branches' if self.residual else ' (plain network: its depth)'}"]
        for title, items in (("never called", self.unused), ("used functionally (weight-gradient norm only)",
                                                             self.functional), ("called several times", self.shared)):
            if items:
                lines.append(f"{title}: {', '.join(items)}")
        lines += [f"note: {n}" for n in self.notes]
        frame = self.to_frame()
        cols = ["name", "kind", "calls", "weight_grad_norm", "grad_variance", "forward_variance", "R_f", "R_b", "gsc",
                "bjorck_a", "bjorck_b", "stream", "between"]
        with _pandas_options():
            lines += ["", frame[cols].to_string(float_format=lambda v: f"{v:.3g}")]
        return "\n".join(lines)

    __str__ = report

    @staticmethod
    def _pm(value, se) -> str:
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.4g}" + (f" ± {se:.2g}" if math.isfinite(se) else "")

    def _repr_html_(self) -> str:
        frame = self.to_frame()
        head = (f"<p><b>{html.escape(self.model)}</b>: {html.escape(self.verdict)}</p>"
                f"<table><tr><th></th><th>measured</th><th>predicted</th></tr>"
                f"<tr><td>rate per layer (Var[g])</td><td>{html.escape(self._pm(self.rate_per_layer, self.rate_per_layer_se))}"
                f"</td><td>{self.predicted_per_layer:.4g} ({html.escape(self.kinds or 'none')})</td></tr>"
                f"<tr><td>rate per effective depth</td><td>{html.escape(self._pm(self.rate_per_depth, self.rate_per_depth_se))}"
                f"</td><td>{self.predicted_per_depth:.4g}</td></tr>"
                f"<tr><td>effective depth</td><td colspan=2>{self.effective_depth}</td></tr></table>"
                f"<p>loss: {html.escape(self.loss)}</p>")
        notes = "".join(f"<p>note: {html.escape(n)}</p>" for n in self.notes)
        with _pandas_options():
            table = frame.to_html(float_format=lambda v: f"{v:.3g}", max_rows=60)
        return head + notes + table

    # ----------------------------------------------------------------- figure
    def plot(self, fig=None):
        """The four papers' measures per layer (layer index on x, input to output), in the book's
        style: Var[∂ℓ/∂h_k] with the fitted and predicted rates (Paik & Choi), GSC (Philipp et al.),
        R_f and R_b (ghost 2024), ‖∂ℓ/∂W_k‖ and a/b for convolutions (Bjorck et al.). Returns the figure."""
        import matplotlib.pyplot as plt

        from .book.plots import OURS, THEORY

        frame = self.to_frame()
        k = frame.index.to_numpy()
        if fig is None:
            fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
        else:
            axes = np.array(fig.subplots(2, 2, sharex=True))
        a, b, c, d = axes.ravel()
        a.plot(k, frame["grad_variance"], label="all weight layers", **OURS)
        fit = frame[frame["in_fit"]]
        if len(fit):
            a.plot(fit.index, fit["grad_variance"], "s", color="tab:green", markersize=5,
                   label=f"per-layer fit: ×{math.sqrt(self.rate_per_layer):.3g} (norm) per layer")
        if self.residual and self.stream:
            a.plot([s["after_index"] for s in self.stream], [s["grad_variance"] for s in self.stream], "D-",
                   color="tab:purple", markersize=4, linewidth=1,
                   label=f"residual stream after each branch: ×{math.sqrt(self.rate_per_depth):.3g} per branch")
        if math.isfinite(self.predicted_per_layer) and len(fit):
            last = fit.index.max()
            xs = np.array(sorted(fit.index))
            a.plot(xs, fit.loc[last, "grad_variance"] * self.predicted_per_layer ** (last - xs),
                   label=f"theory r = {self.predicted_per_layer:.3g} ({self.kinds})", **THEORY)
        a.set(yscale="log", ylabel="Var[∂ℓ/∂h_k] (per unit of h, squared)", title="gradient variance (Paik & Choi)")
        a.legend()
        b.plot(k, frame["gsc"], **OURS)
        b.set(yscale="log", ylabel="GSC(k, output) (dimensionless)", title="gradient scale coefficient (Philipp et al.)")
        c.plot(k, frame["R_b"], label="R_b = Var[∂ℓ/∂h_k]/Var[∂ℓ/∂f]", **OURS)
        c.plot(k, frame["R_f"], label="R_f = Var[f]/Var[h_k]", **OURS)
        c.set(yscale="log", ylabel="scaling ratio, layer k → output (dimensionless)",
              title="forward and backward scaling ratios (ghost 2024)")
        c.legend()
        d.plot(k, frame["weight_grad_norm"], label="‖∂ℓ/∂W_k‖_F", **OURS)
        d.set(yscale="log", ylabel="‖∂ℓ/∂W_k‖_F (loss per unit weight)", title="weight gradients (Bjorck et al.)")
        convs = frame[np.isfinite(frame["bjorck_a"].astype(float))]
        if len(convs):
            twin = d.twinx()
            twin.plot(convs.index, convs["bjorck_a"] / convs["bjorck_b"], "x", color="tab:orange",
                      label="a/b (Table 1)")
            twin.set(yscale="log", ylabel="a/b = mean Σ|d| / mean |Σd| (dimensionless)")
            twin.grid(False)
            twin.legend(loc="lower right")
        d.legend(loc="upper right")
        for ax in (c, d):
            ax.set_xlabel("weight layer k (input → output)")
        fig.suptitle(f"{self.model}: {self.verdict}", fontsize="small", wrap=True)
        fig.tight_layout()
        return fig

    # ----------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write the diagnosis as JSON (NaN as null); :meth:`load` reads it back."""
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (np.floating, np.integer)):
                return clean(v.item())
            return v

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(clean(dataclasses.asdict(self)), indent=1, allow_nan=False))
        return path

    @classmethod
    def load(cls, path) -> "Diagnosis":
        """Read a diagnosis written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        floats = {f.name for f in dataclasses.fields(cls) if f.type in ("float", float)}
        for name in floats:
            if data.get(name) is None:
                data[name] = math.nan
        for row in data["layers"]:
            for col in _NUMBER_COLUMNS:
                if row.get(col) is None:
                    row[col] = math.nan
        return cls(**data)


@contextlib.contextmanager
def _pandas_options():
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.max_columns", 30, "display.width", 250):
        yield


# --------------------------------------------------------------------------- the diagnosis

@contextlib.contextmanager
def _left_as_it_was(model: nn.Module, weights: list[torch.Tensor], devices):
    """Buffers and modes (:func:`gradprobe.measure.hooks.preserved_state`), ``requires_grad`` of
    the watched weights, and torch's global random state, restored on exit."""
    flags = [(p, p.requires_grad) for p in weights]
    with preserved_state(model), torch.random.fork_rng(devices=devices):
        try:
            for p in weights:
                p.requires_grad_(True)
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


def _as_source(x):
    """The first floating-point tensor of the inputs replaced by a copy that requires a gradient,
    so that the autograd graph shows where the data enters (a residual stream may start there);
    returns the inputs and the copy's graph node. No gradient is computed for it."""
    found = []

    def swap(t):
        if found or not t.is_floating_point():
            return t
        copy = t.detach().requires_grad_(True).clone()
        found.append(copy.grad_fn)
        return copy

    x = _map_tensors(x, swap)
    return x, (found[0] if found else None)


def _draw_inputs(inputs, repeat: int):
    if callable(inputs) and not isinstance(inputs, (torch.Tensor, nn.Module)):
        return inputs()
    if isinstance(inputs, collections.abc.Iterator):
        try:
            return next(inputs)
        except StopIteration:
            raise ValueError(f"inputs ran out after {repeat} repeat(s)") from None
    return inputs


def _check_inputs(x):
    if isinstance(x, torch.Tensor):
        return
    if isinstance(x, collections.abc.Mapping) and all(isinstance(k, str) for k in x):
        return
    if isinstance(x, (tuple, list)) and x:
        return
    raise ValueError("inputs must be a tensor, a tuple or list of positional arguments, a mapping of keyword "
                     f"arguments, or a callable or iterator giving one of these; got {type(x).__name__}")


def diagnose(model: nn.Module, inputs, *, loss=None, targets=None, layers=None, repeats: int = 1,
             generator: torch.Generator | None = None, train: bool = True) -> Diagnosis:
    """Diagnose gradient explosion in ``model`` at its current weights; see the module docstring
    for every number reported and how.

    - ``inputs``: a tensor (one positional argument), a tuple or list (positional arguments), a
      mapping (keyword arguments, e.g. a tokenizer's output), or a callable without arguments or an
      iterator giving one of these afresh for each repeat. Tensors are moved to the device of the
      model's parameters.
    - ``loss``: ``loss(output)``, or ``loss(output, targets)`` when ``targets`` is given, a scalar.
      Default with ``targets``: cross-entropy (integer targets) or mean squared error (float). Default
      without: ℓ = ⟨u, f⟩ with u ~ N(0, 1) drawn for each repeat, f the model's first floating-point
      output (for a tuple, a dict or a Hugging Face ``ModelOutput``: its first such entry, e.g.
      ``logits``); the diagnosis says which in ``loss``.
    - ``layers``: the weight layers to watch (modules or names; default: all).
    - ``repeats``: independent repeats (fresh output gradient, dropout masks, and inputs if
      ``inputs`` draws them); ``generator`` (CPU) drives every draw, default a fresh unseeded one.
    - ``train=True`` (default) measures in training mode, as at the start of training (BatchNorm on
      the batch's statistics, dropout active), with a warning if the model was in eval mode; modes
      are restored afterwards. ``train=False`` measures the model in the modes it is in.

    A weight used several times (weight sharing) has one row: the weight-gradient norm and Bjorck's
    a/b of the total gradient, the variances and GSC averaged over its calls, its place at its first
    call; it is left out of the rate fits. Layers never called are listed in ``unused``, layers whose
    weight is used without calling them (``nn.MultiheadAttention``'s projections) in ``functional``;
    an attention module's ``out_proj`` is measured at the attention module's output, which it is.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    repeats = positive_int("repeats", repeats)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if loss is not None and not callable(loss):
        raise ValueError(f"loss must be a callable loss(output[, targets]) -> scalar, got {type(loss).__name__}")
    if targets is not None and not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}")
    if not isinstance(train, bool):
        raise ValueError(f"train must be True or False, got {train!r}")
    if inputs is None:
        raise ValueError("inputs must be given: a tensor, a tuple, a mapping, or a callable or iterator of these")
    static = isinstance(inputs, (torch.Tensor, collections.abc.Mapping, tuple, list))
    if static:
        _check_inputs(inputs)
    gen = generator if generator is not None else torch.Generator()
    if generator is None:
        gen.seed()
    watched = _watched_layers(model, layers)
    params = list(model.parameters())
    device = params[0].device if params else next(iter(model.buffers()), torch.empty(0)).device
    notes = []
    if train:
        eval_modules = [m for m in model.modules() if not m.training]
        if eval_modules:
            warnings.warn(f"{type(model).__name__} was in eval mode ({len(eval_modules)} of {len(list(model.modules()))}"
                          " modules): diagnosed in training mode (BatchNorm on the batch's statistics, dropout on), as "
                          "at the start of training, which the papers measure; the modes are restored afterwards. "
                          "Pass train=False to diagnose the model as it is.", UserWarning, stacklevel=2)
            notes.append(f"the model was in eval mode ({len(eval_modules)} modules): measured in training mode")
    weights = list({id(l.weight): l.weight for l in watched}.values())
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    per_repeat, stream_repeats, links, loss_text = [], [], None, ""
    with _left_as_it_was(model, weights, cuda), torch.enable_grad():
        if train:
            model.train()
        for r in range(repeats):
            x = _draw_inputs(inputs, r)
            _check_inputs(x)
            x = _map_tensors(x, lambda t: t.to(device))
            x, source = _as_source(x)
            y = targets.to(device) if targets is not None else None
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))   # dropout masks
            for layer in watched:
                layer.reset()
            with _Watch(watched, model) as watch:
                output = _call(model, x)
                f, where = _primary(output)
                if loss is None and f is None:
                    raise ValueError(f"the model's output ({type(output).__name__}) holds no floating-point tensor "
                                     "of more than one element to take a random output gradient of; pass loss=")
                if loss is not None:
                    value = loss(output, y) if y is not None else loss(output)
                    loss_text = f"{getattr(loss, '__name__', type(loss).__name__)}(output{', targets' if y is not None else ''}) (given)"
                elif y is not None:
                    value = _default_target_loss(f, y)
                    loss_text = (f"{'mean squared error' if y.is_floating_point() else 'cross-entropy'} of {where} "
                                 "against targets")
                else:
                    u = torch.randn(f.shape, generator=gen).to(device=f.device, dtype=f.dtype)
                    value = (f * u).sum()
                    loss_text = f"random output gradient: ℓ = ⟨u, {where}⟩, u ~ N(0, 1) drawn for each repeat"
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise ValueError(f"loss must return a scalar tensor, got {type(value).__name__}"
                                     f"{' of shape ' + str(tuple(value.shape)) if isinstance(value, torch.Tensor) else ''}")
                value = value.reshape(())
                if not value.requires_grad:
                    raise ValueError("the loss does not depend on any weight of the model (it needs no gradient)")
                out_grad = {}
                if f is not None and f.requires_grad:
                    f.register_hook(lambda g: out_grad.__setitem__("g", g.detach()))
                # the graph: which layer feeds which, and the residual additions (hooked for their gradient)
                usable = [k for k, l in enumerate(watched) if l.calls == 1 and l.out_node is not None]
                stops = {watched[k].out_node: k for k in usable}
                if source is not None:
                    stops[source] = len(watched)           # the data: a source, like an embedding
                preds, merges = _analyze_graph(stops, [watched[k].in_node for k in usable] + [value.grad_fn])
                if links is None:
                    links = _links(watched, watch.spans, preds, stops, merges)
                sources = {k for k, l in enumerate(watched) if l.kind == "embedding"} | {len(watched)}
                stream = _stream(preds, merges, sources)
                stream_var = [math.nan] * len(stream.nodes)
                for n, node in enumerate(stream.nodes):
                    node.register_hook(lambda grad_in, grad_out, n=n: stream_var.__setitem__(
                        n, _feature_variance(grad_out[0], _output_channel_dim(grad_out[0]))))
                grads = torch.autograd.grad(value, weights, allow_unused=True)
                del preds, merges, stops
            grad_of = {id(w): g for w, g in zip(weights, grads)}
            per_repeat.append(_repeat_rows(watched, grad_of, f, out_grad.get("g"), value, loss is not None))
            stream.nodes = None                     # keep the numbers, not the graph
            stream_repeats.append((stream, [float(v) for v in stream_var]))
    return _summarize(model, watched, per_repeat, links, stream_repeats, loss_text, repeats, train, device, notes)


def _repeat_rows(layers, grad_of, f, g_out, value, user_loss: bool) -> list[dict]:
    """This repeat's numbers per layer (floats)."""
    f_var = float(_feature_variance(f, _output_channel_dim(f))) if f is not None else math.nan
    g_var = float(_feature_variance(g_out, _output_channel_dim(g_out))) if g_out is not None else math.nan
    ref = abs(float(value.detach())) if user_loss else (float(f.detach().float().norm()) if f is not None else math.nan)
    rows = []
    for layer in layers:
        grad = grad_of.get(id(layer.weight))
        row = {"weight_grad_norm": float(grad.float().norm()) if grad is not None else math.nan,
               "grad_variance": math.nan, "forward_variance": math.nan, "gsc": math.nan,
               "bjorck_a": math.nan, "bjorck_b": math.nan}
        if layer.fwd_var:
            row["forward_variance"] = float(torch.stack(layer.fwd_var).mean())
        if layer.grad_var:
            row["grad_variance"] = float(torch.stack(list(layer.grad_var.values())).mean())
            gsc = [math.sqrt(float(layer.grad_sq[c]) / layer.out_numel[c]) * float(layer.out_norm[c]) / ref
                   for c in sorted(layer.grad_sq)]
            row["gsc"] = float(np.mean(gsc)) if ref > 0 else math.nan
        if layer.bjorck_a is not None and grad is not None:
            row["bjorck_a"] = float(layer.bjorck_a.float().mean())
            row["bjorck_b"] = float(grad.float().abs().mean())
        row["R_f"] = f_var / row["forward_variance"] if row["forward_variance"] > 0 else math.nan
        row["R_b"] = row["grad_variance"] / g_var if g_var > 0 else math.nan
        rows.append(row)
    return rows


def _fit(values, depths, segments):
    """(rate, points used) of :func:`fit_rate` (reverse) on the finite positive values, NaN when
    no segment keeps two of them."""
    v, d, s = (np.asarray(a, dtype=float) for a in (values, depths, segments))
    ok = np.isfinite(v) & (v > 0)
    v, d, s = v[ok], d[ok], s[ok]
    labels, counts = np.unique(s, return_counts=True)
    if not np.any(counts >= 2):
        return math.nan
    try:
        return fit_rate(v, depths=d, segments=s, reverse=True).rate
    except ValueError:
        return math.nan


def _summarize(model, layers, per_repeat, links: _Links, stream_repeats, loss_text, repeats, train, device,
               notes) -> Diagnosis:
    with warnings.catch_warnings():   # a column that is NaN in every repeat stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {col: np.nanmean(np.array([[row[col] for row in rows] for rows in per_repeat], dtype=float), axis=0)
                for col in per_repeat[0][0]}
    gains = [_gains(l) if l.calls >= 1 else (math.nan, math.nan) for l in layers]
    # ---- per layer: pairs i -> j through norm/activation; a norm needs i's input to be φ(norm(·)) too
    link = {j: (i, norm, act) for j, (i, norm, act) in links.link.items()
            if (norm is None and act is not None) or (norm is not None and links.normalized.get(i) == norm)}
    gain_ratio = {j: gains[j][1] / gains[i][0] for j, (i, _, _) in link.items()}
    parent = {j: v[0] for j, v in link.items()}
    fit_layers = sorted(set(parent) | set(parent.values()), key=lambda k: layers[k].first_call)

    def root_and_depth(k):
        depth = 0
        while k in parent:
            k, depth = parent[k], depth + 1
        return k, depth

    def corrected(k):
        """Var[g_k] times the gain ratios B_j/A_i of the links from its run's root down to k, so that
        consecutive corrected values differ by the pair's width-free rate."""
        w = 1.0
        while k in parent:
            w *= gain_ratio[k]
            k = parent[k]
        return w

    pair_pred = {j: _pair_prediction(norm, act, gain_ratio[j], gains[j][1], mean["forward_variance"][i]) / gain_ratio[j]
                 for j, (i, norm, act) in link.items()}
    labels = collections.Counter(_pair_label(v[1], v[2]) for v in link.values())
    kinds = ", ".join(k if len(labels) == 1 else f"{k} ×{n}" for k, n in labels.most_common())
    predicted = [p for p in pair_pred.values() if math.isfinite(p) and p > 0]
    predicted_per_layer = (float(np.exp(np.mean(np.log(predicted)))) if predicted and len(predicted) == len(pair_pred)
                           else math.nan)
    if pair_pred and len(predicted) < len(pair_pred):
        notes.append(f"no prediction per layer: no theory for some of {kinds}")

    def layer_rate(rows):
        if not fit_layers:
            return math.nan
        return _fit([rows[k]["grad_variance"] * corrected(k) for k in fit_layers],
                    [root_and_depth(k)[1] for k in fit_layers], [root_and_depth(k)[0] for k in fit_layers])

    def spread(values):
        ok = np.array([v for v in values if math.isfinite(v)])
        return (float(np.mean(ok)) if len(ok) else math.nan,
                float(np.std(ok, ddof=1) / math.sqrt(len(ok))) if len(ok) >= 2 else math.nan)

    rate_layer, se_layer = spread([layer_rate(rows) for rows in per_repeat])
    # ---- per effective depth: the residual stream's gradient at each addition
    stream, _ = stream_repeats[0]
    residual = bool(stream.depth)
    if residual:
        depth_rates = [_fit(v, st.depth, st.segment) for st, v in stream_repeats]
        rate_depth, se_depth = spread(depth_rates)
        effective = sum(len(set(d for d, s in zip(stream.depth, stream.segment) if s == seg))
                        for seg in set(stream.segment))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            same = [v for st, v in stream_repeats if st.depth == stream.depth]
            stream_var = np.nanmean(np.array(same, dtype=float), axis=0)
        points = [v for v in stream_var if math.isfinite(v) and v > 0]
        predicted_depth = math.nan
    else:
        rate_depth, se_depth, predicted_depth = rate_layer, se_layer, predicted_per_layer
        effective = len([l for l in layers if l.kind != "embedding" and l.calls >= 1 and l.observable])
        stream_var = np.array([])
        points = [mean["grad_variance"][k] for k in fit_layers if math.isfinite(mean["grad_variance"][k])]
    overall = math.sqrt(points[0] / points[-1]) if len(points) >= 2 and points[-1] > 0 else math.nan
    writes = {k: (d, s) for d, s, ks in zip(stream.depth, stream.segment, stream.writes) for k in ks}
    # ---- the table
    functional = [l.name for k, l in enumerate(layers) if (not l.observable or l.calls == 0)
                  and math.isfinite(mean["weight_grad_norm"][k])]
    unused = [l.name for k, l in enumerate(layers) if l.calls == 0 and l.name not in functional]
    shared = [f"{l.name} ({l.calls} calls)" for l in layers if l.calls > 1 and l.observable]
    tied = collections.defaultdict(list)
    for l in layers:
        tied[id(l.weight)].append(l.name)
    notes += [f"{', '.join(group)} share one weight: each row shows its total gradient"
              for group in tied.values() if len(group) > 1]
    if shared:
        notes.append("weights called several times: variances and GSC are means over calls, the weight-gradient norm "
                     "and a/b the total; left out of the rate fits")
    order = sorted(range(len(layers)), key=lambda k: (layers[k].first_call < 0, layers[k].first_call, k))
    position = {k: p for p, k in enumerate(order)}
    rows = []
    for k in order:
        l = layers[k]
        row = {"index": position[k], "name": l.name, "kind": l.kind, "calls": l.calls,
               "out_shape": list(l.out_shape), "in_shape": list(l.in_shape)}
        row.update({col: float(mean[col][k]) for col in mean})
        row["width_ratio"] = float(l.width_ratio)
        row["stream"] = k in writes
        row["effective_depth"] = int(writes[k][0]) + 1 if k in writes else None
        row["in_fit"] = k in fit_layers
        nxt = [j for j, v in link.items() if v[0] == k]
        row["between"] = _pair_label(link[nxt[0]][1], link[nxt[0]][2]) if nxt else ""
        row["pair_ratio"] = (float(mean["grad_variance"][k] / mean["grad_variance"][nxt[0]] / gain_ratio[nxt[0]])
                             if nxt else math.nan)
        row["pair_predicted"] = float(pair_pred[nxt[0]]) if nxt else math.nan
        rows.append(row)
    stream_rows = [{"effective_depth": int(d) + 1, "segment": int(s), "grad_variance": float(v),
                    "after": layers[max(ks, key=lambda k: layers[k].first_call)].name if ks else "",
                    "after_index": position[max(ks, key=lambda k: layers[k].first_call)] if ks else -1}
                   for d, s, ks, v in zip(stream.depth, stream.segment, stream.writes, stream_var)]
    d = Diagnosis(model=type(model).__name__, loss=loss_text, repeats=repeats, train=train, device=str(device),
                  layers=rows, stream=stream_rows, rate_per_layer=rate_layer, rate_per_layer_se=se_layer,
                  predicted_per_layer=predicted_per_layer, layers_in_fit=len(fit_layers), rate_per_depth=rate_depth,
                  rate_per_depth_se=se_depth, predicted_per_depth=predicted_depth, effective_depth=int(effective),
                  residual=residual, overall_growth=overall, kinds=kinds, unused=unused, functional=functional,
                  shared=shared, notes=notes)
    d.verdict = _verdict(d)
    return d


def _agrees(measured, se, predicted) -> bool:
    return abs(measured / predicted - 1) <= max(0.05, 2 * se / predicted if math.isfinite(se) else 0.0)


def _growth_phrase(rate: float, unit: str) -> str:
    """'grows ×1.21 per BN–ReLU layer toward the input' for a variance rate of 1.467."""
    norm = math.sqrt(rate)
    if abs(norm - 1) < 0.005:
        return f"keeps its size (×{norm:.3f} per {unit} toward the input)"
    shown = f"{norm:.2f}" if 0.1 <= norm < 10 else f"{norm:.3g}"
    return f"{'grows' if norm > 1 else 'shrinks'} ×{shown} per {unit} toward the input"


def _verdict(d: Diagnosis) -> str:
    """The diagnosis in words: growth of the gradient's norm per layer (or residual branch) toward
    the input, over the network, and against the theory's prediction."""
    kinds = d.kinds if d.kinds and "×" not in d.kinds else ("mixed layers" if d.kinds else "")
    overall = f", {_fmt_growth(d.overall_growth)}× over the network" if math.isfinite(d.overall_growth) else ""

    def against(measured, se, predicted, label):
        if not math.isfinite(predicted):
            return ""
        if _agrees(measured, se, predicted):
            return f", as predicted for {label}"
        side = "more" if measured > predicted else "less"
        return f", {side} than the ×{math.sqrt(predicted):.3g} predicted for {label}"

    if d.residual and math.isfinite(d.rate_per_depth):
        text = (f"the gradient {_growth_phrase(d.rate_per_depth, 'residual branch')} along the residual stream "
                f"(effective depth {d.effective_depth} branches){overall}")
        if math.isfinite(d.rate_per_layer):
            text += (f"; within the branches it {_growth_phrase(d.rate_per_layer, (kinds + ' layer').strip())}"
                     f"{against(d.rate_per_layer, d.rate_per_layer_se, d.predicted_per_layer, kinds)}")
        return text
    if math.isfinite(d.rate_per_layer):
        return ("the gradient " + _growth_phrase(d.rate_per_layer, (kinds + " layer").strip()) + overall
                + against(d.rate_per_layer, d.rate_per_layer_se, d.predicted_per_layer, kinds))
    return ("no rate: no two consecutive weight layers joined by a normalization or activation alone, and no "
            "residual stream, were found")


# --------------------------------------------------------------------------- command line

class _CommandLineError(Exception):
    pass


def _load_factory(spec: str):
    if ":" not in spec:
        raise _CommandLineError(f"factory must be given as package.module:function, got {spec!r}")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to see, in one line
        raise _CommandLineError(f"cannot import {module_name!r}: {type(err).__name__}: {err}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise _CommandLineError(f"{module_name!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise _CommandLineError(f"{spec} is not callable")
    return target


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise _CommandLineError(f"--input-shape must be positive integers separated by commas, such as 8,3,224,224; "
                                f"got {text!r}")
    return shape


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def main(argv=None) -> int:
    """``python -m gradprobe.diagnose package.module:factory --input-shape 8,3,224,224 [--tokens V]
    [--repeats N] [--seed S] [--device D] [--eval] [--out FOLDER]``: build the model by calling the
    factory without arguments, diagnose it on Gaussian inputs of that shape (``--tokens V``: integer
    token ids below V), print the report and write ``diagnosis-<factory>.png`` and ``.json`` into
    ``--out`` (default: the current folder). Exit status 2 with a one-line error for a factory that
    cannot be imported or does not return a ``torch.nn.Module``, a malformed shape, or an input the
    model rejects."""
    parser = argparse.ArgumentParser(prog="python -m gradprobe.diagnose", description=main.__doc__.split(":")[0])
    parser.add_argument("factory", help="package.module:function returning the torch.nn.Module to diagnose")
    parser.add_argument("--input-shape", required=True, help="shape of the input batch, e.g. 8,3,224,224")
    parser.add_argument("--tokens", type=int, default=None, help="draw integer token ids below this vocabulary size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--eval", action="store_true", help="diagnose in the model's own modes (default: training)")
    parser.add_argument("--out", default=".", help="folder for the figure and the JSON file")
    args = parser.parse_args(argv)
    prog = "gradprobe.diagnose"
    try:
        from .runtime import device as pick_device

        shape = _parse_shape(args.input_shape)
        if args.tokens is not None and args.tokens < 1:
            raise _CommandLineError(f"--tokens must be a positive vocabulary size, got {args.tokens}")
        try:
            dev = pick_device(args.device)
        except ValueError as err:
            raise _CommandLineError(str(err)) from None
        factory = _load_factory(args.factory)
        try:
            model = factory()
        except Exception as err:  # noqa: BLE001
            raise _CommandLineError(f"{args.factory}() raised {_first_line(err)}") from None
        if not isinstance(model, nn.Module):
            raise _CommandLineError(f"{args.factory}() returned a {type(model).__name__}, not a torch.nn.Module")
        model = model.to(dev)
        gen = torch.Generator().manual_seed(args.seed)
        x = (torch.randint(0, args.tokens, shape, generator=gen) if args.tokens is not None
             else torch.randn(shape, generator=gen)).to(dev)
        try:
            with preserved_state(model), torch.no_grad():
                model.train(not args.eval)
                _call(model, x)
        except Exception as err:  # noqa: BLE001
            raise _CommandLineError(f"the model rejected an input of shape {tuple(shape)}: {_first_line(err)}") from None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = diagnose(model, x, repeats=args.repeats, generator=gen, train=not args.eval)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except _CommandLineError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(result.report())
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", args.factory.split(":")[-1]) or "model"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = result.plot()
    fig.savefig(out / f"diagnosis-{stem}.png")
    result.save(out / f"diagnosis-{stem}.json")
    print(f"\nwrote {out / f'diagnosis-{stem}.png'} and {out / f'diagnosis-{stem}.json'}")
    return 0


class _CallableModule(types.ModuleType):
    """``gradprobe.diagnose`` is this module and, called, :func:`diagnose` itself, so both
    ``gradprobe.diagnose(model, x)`` and ``from gradprobe.diagnose import Diagnosis`` work, in any
    order, and ``python -m gradprobe.diagnose`` runs :func:`main`."""

    def __call__(self, *args, **kwargs) -> "Diagnosis":
        return diagnose(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
