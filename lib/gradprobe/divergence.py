"""Probes of Bjorck et al. (2018): why an unnormalized ResNet diverges at learning rates a
batch-normalized one takes in its stride.

Layers are addressed by the paper's numbers (:mod:`gradprobe.resnets`: layer k is the k-th
weight layer from the input; its *output* is what the conv or the final Linear emits, before
any BN or activation, the O of the paper's Eq. (4)).

- :func:`channel_moments`            per-channel mean and variance of layer outputs (Figs. 4, 5)
- :func:`kernel_gradient`            ∂L/∂K of one layer (Fig. 2)
- :func:`gradient_sums`              Table 1's a = Σ|d| and b = |Σ d| (Eq. 4)
- :func:`output_gradients`           ∂L_b/∂O_{b,j} of the logits (Fig. 6), :func:`dominant_class_share`
- :func:`channel_gradient_map`       M_{i,o} = Σ_{x',y'} |∂L/∂K_{o,i,x',y'}| (Fig. 7), :func:`top_singular_share`
- :func:`step_loss_ratios`           new/old loss along the negative gradient (Fig. 3),
  :func:`probe_training_steps` (at chosen mini-batches of normal training), :func:`largest_useful_step` (App. H)
- :func:`find_diverging_update`      the SGD update that sends the loss above 10³ (Sec. 3)
- :func:`interpolation_sweep`        θ + t·Δθ for t in [0, 1]: loss and channel moments (Fig. 4)

NaN and infinity are data here: they are returned, never raised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from . import train as _train
from .resnets import layer as _layer

__all__ = ["mean_subtracted", "Moments", "channel_moments", "kernel_gradient", "GradientSums", "gradient_sums",
           "output_gradients", "DominantClass", "dominant_class_share", "channel_gradient_map", "top_singular_share",
           "step_loss_ratios", "ProbeRun", "probe_training_steps", "largest_useful_step", "DivergingUpdate",
           "find_diverging_update", "Sweep", "interpolation_sweep", "FIGURE5_LAYERS"]

# Figure 5's layers in ResNet-110: every 12th from 6, and the final (classification) layer
FIGURE5_LAYERS = tuple(range(6, 103, 12)) + (110,)


def mean_subtracted(x: torch.Tensor, root=None) -> torch.Tensor:
    """Undo the per-channel division by σ of :func:`gradprobe.train.cifar10_tensors`: pixels on the
    [0, 1] scale minus the channel mean, the scale of He et al.'s preprocessing (they subtract the
    per-pixel mean). An unnormalized ResNet's output is proportional to its input's scale (no
    biases, ReLU), so this matters: unit-variance inputs make the logits ≈ 4× larger, and the
    initial loss of a Xavier ResNet-110, in the hundreds here, then lies above the paper's
    divergence threshold of 10³."""
    _, std = _train.channel_stats(None if root is None else str(root))
    return x * torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


def _check_batch(x, y):
    if x.dim() != 4 or y.dim() != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"expected images [B, C, H, W] and labels [B] with B > 0, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")


def _layers(model, layers):
    layers = [layers] if isinstance(layers, int) else list(layers)
    return {k: _layer(model, k) for k in layers}


class Moments(NamedTuple):
    """Per-channel mean and (biased) variance over batch and space, float64 [C]."""
    mean: torch.Tensor
    var: torch.Tensor


def _moments(out: torch.Tensor) -> Moments:
    dims = [0] + list(range(2, out.dim()))
    o = out.detach().double()
    return Moments(o.mean(dim=dims), o.var(dim=dims, unbiased=False))


@torch.no_grad()
def channel_moments(model, x: torch.Tensor, layers) -> dict[int, Moments]:
    """Per-channel moments μ_c = mean_{b,x,y} O_{b,c,x,y} and σ_c² of the outputs of the paper's
    ``layers`` (numbers, see :mod:`gradprobe.resnets`) on the batch ``x``, in the model's current
    mode (train: BN uses batch statistics). Computed in float64, so overflow shows as inf only
    where float32 outputs themselves overflowed."""
    modules = _layers(model, layers)
    found, handles = {}, []
    for k, m in modules.items():
        handles.append(m.register_forward_hook(lambda mod, inp, out, k=k: found.__setitem__(k, _moments(out))))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return found


def kernel_gradient(model, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """∂L/∂K of layer k (a copy) for the mean cross-entropy L of the batch (x, y)."""
    _check_batch(x, y)
    module = _layer(model, k)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    grad = module.weight.grad.detach().clone()
    model.zero_grad(set_to_none=True)
    return grad


class GradientSums(NamedTuple):
    """Table 1 for one kernel: ``a`` = mean over parameters of Σ_{b,x,y} |d|, ``b`` = mean over
    parameters of |Σ_{b,x,y} d| = |∂L/∂K|; a ≥ b always."""
    a: float
    b: float

    @property
    def ratio(self) -> float:
        return self.a / self.b if self.b > 0 else math.inf


def gradient_sums(model, x: torch.Tensor, y: torch.Tensor, layers) -> dict[int, GradientSums]:
    """Table 1 of the paper at conv ``layers``. With d^{bxy}_{o,i,x',y'} = (∂L/∂O_{b,o,x,y}) ·
    I_{b,i,x+x',y+y'} (Eq. 4), the kernel gradient is Σ_{b,x,y} d. ``b`` is the mean over the
    kernel's entries of |Σ d| (= |weight.grad|); ``a`` the mean of Σ |d|, computed as the weight
    gradient of the same convolution applied to |I| and |∂L/∂O| (``torch.nn.grad.conv2d_weight``).
    For a sum of summands of matching sign a/b ≈ 1; for signs that cancel a/b ≫ 1."""
    _check_batch(x, y)
    modules = _layers(model, layers)
    for k, m in modules.items():
        if not isinstance(m, torch.nn.Conv2d):
            raise ValueError(f"layer {k} is not a convolution (Table 1 needs conv kernels), it is {type(m).__name__}")
    inputs, grads, handles = {}, {}, []

    def hook(mod, inp, out, k):
        inputs[k] = inp[0].detach()
        out.register_hook(lambda g: grads.__setitem__(k, g.detach()))

    for k, m in modules.items():
        handles.append(m.register_forward_hook(lambda mod, inp, out, k=k: hook(mod, inp, out, k)))
    try:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    result = {}
    for k, m in modules.items():
        absolute = conv2d_weight(inputs[k].abs(), m.weight.shape, grads[k].abs(), stride=m.stride,
                                 padding=m.padding, dilation=m.dilation, groups=m.groups)
        result[k] = GradientSums(a=float(absolute.mean()), b=float(m.weight.grad.abs().mean()))
    model.zero_grad(set_to_none=True)
    return result


def output_gradients(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂L_b/∂O_{b,j} [B, classes] for each image's own cross-entropy L_b: softmax(O_b)_j − 1[j = y_b]
    (Figure 6). Positive: the step along −∇ weakens class j for image b."""
    _check_batch(x, y)
    with torch.no_grad():
        logits = model(x).double()
    return torch.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1]).double()


