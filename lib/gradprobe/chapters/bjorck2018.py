"""Chapter *Understanding Batch Normalization* (Bjorck et al. 2018): the layers of its Figure 5,
the dominant class of its Figure 6 and the step-size probe of its Figure 3. The measurements
themselves are :mod:`gradprobe.measure.kernels` and :mod:`gradprobe.measure.steps`."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ..measure.steps import step_loss_ratios
from ..train.loop import History, fit

__all__ = ["FIGURE5_LAYERS", "DominantClass", "dominant_class_share", "ProbeRun", "probe_training_steps"]

# Figure 5's layers in ResNet-110: every 12th from 6, and the final (classification) layer
FIGURE5_LAYERS = tuple(range(6, 103, 12)) + (110,)


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


class ProbeRun(NamedTuple):
    """``ratios``: {mini-batch number: loss ratios along its gradient}; ``history``: the training run."""
    ratios: dict[int, np.ndarray]
    history: History


def probe_training_steps(model, x: torch.Tensor, y: torch.Tensor, steps, *, lr: float, batch_size: int,
                         batches=(1, 4, 7), generator: torch.Generator | None = None, momentum: float = 0.9,
                         weight_decay: float = 1e-4, diverge_above: float | None = 1e3) -> ProbeRun:
    """Figure 3's probe: train normally (SGD, momentum, weight decay,
    :func:`gradprobe.train.loop.fit`) and at the mini-batches numbered ``batches`` (1 = the first)
    scan the loss ratio along that batch's gradient (:func:`gradprobe.measure.steps.step_loss_ratios`)
    before the update is taken. A run that diverges (loss above ``diverge_above`` or not finite)
    stops and leaves the later batches out."""
    batches = sorted(set(batches))
    if not batches or batches[0] < 1:
        raise ValueError(f"mini-batch numbers start at 1, got {batches!r}")
    found = {}

    def callback(step, net, xb, yb, loss):
        if step + 1 in batches:
            found[step + 1] = step_loss_ratios(net, xb, yb, steps, use_existing_grad=True)

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = fit(model, x, y, steps=batches[-1], batch_size=batch_size, optimizer=opt, generator=generator,
                  callback=callback, diverge_above=diverge_above)
    return ProbeRun(found, history)
