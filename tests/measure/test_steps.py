"""gradprobe.measure.steps: the loss along a gradient step or an update."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradprobe.measure.steps import find_diverging_update, interpolation_sweep, largest_useful_step, step_loss_ratios
from small_resnets import batch, gen, net


def test_step_loss_ratios_restore_the_model_and_survive_overflow():
    torch.set_flush_denormal(True)
    x, y = batch()
    model = net("batch")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ratios = step_loss_ratios(model, x, y, [1e-4, 1e-2, 1e30])
    assert ratios[0] < 1                                     # a tiny step along −∇ lowers the loss
    assert not np.isfinite(ratios[2]) or ratios[2] > 1       # an absurd one does not: inf/NaN is data
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the same number by hand
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        base = float(F.cross_entropy(model(x), y))
        for p in model.parameters():
            p -= 1e-2 * p.grad
        stepped = float(F.cross_entropy(model(x), y))
    assert ratios[1] == pytest.approx(stepped / base, rel=1e-4)
    with pytest.raises(ValueError, match="positive"):
        step_loss_ratios(model, x, y, [0.0])


def test_largest_useful_step():
    steps = [1e-3, 1e-2, 1e-1, 1.0]
    assert largest_useful_step(steps, [0.9, 0.5, 2.0, 0.1]) == 1e-2
    assert largest_useful_step(steps, [0.9, 0.5, 0.4, 0.3]) == 1.0
    assert largest_useful_step(steps, [0.9, np.nan, 0.4, 0.3]) == 1e-3
    assert math.isnan(largest_useful_step(steps, [1.1, 0.5, 0.4, 0.3]))


def test_find_diverging_update_and_sweep():
    torch.set_flush_denormal(True)
    x, y = batch(64)
    model = net(None, depth=14)
    upd = find_diverging_update(model, x, y, lr=50.0, batch_size=16, max_steps=20, generator=gen(3))
    assert upd is not None
    assert not math.isfinite(upd.loss_after) or upd.loss_after > 1e3
    assert upd.loss_before <= 1e3 and len(upd.losses) == upd.step + 1
    for n, p in model.named_parameters():                     # left at the diverged weights
        assert torch.allclose(upd.params_before[n] + upd.delta[n], p, equal_nan=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    sweep = interpolation_sweep(model, upd, np.linspace(0, 1, 5), [3, 9])
    assert sweep.loss[0] == pytest.approx(upd.loss_before, rel=1e-4)
    if math.isfinite(upd.loss_after):
        assert sweep.loss[-1] == pytest.approx(upd.loss_after, rel=1e-3)
    assert sweep.means[3].shape == (5, 16) and sweep.variances[9].shape == (5, 32)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_find_diverging_update_small_lr_and_diverged_start():
    x, y = batch(32)
    assert find_diverging_update(net(None), x, y, lr=1e-5, batch_size=16, max_steps=2, generator=gen()) is None
    with pytest.raises(ValueError, match="already"):
        find_diverging_update(net(None), x, y, lr=1e-5, batch_size=16, max_steps=2, threshold=0.01)
