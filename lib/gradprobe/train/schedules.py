"""Learning-rate schedules for :func:`gradprobe.train.loop.fit` (``schedule=``) or
``torch.optim.lr_scheduler.LambdaLR``: functions of the step (0, 1, ...) that return the factor
by which every parameter group's initial learning rate is multiplied. They are picklable
(``functools.partial`` of module functions), so a run can be sent to another process."""
from __future__ import annotations

import functools

from ..checks import nonnegative_int, positive, positive_int

__all__ = ["linear_warmup", "step_decay"]


def linear_warmup(warmup_steps: int):
    """The schedule factor(step) = min(1, (step + 1)/warmup_steps) (Goyal et al. 2017's gradual
    warm-up, linear from γ/warmup_steps at step 0 to γ at step warmup_steps − 1).
    ``warmup_steps=0`` means no warm-up (factor 1)."""
    nonnegative_int("warmup_steps", warmup_steps)
    return functools.partial(_warmup_factor, warmup_steps)


def _warmup_factor(warmup_steps: int, step: int) -> float:
    return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)


def step_decay(steps: int, at=(0.5, 0.75), factor: float = 0.1):
    """The schedule factor(step) = ``factor`` ** (the number of boundaries the step has reached),
    with one boundary at int(f · steps) for each fraction f in ``at`` (He et al. 2016's ÷10 at 50%
    and 75% of training by default): 1 before steps/2, 0.1 from there, 0.01 from 3·steps/4."""
    positive_int("steps", steps)
    positive("factor", factor)
    fractions = tuple(at)
    if not all(0 <= f <= 1 for f in fractions):
        raise ValueError(f"at must hold fractions of the run in [0, 1], got {at!r}")
    return functools.partial(_step_decay_factor, tuple(int(f * steps) for f in fractions), factor)


def _step_decay_factor(boundaries: tuple[int, ...], factor: float, step: int) -> float:
    return factor ** sum(step >= b for b in boundaries)
