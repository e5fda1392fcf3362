"""gradprobe.train.schedules: learning-rate factors per step."""
import pytest
import torch
from torch import nn

from gradprobe.train.schedules import linear_warmup, step_decay


def test_linear_warmup_factors_and_lambda_lr():
    f = linear_warmup(4)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert linear_warmup(0)(0) == 1.0
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=2.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup(2))
    assert opt.param_groups[0]["lr"] == 1.0
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 2.0


def test_step_decay_divides_by_ten_at_half_and_three_quarters():
    f = step_decay(8)
    assert [f(s) for s in range(8)] == [1.0] * 4 + [0.1] * 2 + [0.1 ** 2] * 2
    # the expression the Bjorck chapter used before, for any length of run
    for steps in (7, 8, 100, 64000):
        f = step_decay(steps)
        for s in (0, steps // 2 - 1, steps // 2, 3 * steps // 4 - 1, 3 * steps // 4, steps - 1):
            assert f(s) == 0.1 ** ((s >= steps // 2) + (s >= 3 * steps // 4))
    assert step_decay(10, at=(0.3,), factor=0.5)(3) == 0.5


def test_schedule_errors():
    with pytest.raises(ValueError, match="warmup_steps"):
        linear_warmup(-1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        step_decay(0)
    with pytest.raises(ValueError, match="fractions of the run"):
        step_decay(10, at=(1.5,))
    with pytest.raises(ValueError, match="factor must be > 0"):
        step_decay(10, factor=0)