class DominantClass(NamedTuple):
    """``cls``: the class most often taking an image's largest output gradient; ``share``: the
    fraction of the counted images for which it does; ``probability``: its mean gradient (= mean
    softmax probability) over those images."""
    cls: int
    share: float
    probability: float


def dominant_class_share(grads: torch.Tensor, labels: torch.Tensor | None = None) -> DominantClass:
    """Figure 6's "one yellow column": the class that most often takes the largest positive output
    gradient of an image (its strongest wrong prediction), and for how many images it does. With
    ``labels``, images of that class itself are left out of the count (their entry there is
    negative, the paper's exceptions)."""
    if grads.dim() != 2 or len(grads) == 0:
        raise ValueError(f"expected output gradients [B, classes], got shape {tuple(grads.shape)}")
    top = grads.argmax(dim=1)
    cls = int(torch.bincount(top, minlength=grads.shape[1]).argmax())
    keep = torch.ones(len(grads), dtype=torch.bool) if labels is None else labels.cpu() != cls
    if labels is not None and len(labels) != len(grads):
        raise ValueError(f"labels has {len(labels)} entries but grads {len(grads)} rows")
    if not keep.any():
        return DominantClass(cls, math.nan, math.nan)
    kept = top.cpu()[keep]
    return DominantClass(cls, float((kept == cls).float().mean()), float(grads.cpu()[keep, cls].mean()))


