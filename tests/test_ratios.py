import math

import pytest
import torch
from torch import nn

from gradprobe import ratios as R


def gen(n=0):
    return torch.Generator().manual_seed(n)


def test_variance_is_mean_of_per_feature_variances():
    x = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    assert R.variance(x).item() == pytest.approx((1.0 + 4.0) / 2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        R.variance(torch.ones(1, 3))


def test_scaling_ratios_of_a_scalar_multiple_are_exact():
    x, g = torch.randn(64, 8, generator=gen()), torch.randn(64, 8, generator=gen(1))
    rf, rb = R.scaling_ratios(lambda t: 3.0 * t, x, g)
    assert rf == pytest.approx(9.0, rel=1e-5) and rb == pytest.approx(9.0, rel=1e-5)
    with pytest.raises(ValueError, match="grad_y has shape"):
        R.scaling_ratios(lambda t: t, x, torch.randn(64, 9))


def test_theory_values():
    assert R.theory_ratios("relu") == pytest.approx(((math.pi - 1) / (2 * math.pi), 0.5))
    assert R.max_of_gaussians_variance(4) == pytest.approx(0.4917, abs=1e-4)
    assert R.max_of_gaussians_variance(1) == pytest.approx(1.0, abs=1e-9)
    assert R.theory_ratios("maxpool2x2")[1] == 0.25
    assert R.theory_ratios("batchnorm", sigma=2.0, batch=8) == pytest.approx((0.25, 0.25 * 7 / 8))
    w = torch.ones(4, 2)
    assert R.theory_ratios("linear", weight=w) == pytest.approx((8 / 4, 8 / 2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(operator="conv"), "unknown operator"), (dict(operator="linear"), "weight=W"),
    (dict(operator="batchnorm", batch=1), "batch=B"), (dict(operator="batchnorm", batch=8, sigma=0.0), "sigma"),
])
def test_theory_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        R.theory_ratios(**kwargs)


def test_measured_operators_match_theory():
    g = gen(2)
    x = torch.randn(32768, 32, generator=g)
    rf, rb = R.scaling_ratios(torch.relu, x, torch.randn(32768, 32, generator=g))
    assert rf == pytest.approx(0.3408, rel=0.02) and rb == pytest.approx(0.5, rel=0.02)
    x = torch.randn(4096, 8, 8, 8, generator=g)
    rf, rb = R.scaling_ratios(nn.MaxPool2d(2), x, torch.randn(4096, 8, 4, 4, generator=g))
    assert rf == pytest.approx(0.4917, rel=0.02) and rb == pytest.approx(0.25, rel=0.02)
    w = torch.randn(96, 48, generator=g) * 0.2
    rf, rb = R.scaling_ratios(lambda t: t @ w.T, torch.randn(32768, 48, generator=g), torch.randn(32768, 96, generator=g))
    tf, tb = R.theory_ratios("linear", weight=w)
    assert rf == pytest.approx(tf, rel=0.03) and rb == pytest.approx(tb, rel=0.03)


def test_batchnorm_z_moments():
    assert R.batchnorm_z_moments(8) == pytest.approx((8 / 7, 2 * 64 * 6 / (49 * 9)))
    assert R.batchnorm_z_moments(10**6) == pytest.approx((1.0, 2.0), rel=1e-5)  # the paper's E z = 1, Var z = 2
    for b in (8, 256):
        z = R.batchnorm_z(b, 16384, sigma=3.0, generator=gen(b))
        assert (z >= -1e-9).all() and (z <= b + 1e-9).all()  # z = B ρ̂², ρ̂ a correlation
        mean, var = R.batchnorm_z_moments(b)
        assert z.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 16384))
        assert z.var().item() == pytest.approx(var, rel=0.15)


def test_operator_table_columns_and_agreement():
    table = R.operator_table(batches=(16,), samples=4096, features=2048, generator=gen(3))
    assert list(table["operator"]) == ["linear", "relu", "maxpool2x2", "batchnorm"]
    for col in ("R_f", "R_b"):
        rel = ((table[f"{col} measured"] - table[f"{col} theory"]).abs() / table[f"{col} theory"]).max()
        assert rel < 0.06


@pytest.mark.parametrize("act", ["relu", "tanh", "selu", "gelu"])
def test_b12_holds_for_gaussian_input(act):
    var, back = R.activation_moments(act, "gaussian", 200_000, gen(4))
    assert var < back


def test_b12_equality_for_affine_and_failure_off_gaussian():
    var, back = R.activation_moments("identity", "uniform", 100_000, gen(5))
    assert back == 1.0 and var == pytest.approx(1.0, abs=0.02)
    # Chernoff's inequality needs the Gaussian: for uniform input tanh violates it
    var, back = R.activation_moments("tanh", "uniform", 200_000, gen(6))
    assert var > back


@pytest.mark.parametrize("dist", R.DISTRIBUTIONS)
def test_samples_are_standardized_and_b14(dist):
    x = R.sample(dist, (400_000,), gen(7))
    assert x.mean().item() == pytest.approx(0.0, abs=0.01)
    assert x.var().item() == pytest.approx(1.0, abs=0.01)
    assert x.abs().mean().item() == pytest.approx(R.mean_abs(dist), abs=0.01)
    out = R.relu_b14(dist, 400_000, gen(8))
    assert out["var"] == pytest.approx(out["exact_var"], abs=0.01)
    assert out["var"] <= out["bound"] and out["bound"] < out["backward"]


def test_distribution_and_activation_errors():
    with pytest.raises(ValueError, match="unknown distribution"):
        R.sample("cauchy", (3,))
    with pytest.raises(ValueError, match="unknown activation"):
        R.activation_moments("dropout")


def test_b17_block_matches_prediction_and_network_stays_bounded():
    g = gen(9)
    net = R.scaled_residual_net(8, width=32, generator=g)
    out = R.block_ratios(net[0], torch.randn(512, 32, generator=g), torch.randn(512, 32, generator=g))
    for measured, predicted in zip(out["block"], out["predicted"]):
        assert measured == pytest.approx(predicted, rel=0.05)
    rf, rb = R.network_ratios(net, repeats=2, generator=g)
    assert rb / rf < 3
    prf, prb = R.network_ratios(R.plain_net(16, width=32, generator=g), repeats=2, generator=g)
    assert prb / prf > 100  # ≈ 1.467^16 ≈ 460
    with pytest.raises(ValueError, match="ResidualBlock"):
        R.block_ratios(nn.Identity(), torch.zeros(2, 2), torch.zeros(2, 2))


def test_tables():
    b12 = R.b12_table(("relu", "identity"), ("gaussian",), n=50_000, generator=gen(10))
    assert list(b12["holds"]) == [True, True]
    assert b12.loc[b12.activation == "identity", "Var[g(x)]"].item() == pytest.approx(1.0, abs=1e-9)
    assert b12.loc[b12.activation == "relu", "R_b/R_f"].item() == pytest.approx(math.pi / (math.pi - 1), rel=0.03)
    b14 = R.b14_table(n=50_000, generator=gen(11))
    assert list(b14["input"]) == list(R.DISTRIBUTIONS) and b14["holds"].all()
    sweep = R.b17_sweep(blocks=(2, 4), width=16, repeats=1, batch=64, generator=gen(12))
    assert list(sweep["layers"]) == [4, 8]
    assert (sweep["plain R_b/R_f"] > sweep["resnet R_b/R_f"]).all()
