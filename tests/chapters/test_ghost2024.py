"""gradprobe.chapters.ghost2024: the drivers, figures and claims of the ghost chapter, at tiny sizes."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

import gradprobe
from gradprobe.book.scales import settings
from gradprobe.chapters import ghost2024 as G
from gradprobe.data.cifar10 import DataError, cifar10
from gradprobe.measure.stats import network_ratios
from gradprobe.measure.repeats import repeated_gradient_norms
from gradprobe.networks.mlp import mlp, scaled_residual_net
from gradprobe.theory import gaussian
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
    rf, rb = network_ratios(net, repeats=2, generator=g)
    assert rb / rf < 3
    prf, prb = network_ratios(mlp(16, 32, "relu", norm="batch", generator=g), repeats=2, generator=g)
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


# ---------------------------------------------------------------- drivers, figures and claims of the notebook
TINY_BOOK = dict(depth=12, width=32, batch=64, repeats=8, repeats_fig3=4, chunk=4, vgg_divisor=8, resnet_width=4,
                 image_size=16, train_images=64, train_steps=2, train_batch=16, calib_images=32, test_images=32)
TINY = settings("book", book=TINY_BOOK)

@pytest.fixture(scope="module")
def norms():
    return G.measure_figure1_left(TINY, gradprobe.seed(0), "cpu")


@pytest.fixture(scope="module")
def fig3():
    return G.measure_figure3(TINY, gradprobe.seed(1), "cpu")


@pytest.fixture(scope="module")
def tables():
    g = gen(20)
    return (G.operator_table(batches=(16, 32, 64), samples=4096, features=2048, generator=g),
            G.b12_table(n=20_000, generator=g), G.b14_table(n=20_000, generator=g),
            G.b17_sweep(blocks=(2, 4, 8), width=16, repeats=1, batch=64, generator=g))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Figures and claims files go to the working directory: make it a temporary one."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    plt.close("all")


@pytest.fixture
def cifar10_available():
    """Skip (when the test runs, not when tests are collected) unless CIFAR-10 can be loaded."""
    try:
        cifar10("test", download=False)
    except (DataError, OSError) as err:
        pytest.skip(f"CIFAR-10 not available (set GRADPROBE_DATA): {err}")


def labelled(ax) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel()) and bool(ax.get_title())


def fake_trained(growth: float, layers: int = 16) -> G.TrainedBN:
    """σ flat at initialization and, after 'training', growing by ``growth`` per layer toward the input."""
    init = torch.ones(layers)
    trained = growth ** -torch.arange(layers, dtype=torch.float64)
    return G.TrainedBN([G.VGG, G.RESNET], [2, 4], {G.VGG: init, G.RESNET: init}, {G.VGG: trained, G.RESNET: init},
                       {G.VGG: 0.5, G.RESNET: 0.5}, {G.VGG: False, G.RESNET: False}, steps=3)


def test_figure1_left_draws_plain_then_resnet_and_explodes_at_the_relu_rate(norms):
    assert norms.plain.shape == norms.resnet.shape == (TINY.repeats, TINY.depth)
    g = gradprobe.seed(0).weights  # the driver's draws, in its order: all plain networks, then all ResNets
    shape = dict(depth=TINY.depth, width=TINY.width, batch=TINY.batch, chunk=TINY.chunk, device="cpu", generator=g)
    assert torch.equal(norms.plain, repeated_gradient_norms(TINY.repeats, residual=False, **shape))
    assert torch.equal(norms.resnet, repeated_gradient_norms(TINY.repeats, residual=True, **shape))
    assert norms.plain_fit.rate == pytest.approx(gaussian.norm_rate("relu"), rel=0.03)  # √(π/(π−1)) ≈ 1.211
    assert 1 < norms.resnet_fit.rate < norms.plain_fit.rate
    assert norms.growth["PlainNet20"] == pytest.approx(float(norms.plain_mean[0] / norms.plain_mean[-1]))
    summary = norms.summary().splitlines()
    assert len(summary) == 2 and f"PlainNet20 {norms.plain_fit.rate:.4g}" in summary[1]
    with pytest.raises(ValueError, match="depth must be an integer >= 2"):
        G.measure_figure1_left(settings("book", book={**TINY_BOOK, "depth": 1}),
                               gradprobe.seed(0), "cpu")


def test_figure2_prediction_is_anchored_at_the_last_layer(norms):
    k = torch.arange(1, TINY.depth + 1, dtype=torch.float64)
    expected = norms.plain_mean[-1] * gaussian.norm_rate("relu") ** (TINY.depth - k)
    assert torch.allclose(norms.predicted, expected, rtol=1e-12)
    assert norms.deviation[-1] == 0 and norms.deviation.max() < 0.15
    assert f"(at layer {int(norms.deviation.argmax()) + 1})" in norms.prediction_summary()


def test_figure1_left_and_figure2_draw_and_save(norms, in_tmp):
    fig = G.figure1_left(norms)
    (ax,) = fig.axes
    assert isinstance(fig, plt.Figure) and labelled(ax) and ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == [f"PlainNet20 (mean of {TINY.repeats})",
                                                             f"ResNet20 (mean of {TINY.repeats})"]
    assert np.allclose(ax.get_lines()[0].get_ydata(), norms.plain_mean.numpy())
    assert len(ax.collections) == 2  # the ±2 s.e.m. bands
    assert (in_tmp / "figures" / "ghost-fig1-left.png").is_file()
    fig = G.figure2(norms)
    (ax,) = fig.axes
    assert labelled(ax) and np.allclose(ax.get_lines()[1].get_ydata(), norms.predicted.numpy())
    assert (in_tmp / "figures" / "ghost-fig2.png").is_file()


def test_figure3_rates_with_batchnorm_follow_corrected_equation_1(fig3):
    assert list(fig3.norms) == [(a, n) for a, _ in G.FIGURE3_ACTIVATIONS for n in ("batch", None)]
    assert all(v.shape == (TINY.depth,) for v in fig3.norms.values())
    rates = fig3.rates.set_index(["activation", "BatchNorm"])
    assert list(rates.index) == [(a, n == "batch") for a, n in fig3.norms]
    for act, init in G.FIGURE3_ACTIVATIONS:
        assert rates.loc[(act, True), "init"] == init
        assert rates.loc[(act, True), "√r(σ), corrected Eq. (1)"] == gaussian.norm_rate(act)
    assert rates.loc[("relu", True), "fitted rate / layer"] == pytest.approx(gaussian.norm_rate("relu"), rel=0.05)
    bn = rates.xs(True, level="BatchNorm")["fitted rate / layer"]
    assert bn["selu"] < bn["tanh"] < bn["relu"]


def test_figure3_draws_both_panels(fig3, in_tmp):
    fig = G.figure3(fig3)
    left, right = fig.axes
    assert labelled(left) and left.get_title() == "Figure 3: with BatchNorm"
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["selu", "tanh", "relu"]
    assert len(left.get_lines()) == 3 + 3 + 1  # measured, √r(σ)^(L−k) per activation, the legend's entry
    assert right.get_lines()[0].get_ydata()[-1] == 1  # normalized by the last layer
    assert (in_tmp / "figures" / "ghost-fig3.png").is_file()


def test_figure_b8_and_b17_plot_the_tables(tables, in_tmp):
    op_table, _, _, b17 = tables
    fig = G.figure_b8(op_table)
    (ax,) = fig.axes
    assert labelled(ax) and list(ax.get_lines()[0].get_xdata()) == [16, 32, 64]
    assert np.allclose(ax.get_lines()[1].get_ydata(), [1 - 1 / 16, 1 - 1 / 32, 1 - 1 / 64])
    assert (in_tmp / "figures" / "ghost-batchnorm.png").is_file()
    with pytest.raises(ValueError, match="no batchnorm rows"):
        G.figure_b8(op_table[op_table.operator != "batchnorm"])
    fig = G.figure_b17(b17)
    (ax,) = fig.axes
    assert labelled(ax) and ax.get_yscale() == "log"
    assert list(ax.get_lines()[0].get_xdata()) == [4, 8, 16]
    theory = ax.get_lines()[2].get_ydata()
    assert theory[1] / theory[0] == pytest.approx(gaussian.RELU_RATE ** 4)
    assert (in_tmp / "figures" / "ghost-b17.png").is_file()


def test_trained_bn_fits_and_summaries():
    trained = fake_trained(1.1)
    assert trained.fit(G.VGG).rate == pytest.approx(1.1)
    assert trained.fit(G.VGG, relative=True).rate == pytest.approx(1.1)
    assert trained.fit(G.RESNET).rate == pytest.approx(1.0)
    assert trained.summary().splitlines() == [f"{n}: 3 steps, diverged: False, test accuracy 0.500"
                                              for n in (G.VGG, G.RESNET)]
    assert "VGG trained 1.1, at initialization 1, trained/initial 1.1; ResNet-20 trained 1" in trained.rates_summary()


def test_figure1_right_trains_both_networks(cifar10_available, in_tmp):
    trained = G.train_figure1_right(TINY, gradprobe.seed(0), "cpu")
    assert trained.names == [G.VGG, G.RESNET] and not trained.checkpoint
    assert trained.sigma_init[G.VGG].shape == trained.sigma_trained[G.VGG].shape == (16,)  # VGG19's 16 BN layers
    assert trained.sigma_init[G.RESNET].shape == (19,)  # ResNet-20: stem and 2 per block
    assert trained.pools == [2, 4, 8, 12]  # the fifth max-pool is dropped on 16×16 images
    assert not torch.equal(trained.sigma_init[G.VGG], trained.sigma_trained[G.VGG])  # training moved them
    assert all(0 <= a <= 1 for a in trained.accuracy.values()) and len(trained.summary().splitlines()) == 2
    again = G.train_figure1_right(TINY, gradprobe.seed(0), "cpu")
    assert torch.equal(again.sigma_trained[G.RESNET], trained.sigma_trained[G.RESNET])
    fig = G.figure1_right(trained)
    vgg_ax, res_ax = fig.axes
    assert labelled(vgg_ax) and res_ax.get_title() == f"Figure 1 (right): {G.RESNET}"
    pools = [line.get_xdata()[0] for line in vgg_ax.get_lines()[2:-1]]
    assert pools == [2.5, 4.5, 8.5, 12.5]
    assert (in_tmp / "figures" / "ghost-fig1-right.png").is_file()
    with pytest.raises(ValueError, match="image_size must be 16 or 32"):
        G.train_figure1_right(settings("book", book={**TINY_BOOK, "image_size": 8}),
                              gradprobe.seed(0), "cpu")


def test_check_claims_rows_have_sources_and_use_the_results(norms, fig3, tables, in_tmp):
    claims = G.check_claims(norms, fig3, *tables, fake_trained(1.1))
    rows = {c.name: c for c in claims.rows}
    assert len(claims.rows) == 23 and all(c.source.startswith("ghost2024, ") for c in claims.rows)
    assert rows["PlainNet20 (BN, ReLU) norm growth per layer"].measured == norms.plain_fit.rate
    assert rows["Figure 2: α^(L−k) predicts the PlainNet curve"].measured == f"max dev {float(norms.deviation.max()):.2%}"
    assert rows["r(relu) by quadrature, corrected Eq. (1)"].passed
    assert rows["B.14 (ReLU) on Gaussian, Laplace, uniform"].passed
    assert not rows["ResNet20 first/last ratio orders of magnitude below PlainNet20's"].passed  # cannot hold at 12 layers
    grows = rows["the growth comes from training (σ trained / σ at init)"]
    assert grows.passed and grows.measured == "1.1 per BN layer"
    flat = {c.name: c for c in G.check_claims(norms, fig3, *tables, fake_trained(1.0)).rows}
    assert not flat["the growth comes from training (σ trained / σ at init)"].passed
    assert not flat["trained plain VGG: σ grows toward the input"].passed
    assert claims.save().name == "ghost2024.claims.json" and (in_tmp / "ghost2024.claims.json").is_file()