def channel_gradient_map(model, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """M_{i,o} = Σ_{x',y'} |∂L/∂K_{o,i,x',y'}| [in channels, out channels] at conv layer k (Figure 7)."""
    grad = kernel_gradient(model, x, y, k)
    if grad.dim() != 4:
        raise ValueError(f"layer {k} is not a convolution; Figure 7's map needs a conv kernel")
    return grad.abs().sum(dim=(2, 3)).T


def top_singular_share(matrix: torch.Tensor) -> float:
    """s_1² / Σ s_i²: the share of the squared Frobenius norm in the top singular direction
    (1 for a rank-one matrix; 2/π ≈ 0.64 for a large matrix of iid |Gaussian| entries)."""
    s = torch.linalg.svdvals(torch.as_tensor(matrix, dtype=torch.float64))
    total = float((s ** 2).sum())
    return float(s[0] ** 2) / total if total > 0 else math.nan


def _snapshot(model):
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@torch.no_grad()
def step_loss_ratios(model, x: torch.Tensor, y: torch.Tensor, steps, use_existing_grad: bool = False) -> np.ndarray:
    """L(θ − α∇L(θ)) / L(θ) on the same batch for each step size α in ``steps`` (Figure 3).

    The gradient is of the mean cross-entropy at θ (or the ``.grad`` already present with
    ``use_existing_grad=True``, e.g. inside a training callback). The model (parameters and BN
    buffers) is restored afterwards. A NaN or infinite loss gives a NaN or inf ratio."""
    _check_batch(x, y)
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


class ProbeRun(NamedTuple):
    """``ratios``: {mini-batch number: loss ratios along its gradient}; ``history``: the training run."""
    ratios: dict[int, np.ndarray]
    history: _train.History


def probe_training_steps(model, x: torch.Tensor, y: torch.Tensor, steps, *, lr: float, batch_size: int,
                         batches=(1, 4, 7), generator: torch.Generator | None = None, momentum: float = 0.9,
                         weight_decay: float = 1e-4, diverge_above: float | None = 1e3) -> ProbeRun:
    """Figure 3's probe: train normally (SGD, momentum, weight decay, :func:`gradprobe.train.fit`)
    and at the mini-batches numbered ``batches`` (1 = the first) scan the loss ratio along that
    batch's gradient (:func:`step_loss_ratios`) before the update is taken. A run that diverges
    (loss above ``diverge_above`` or not finite) stops and leaves the later batches out."""
    batches = sorted(set(batches))
    if not batches or batches[0] < 1:
        raise ValueError(f"mini-batch numbers start at 1, got {batches!r}")
    found = {}

    def callback(step, net, xb, yb, loss):
        if step + 1 in batches:
            found[step + 1] = step_loss_ratios(net, xb, yb, steps, use_existing_grad=True)

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = _train.fit(model, x, y, steps=batches[-1], batch_size=batch_size, optimizer=opt, generator=generator,
                         callback=callback, diverge_above=diverge_above)
    return ProbeRun(found, history)


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
    for name, value in (("batch_size", batch_size), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
            raise ValueError(f"the loss is already {value:.4g} > {threshold:g} before update {step}: "
                             "the start is diverged (check the input scale, see mean_subtracted)")
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
    variances of the outputs of ``layers`` (:func:`channel_moments`). The model's state is
    restored afterwards. Overflowed values appear as inf or NaN."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) == 0:
        raise ValueError(f"fractions must be a non-empty 1-d sequence, got {fractions!r}")
    layers = [layers] if isinstance(layers, int) else list(layers)
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
            handles = [_layer(model, k).register_forward_hook(
                lambda mod, inp, out, k=k: found.__setitem__(k, _moments(out))) for k in layers]
            try:
                out = model(update.xb)
            finally:
                for h in handles:
                    h.remove()
            loss.append(float(F.cross_entropy(out.double(), update.yb)))
            for k in layers:
                means[k].append(found[k].mean.cpu().numpy())
                variances[k].append(found[k].var.cpu().numpy())
    finally:
        model.load_state_dict(saved)
    return Sweep(fractions, np.array(loss), {k: np.stack(v) for k, v in means.items()},
                 {k: np.stack(v) for k, v in variances.items()})
