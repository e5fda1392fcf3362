"""The loss along a step: how far the negative gradient, or an update that was taken, can be
followed before the loss rises or diverges (Bjorck et al. 2018).

- :func:`step_loss_ratios`       new/old loss along the negative gradient, for a scan of step sizes (Fig. 3)
- :func:`largest_useful_step`    the largest step of such a scan that still lowers the loss (App. H)
- :func:`find_diverging_update`  the SGD update that sends the loss above 10³ (Sec. 3)
- :func:`interpolation_sweep`    θ + t·Δθ for t in [0, 1]: loss and channel moments (Fig. 4)

NaN and infinity are data here: they are returned, never raised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import labelled_images, positive_int
from ..networks.resnet import layer_map
from .hooks import hooks
from .stats import moments

__all__ = ["step_loss_ratios", "largest_useful_step", "DivergingUpdate", "find_diverging_update", "Sweep",
           "interpolation_sweep"]


def _snapshot(model):
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@torch.no_grad()
def step_loss_ratios(model, x: torch.Tensor, y: torch.Tensor, steps, use_existing_grad: bool = False) -> np.ndarray:
    """L(θ − α∇L(θ)) / L(θ) on the same batch for each step size α in ``steps`` (Figure 3).

    The gradient is of the mean cross-entropy at θ (or the ``.grad`` already present with
    ``use_existing_grad=True``, e.g. inside a training callback). The model (parameters and BN
    buffers) is restored afterwards. A NaN or infinite loss gives a NaN or inf ratio."""
    labelled_images(x, y)
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or len(steps) == 0 or (steps <= 0).any():
        raise ValueError(f"steps must be a non-empty 1-d sequence of positive step sizes, got {steps!r}")
    saved = _snapshot(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if not use_existing_grad:
        with torch.enable_grad():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
    if any(p.grad is None for p in params):
        raise ValueError("a parameter has no gradient; call backward first or use use_existing_grad=False")
    grads = [p.grad.detach().clone() for p in params]
    model.load_state_dict(saved)
    base = float(F.cross_entropy(model(x), y))
    ratios = []
    for alpha in steps:
        for (name, p), g in zip(named, grads):
            p.copy_(saved[name] - alpha * g)
        ratios.append(float(F.cross_entropy(model(x), y)) / base)
    model.load_state_dict(saved)
    if not use_existing_grad:
        model.zero_grad(set_to_none=True)
    return np.array(ratios)


def largest_useful_step(steps, ratios) -> float:
    """The largest step size α of the scan such that every step up to it lowers the loss
    (ratio < 1): the end of the first run of ratios below 1 (NaN if the smallest step fails)."""
    steps, ratios = np.asarray(steps, dtype=np.float64), np.asarray(ratios, dtype=np.float64)
    if steps.shape != ratios.shape or steps.ndim != 1:
        raise ValueError(f"steps and ratios must be 1-d of equal length, got {steps.shape} and {ratios.shape}")
    order = np.argsort(steps)
    good = np.isfinite(ratios[order]) & (ratios[order] < 1)
    if not good[0]:
        return math.nan
    last = len(good) - 1 if good.all() else int(np.argmin(good)) - 1
    return float(steps[order][last])


@dataclass
class DivergingUpdate:
    """The SGD update at ``step`` (0-based) after which the loss of its own mini-batch (xb, yb)
    exceeded the threshold: θ_before + delta is the weights after it (parameters only)."""
    step: int
    params_before: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    xb: torch.Tensor
    yb: torch.Tensor
    loss_before: float
    loss_after: float
    losses: list[float] = field(default_factory=list)


def find_diverging_update(model, x: torch.Tensor, y: torch.Tensor, *, lr: float, batch_size: int, max_steps: int,
                          generator: torch.Generator | None = None, momentum: float = 0.9, weight_decay: float = 1e-4,
                          threshold: float = 1e3) -> DivergingUpdate | None:
    """Train with SGD (momentum, weight decay) and return the first update after which the loss
    on that update's own mini-batch is above ``threshold`` (the paper's divergence: 10³) or not
    finite; None if no update in ``max_steps`` does. The model is left at the diverged weights.
    ``losses`` records each step's loss before its update."""
    positive_int("batch_size", batch_size)
    positive_int("max_steps", max_steps)
    if batch_size > len(x):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(x)} examples")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    order, pos, losses = torch.randperm(len(x), generator=generator), 0, []
    model.train()
    for step in range(max_steps):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(x), generator=generator), 0
        idx = order[pos:pos + batch_size].to(x.device)
        pos += batch_size
        xb, yb = x[idx], y[idx]
        loss = F.cross_entropy(model(xb), yb)
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value) or value > threshold:
            raise ValueError(f"the loss is already {value:.4g} > {threshold:g} before update {step}: the start is "
                             "diverged (check the input scale, see gradprobe.data.tensors.mean_subtracted)")
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            after = float(F.cross_entropy(model(xb), yb))
        if not math.isfinite(after) or after > threshold:
            delta = {n: p.detach() - before[n] for n, p in model.named_parameters()}
            return DivergingUpdate(step, before, delta, xb, yb, value, after, losses)
    return None


@dataclass
class Sweep:
    """Along θ + t·Δθ: ``loss`` [T] and, per layer k, ``means[k]`` and ``variances[k]`` [T, C]."""
    fractions: np.ndarray
    loss: np.ndarray
    means: dict[int, np.ndarray]
    variances: dict[int, np.ndarray]


@torch.no_grad()
def interpolation_sweep(model, update: DivergingUpdate, fractions, layers) -> Sweep:
    """Figure 4: apply the fraction t of the diverging update, θ_before + t·Δθ, for each t in
    ``fractions`` and record the loss on the update's mini-batch and the per-channel means and
    variances of the outputs of ``layers`` (paper layer numbers of a CIFAR ResNet, as in
    :func:`gradprobe.measure.kernels.channel_moments`). The model's state is restored afterwards.
    Overflowed values appear as inf or NaN."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) == 0:
        raise ValueError(f"fractions must be a non-empty 1-d sequence, got {fractions!r}")
    modules = layer_map(model, layers)
    layers = list(modules)
    saved = _snapshot(model)
    named = dict(model.named_parameters())
    missing = set(update.params_before) ^ set(named)
    if missing:
        raise ValueError(f"the update does not belong to this model (parameters differ: {sorted(missing)[:3]} …)")
    loss, means, variances = [], {k: [] for k in layers}, {k: [] for k in layers}
    try:
        for t in fractions:
            for n, p in named.items():
                p.copy_(update.params_before[n] + float(t) * update.delta[n])
            found = {}
            with hooks(modules.values(), lambda i, inputs, output: found.__setitem__(layers[i], moments(output))):
                out = model(update.xb)
            loss.append(float(F.cross_entropy(out.double(), update.yb)))
            for k in layers:
                means[k].append(found[k].mean.cpu().numpy())
                variances[k].append(found[k].var.cpu().numpy())
    finally:
        model.load_state_dict(saved)
    return Sweep(fractions, np.array(loss), {k: np.stack(v) for k, v in means.items()},
                 {k: np.stack(v) for k, v in variances.items()})
