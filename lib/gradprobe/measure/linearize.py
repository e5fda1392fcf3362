"""Effective depth: how many of a trained network's top layers behave like their linearization
around the initial weights.

A network is a sequence of modules g_1, …, g_n (``model.children()``). Training moves their
parameters from θ⁰ to θ. Replace the top m modules by their first-order Taylor expansion in the
parameters around θ⁰,

    g_top(h; θ) ≈ g_top(h; θ⁰) + ∂_θ g_top(h; θ⁰) · (θ − θ⁰)      (a Jacobian-vector product,
                                                                       ``torch.func.jvp``)

keeping the trained modules below exactly (h is their output). If the training error does not
change, the top m modules' training changes act additively, as in a linear model: they add no
compositional depth. The error as a function of m (:func:`linearized_errors`) shows where the
network's trained nonlinear depth starts; :func:`effective_depth` turns it into a number.
"""
from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn
from torch.func import functional_call, jvp, replace_all_batch_norm_modules_

from ..checks import is_int

__all__ = ["LinearizedTop", "linearized_top", "linearized_errors", "linear_layers_in_top", "children_for_layers",
           "effective_depth", "effective_depth_kept", "layer_residuals"]


class LinearizedTop(nn.Module):
    """``model`` with its top ``m`` children replaced by their linearization around
    ``initial_state`` (a ``state_dict`` of the same model at initialization). BatchNorm always uses
    the batch's statistics (its running statistics are not part of the expansion)."""

    def __init__(self, model: nn.Module, initial_state: dict, m: int):
        super().__init__()
        children = list(model.children())
        if not is_int(m) or not 0 <= m <= len(children):
            raise ValueError(f"m must be an integer in [0, {len(children)}] (the model's children), got {m!r}")
        work = copy.deepcopy(model)
        replace_all_batch_norm_modules_(work)
        kids = list(work.children())
        self.bottom = nn.Sequential(*kids[:len(kids) - m])
        self.top = nn.Sequential(*kids[len(kids) - m:])
        offset = len(kids) - m
        names = {}
        for name, _ in self.top.named_parameters():
            index, rest = name.split(".", 1)
            names[name] = f"{int(index) + offset}.{rest}"   # the parameter's name in ``model``
        missing = [n for n in names.values() if n not in initial_state]
        if missing:
            raise ValueError(f"initial_state lacks {missing[0]!r}: pass model.state_dict() taken at initialization")
        self.m = m
        self._initial = {n: initial_state[full].detach().clone() for n, full in names.items()}

    def forward(self, x):
        h = self.bottom(x)
        if self.m == 0:
            return h
        trained = dict(self.top.named_parameters())
        theta0 = {n: v.to(h.device) for n, v in self._initial.items()}
        delta = {n: trained[n].detach() - theta0[n] for n in theta0}
        with warnings.catch_warnings():  # torch.func's first jvp call warns about torch.jit internals
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.*")
            out0, change = jvp(lambda p: functional_call(self.top, p, (h,)), (theta0,), (delta,))
        return out0 + change


def linearized_top(model: nn.Module, initial_state: dict, m: int) -> LinearizedTop:
    """The model with its top ``m`` children linearized in their parameters (see the module's
    docstring); ``m = 0`` is the trained model itself (with batch statistics)."""
    return LinearizedTop(model, initial_state, m)


def linear_layers_in_top(model: nn.Module, m: int) -> int:
    """How many Linear layers the top ``m`` children of ``model`` hold."""
    children = list(model.children())
    if not 0 <= m <= len(children):
        raise ValueError(f"m must be in [0, {len(children)}], got {m}")
    return sum(len([l for l in c.modules() if isinstance(l, nn.Linear)]) for c in children[len(children) - m:])


def children_for_layers(model: nn.Module, count: int) -> int:
    """The fewest top children of ``model`` that hold at least ``count`` Linear layers."""
    n = len(list(model.children()))
    for m in range(n + 1):
        if linear_layers_in_top(model, m) >= count:
            return m
    raise ValueError(f"the model has only {linear_layers_in_top(model, n)} linear layers, asked for {count}")


