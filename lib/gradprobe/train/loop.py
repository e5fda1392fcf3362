"""Training: a plain SGD-style loop that records every step and survives divergence (a NaN, an
infinity or a loss above a threshold ends the run and is recorded), and evaluation.

    data = cifar10_tensors(n_train=5000, n_test=1000, device=dev, generator=gen.data)
    hist = fit(net, data.train_x, data.train_y, steps=500, batch_size=128,
               optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
               generator=gen.data)
    loss, acc = evaluate(net, data.test_x, data.test_y)

(``cifar10_tensors`` is :func:`gradprobe.data.tensors.cifar10_tensors`.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..checks import positive_int
from ..data.tensors import augment
from ..runtime import progress

__all__ = ["History", "fit", "evaluate"]


@dataclass
class History:
    """Per-step training record. ``loss``/``accuracy`` are of the mini-batch before the update;
    ``diverged_at`` is the step whose loss was non-finite or above the threshold (None if none);
    ``evals`` holds (step, test loss, test accuracy) tuples when evaluation was asked for."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    evals: list[tuple[int, float, float]] = field(default_factory=list)
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def steps(self) -> int:
        return len(self.loss)


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, batch_size: int,
        optimizer: torch.optim.Optimizer, generator: torch.Generator | None = None,
        schedule: Callable[[int], float] | None = None, callback: Callable | None = None,
        diverge_above: float | None = None, eval_every: int | None = None, eval_data=None,
        augment_data: bool = False, on_forward: Callable | None = None) -> History:
    """Minimize the cross-entropy of ``model`` on (x, y) for ``steps`` mini-batch steps.

    Mini-batches walk through a fresh random permutation each epoch (``generator``).
    ``schedule(step)`` multiplies every parameter group's initial lr (e.g. a warm-up).
    ``callback(step, model, xb, yb, loss)`` runs after the backward pass and before the update,
    so it sees this step's gradients at the pre-update weights. ``on_forward(step, out, yb)``
    runs after every forward pass, before the divergence check, with the mini-batch's output
    (detached) and labels (e.g. to record how much the output varies across images). A loss that
    is NaN, infinite or above ``diverge_above`` stops the run: it is recorded
    (``History.diverged_at``), not raised.
    ``eval_every`` with ``eval_data=(x_test, y_test)`` evaluates every that many steps and at the end.
    """
    positive_int("steps", steps)
    positive_int("batch_size", batch_size)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    if batch_size > len(x):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(x)} training examples")
    if eval_every is not None and eval_data is None:
        raise ValueError("eval_every needs eval_data=(x_test, y_test)")
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    hist, order, pos = History(), torch.empty(0, dtype=torch.long), 0
    model.train()
    for step in progress(range(steps), desc="training"):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(x), generator=generator), 0
        idx = order[pos:pos + batch_size].to(x.device)
        pos += batch_size
        xb, yb = x[idx], y[idx]
        if augment_data:
            xb = augment(xb.cpu(), generator).to(x.device)
        factor = 1.0 if schedule is None else float(schedule(step))
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * factor
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        value = float(loss.detach())
        hist.loss.append(value)
        hist.accuracy.append(float((out.detach().argmax(1) == yb).float().mean()))
        hist.lr.append(base_lrs[0] * factor)
        if on_forward is not None:
            on_forward(step, out.detach(), yb)
        if not math.isfinite(value) or (diverge_above is not None and value > diverge_above):
            hist.diverged_at = step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if callback is not None:
            callback(step, model, xb, yb, value)
        optimizer.step()
        if eval_every is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            hist.evals.append((step + 1, *evaluate(model, *eval_data)))
    return hist


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y) in eval mode (BatchNorm uses its
    running statistics); the model's train/eval mode is restored afterwards. A diverged model
    gives a NaN or infinite loss, not an error."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y need the same, non-zero length, got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        total += float(F.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
    model.train(was_training)
    return total / len(x), correct / len(x)
