"""gradprobe.train.loop: fit records every step and survives divergence; evaluate."""
import math

import pytest
import torch
from torch import nn

from gradprobe.train import loop as train


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] > 0).long()


def test_fit_learns_a_separable_problem_and_records_every_step():
    x, y = _toy()
    torch.manual_seed(0)
    net = nn.Linear(2, 2)
    hist = train.fit(net, x, y, steps=50, batch_size=32, optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
                     generator=torch.Generator().manual_seed(1), eval_every=25, eval_data=(x, y))
    assert hist.steps == 50 and not hist.diverged
    assert hist.loss[-1] < hist.loss[0]
    assert [e[0] for e in hist.evals] == [25, 50] and hist.evals[-1][2] > 0.95


def test_divergence_is_recorded_not_raised():
    x, y = _toy()
    net = nn.Linear(2, 2)
    hist = train.fit(net, x, y, steps=30, batch_size=32, optimizer=torch.optim.SGD(net.parameters(), lr=1e6),
                     generator=torch.Generator().manual_seed(1), diverge_above=1e3)
    assert hist.diverged and hist.diverged_at == hist.steps - 1
    assert hist.loss[-1] > 1e3 or not math.isfinite(hist.loss[-1])


def test_schedule_scales_lr_and_callback_sees_gradients():
    x, y = _toy()
    net = nn.Linear(2, 2)
    seen = []
    hist = train.fit(net, x, y, steps=4, batch_size=64, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
                     schedule=lambda s: (s + 1) / 4, callback=lambda s, m, xb, yb, loss: seen.append(m.weight.grad is not None))
    assert hist.lr == pytest.approx([0.025, 0.05, 0.075, 0.1]) and seen == [True] * 4


def test_evaluate_restores_mode_and_survives_nan():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    x, y = _toy(64)
    loss, acc = train.evaluate(net, x, y, batch_size=10)
    assert net.training and 0 <= acc <= 1 and math.isfinite(loss)
    with torch.no_grad():
        net[0].weight.fill_(float("nan"))
    assert math.isnan(train.evaluate(net, x, y)[0])


def test_fit_refuses_bad_arguments():
    x, y = _toy(16)
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        train.fit(net, x, y, steps=0, batch_size=4, optimizer=opt)
    with pytest.raises(ValueError, match="exceeds the 16 training examples"):
        train.fit(net, x, y, steps=1, batch_size=32, optimizer=opt)
    with pytest.raises(ValueError, match="x has 16 examples but y has 15"):
        train.fit(net, x, y[:15], steps=1, batch_size=4, optimizer=opt)
    with pytest.raises(ValueError, match="eval_every needs eval_data"):
        train.fit(net, x, y, steps=1, batch_size=4, optimizer=opt, eval_every=1)


def test_on_forward_sees_every_output_also_the_diverging_one():
    x, y = _toy()
    net = nn.Linear(2, 2)
    seen = []
    hist = train.fit(net, x, y, steps=30, batch_size=32, optimizer=torch.optim.SGD(net.parameters(), lr=1e6),
                     generator=torch.Generator().manual_seed(1), diverge_above=1e3,
                     on_forward=lambda s, out, yb: seen.append((s, out.shape, out.requires_grad, len(yb))))
    assert hist.diverged and [s for s, *_ in seen] == list(range(hist.steps))
    assert all(shape == (32, 2) and not grad and n == 32 for _, shape, grad, n in seen)
