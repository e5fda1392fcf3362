"""The model's inputs, its outputs and the loss.

Inputs are a tensor (one positional argument), a tuple or list (positional arguments), a mapping
(keyword arguments), or a callable or iterator giving one of these for each repeat. The output
may be a tensor, a tuple or list, a mapping or a dataclass (Hugging Face's ``ModelOutput``):
:func:`_primary` finds its first floating-point tensor, the one a default loss takes a random
output gradient of.
"""
from __future__ import annotations

import collections.abc
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


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