@torch.no_grad()
def linearized_errors(model: nn.Module, initial_state: dict, x: torch.Tensor, y: torch.Tensor, ms,
                      batch_size: int = 500) -> torch.Tensor:
    """Classification error (fraction wrong) on (x, y) of :func:`linearized_top` for each m in
    ``ms``, evaluated in batches of ``batch_size`` (BatchNorm: per-batch statistics)."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y need the same, non-zero length, got {len(x)} and {len(y)}")
    errors = []
    for m in ms:
        hybrid = linearized_top(model, initial_state, int(m))
        wrong = 0
        for i in range(0, len(x), batch_size):
            wrong += int((hybrid(x[i:i + batch_size]).argmax(1) != y[i:i + batch_size]).sum())
        errors.append(wrong / len(x))
    return torch.tensor(errors)


def effective_depth(total_linear_layers: int, linearized_linear_layers, errors, tolerance: float = 0.02) -> int:
    """``total − m*``, where m* is the largest number of top linear layers whose linearization
    keeps the error within ``tolerance`` of the error with none linearized (``errors[0]``; the
    first entry of ``linearized_linear_layers`` must be 0). Errors are fractions."""
    counts, errors = list(linearized_linear_layers), [float(e) for e in errors]
    if len(counts) != len(errors) or not counts or counts[0] != 0:
        raise ValueError("give one error per count, starting with 0 layers linearized")
    if any(b < a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"linearized_linear_layers must be increasing, got {counts}")
    best = 0
    for count, err in zip(counts, errors):
        if err > errors[0] + tolerance:
            break
        best = count
    return total_linear_layers - best


def effective_depth_kept(total_linear_layers: int, linearized_linear_layers, errors, chance: float,
                         keep: float = 0.9, min_improvement: float = 0.2) -> float:
    """Effective depth measured against the improvement over chance: ``total − m*``, where m* is
    the number of top linear layers at which linearizing them first keeps less than ``keep`` of
    the network's improvement over chance, chance − errors[0] (linearly interpolated between the
    counts given; every count when all keep it). NaN when the network has not improved on
    ``chance`` by at least ``min_improvement`` (an untrained network has no effective depth to
    measure). Errors and chance are fractions; the first count must be 0."""
    counts, errors = [float(c) for c in linearized_linear_layers], [float(e) for e in errors]
    if len(counts) != len(errors) or not counts or counts[0] != 0:
        raise ValueError("give one error per count, starting with 0 layers linearized")
    if any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"linearized_linear_layers must be increasing, got {counts}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    improvement = chance - errors[0]
    if not improvement >= min_improvement:
        return math.nan
    kept = [(chance - e) / improvement for e in errors]
    best = counts[-1]
    for i in range(1, len(counts)):
        if kept[i] < keep:
            c0, c1, k0, k1 = counts[i - 1], counts[i], kept[i - 1], kept[i]
            best = c0 + (c1 - c0) * (k0 - keep) / (k0 - k1)
            break
    return total_linear_layers - best


@torch.no_grad()
def layer_residuals(model: nn.Module, initial_state: dict, x: torch.Tensor) -> torch.Tensor:
    """Philipp et al.'s residual trick on a trained network: every child g of ``model`` is its
    initial function plus a residual, g(h; θ) = g(h; θ⁰) + r(h). For each child, on the input h it
    receives in the trained network on the batch ``x``, returns ‖r(h)‖ / ‖g(h; θ⁰)‖ (the inverse
    of the dilution k of a residual block). BatchNorm uses the batch's statistics."""
    work = copy.deepcopy(model)
    replace_all_batch_norm_modules_(work)
    params = dict(work.named_parameters())
    missing = [n for n in params if n not in initial_state]
    if missing:
        raise ValueError(f"initial_state lacks {missing[0]!r}: pass model.state_dict() taken at initialization")
    ratios, h = [], x
    for index, (name, child) in enumerate(work.named_children()):
        own = {n: initial_state[f"{name}.{n}"].to(h.device) for n, _ in child.named_parameters()}
        out = child(h)
        initial = functional_call(child, own, (h,)) if own else out
        ratios.append(float((out - initial).norm() / initial.norm().clamp_min(1e-30)))
        h = out
    return torch.tensor(ratios)
