"""gradprobe.measure.stats: Var[x], the scaling ratios (R_f, R_b) and per-channel moments."""
import pytest
import torch
from torch import nn

from gradprobe.measure.stats import moments, scaling_ratios, variance


def gen(n=0):
    return torch.Generator().manual_seed(n)


def test_variance_is_mean_of_per_feature_variances():
    x = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    assert variance(x).item() == pytest.approx((1.0 + 4.0) / 2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        variance(torch.ones(1, 3))


def test_scaling_ratios_of_a_scalar_multiple_are_exact():
    x, g = torch.randn(64, 8, generator=gen()), torch.randn(64, 8, generator=gen(1))
    rf, rb = scaling_ratios(lambda t: 3.0 * t, x, g)
    assert rf == pytest.approx(9.0, rel=1e-5) and rb == pytest.approx(9.0, rel=1e-5)
    with pytest.raises(ValueError, match="grad_y has shape"):
        scaling_ratios(lambda t: t, x, torch.randn(64, 9))


def test_measured_operators_match_known_ratios():
    g = gen(2)
    x = torch.randn(32768, 32, generator=g)
    rf, rb = scaling_ratios(torch.relu, x, torch.randn(32768, 32, generator=g))
    assert rf == pytest.approx(0.3408, rel=0.02) and rb == pytest.approx(0.5, rel=0.02)
    x = torch.randn(4096, 8, 8, 8, generator=g)
    rf, rb = scaling_ratios(nn.MaxPool2d(2), x, torch.randn(4096, 8, 4, 4, generator=g))
    assert rf == pytest.approx(0.4917, rel=0.02) and rb == pytest.approx(0.25, rel=0.02)


def test_moments_are_per_channel_over_batch_and_space():
    out = torch.randn(5, 3, 4, 4, generator=gen(3))
    m = moments(out)
    assert m.mean.dtype == torch.float64 and m.mean.shape == (3,)
    assert torch.allclose(m.mean, out.double().mean(dim=(0, 2, 3)))
    assert torch.allclose(m.var, out.double().var(dim=(0, 2, 3), unbiased=False))
    assert moments(torch.ones(4, 2)).var.eq(0).all()                     # a Linear's output: per feature
    with pytest.raises(ValueError, match="batch of channels"):
        moments(torch.ones(3))
