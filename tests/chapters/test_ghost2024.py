"""gradprobe.chapters.ghost2024: the tables and sweeps of the ghost paper's Appendix B."""
import math

import pytest
import torch
from torch import nn

from gradprobe.chapters import ghost2024 as G
from gradprobe.networks.mlp import mlp, scaled_residual_net
from gradprobe.theory.distributions import DISTRIBUTIONS
from gradprobe.theory.operators import OPERATORS, batchnorm_z_moments


def gen(n=0):
    return torch.Generator().manual_seed(n)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_relu_b14(dist):
    out = G.relu_b14(dist, 400_000, gen(8))
    assert out["var"] == pytest.approx(out["exact_var"], abs=0.01)
    assert out["var"] <= out["bound"] and out["bound"] < out["backward"]


def test_batchnorm_z_has_the_exact_moments():
    for b in (8, 256):
        z = G.batchnorm_z(b, 16384, sigma=3.0, generator=gen(b))
        assert (z >= -1e-9).all() and (z <= b + 1e-9).all()  # z = B ρ̂², ρ̂ a correlation
        mean, var = batchnorm_z_moments(b)
        assert z.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 16384))
        assert z.var().item() == pytest.approx(var, rel=0.15)
    with pytest.raises(ValueError, match="batch must be an integer >= 2"):
        G.batchnorm_z(1)


def test_operator_table_has_every_operator_and_agrees():
    table = G.operator_table(batches=(16, 32), samples=4096, features=2048, generator=gen(3))
    assert set(table["operator"]) == set(OPERATORS) and (table["operator"] == "batchnorm").sum() == 2
    for col in ("R_f", "R_b"):
        rel = ((table[f"{col} measured"] - table[f"{col} theory"]).abs() / table[f"{col} theory"]).max()
        assert rel < 0.06


def test_b17_block_matches_prediction_and_network_stays_bounded():
    g = gen(9)
    net = scaled_residual_net(8, width=32, generator=g)
    out = G.block_ratios(net[0], torch.randn(512, 32, generator=g), torch.randn(512, 32, generator=g))
    for measured, predicted in zip(out["block"], out["predicted"]):
        assert measured == pytest.approx(predicted, rel=0.05)
    rf, rb = G.network_ratios(net, repeats=2, generator=g)
    assert rb / rf < 3
    prf, prb = G.network_ratios(mlp(16, 32, "relu", norm="batch", generator=g), repeats=2, generator=g)
    assert prb / prf > 100  # ≈ 1.467^16 ≈ 460
    with pytest.raises(ValueError, match="ScaledResidualBlock"):
        G.block_ratios(nn.Identity(), torch.zeros(2, 2), torch.zeros(2, 2))


def test_tables():
    b12 = G.b12_table(("relu", "identity"), ("gaussian",), n=50_000, generator=gen(10))
    assert list(b12["holds"]) == [True, True]
    assert b12.loc[b12.activation == "identity", "Var[g(x)]"].item() == pytest.approx(1.0, abs=1e-9)
    assert b12.loc[b12.activation == "relu", "R_b/R_f"].item() == pytest.approx(math.pi / (math.pi - 1), rel=0.03)
    b14 = G.b14_table(n=50_000, generator=gen(11))
    assert list(b14["input"]) == list(DISTRIBUTIONS) and b14["holds"].all()
    sweep = G.b17_sweep(blocks=(2, 4), width=16, repeats=1, batch=64, generator=gen(12))
    assert list(sweep["layers"]) == [4, 8]
    assert (sweep["plain R_b/R_f"] > sweep["resnet R_b/R_f"]).all()
