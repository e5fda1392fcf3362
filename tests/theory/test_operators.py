"""gradprobe.theory.operators: the ghost paper's (R_f, R_b) of single operators."""
import math

import pytest
import torch

from gradprobe.measure.stats import scaling_ratios
from gradprobe.theory.operators import OPERATORS, batchnorm_z_moments, theory_ratios


def gen(n=0):
    return torch.Generator().manual_seed(n)


def test_theory_values():
    assert theory_ratios("relu") == pytest.approx(((math.pi - 1) / (2 * math.pi), 0.5))
    assert theory_ratios("maxpool2x2") == pytest.approx((0.4917, 0.25), abs=1e-4)
    assert theory_ratios("batchnorm", sigma=2.0, batch=8) == pytest.approx((0.25, 0.25 * 7 / 8))
    w = torch.ones(4, 2)
    assert theory_ratios("linear", weight=w) == pytest.approx((8 / 4, 8 / 2))
    for operator in OPERATORS:                                  # every operator has its ratios
        kw = {"linear": dict(weight=w), "batchnorm": dict(batch=4)}.get(operator, {})
        assert all(r > 0 for r in theory_ratios(operator, **kw))


@pytest.mark.parametrize("kwargs,match", [
    (dict(operator="conv"), "unknown operator"), (dict(operator="linear"), "weight=W"),
    (dict(operator="batchnorm", batch=1), "batch=B"), (dict(operator="batchnorm", batch=8, sigma=0.0), "sigma"),
])
def test_theory_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        theory_ratios(**kwargs)


def test_measured_linear_map_matches_theory():
    g = gen(2)
    w = torch.randn(96, 48, generator=g) * 0.2
    rf, rb = scaling_ratios(lambda t: t @ w.T, torch.randn(32768, 48, generator=g), torch.randn(32768, 96, generator=g))
    tf, tb = theory_ratios("linear", weight=w)
    assert rf == pytest.approx(tf, rel=0.03) and rb == pytest.approx(tb, rel=0.03)


def test_batchnorm_z_moments():
    assert batchnorm_z_moments(8) == pytest.approx((8 / 7, 2 * 64 * 6 / (49 * 9)))
    assert batchnorm_z_moments(10**6) == pytest.approx((1.0, 2.0), rel=1e-5)  # the paper's E z = 1, Var z = 2
    with pytest.raises(ValueError, match="batch must be an integer >= 3"):
        batchnorm_z_moments(2)


def test_average_pool_is_the_linear_map_of_prop_b4():
    rf, rb = theory_ratios("avgpool2x2")
    w = torch.full((1, 4), 0.25)                                    # one output from four inputs
    assert (rf, rb) == pytest.approx(theory_ratios("linear", weight=w))
    assert rb / rf == pytest.approx(0.25) and rb / rf < theory_ratios("maxpool2x2")[1] / theory_ratios("maxpool2x2")[0]
    g = torch.Generator().manual_seed(0)
    x, gy = torch.randn(4096, 8, 8, 8, generator=g), torch.randn(4096, 8, 4, 4, generator=g)
    assert scaling_ratios(torch.nn.AvgPool2d(2), x, gy) == pytest.approx((rf, rb), rel=0.02)

