"""gradprobe.chapters.ghost2024: drivers, figures and claims of the ghost chapter, at tiny sizes."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe
from gradprobe.book.claims import ERRATUM, FAILS, HOLDS, MACHINERY, NOT_TESTABLE, PAPER
from gradprobe.book.page import Page
from gradprobe.book.scales import SCALES, settings
from gradprobe.chapters import ghost2024 as G
from gradprobe.measure.repeats import repeated_gradient_norms, repeated_signals
from gradprobe.networks.mlp import scaled_residual_net
from gradprobe.theory import gaussian
from gradprobe.theory.distributions import DISTRIBUTIONS
from gradprobe.theory.operators import batchnorm_z_moments

ALPHA = math.sqrt(math.pi / (math.pi - 1))
TINY_BOOK = dict(depth=12, width=32, batch=64, repeats=8, repeats_fig3=6, chunk=4, depths=(8, 16), repeats_depth=3,
                 sweep_widths=(16, 32), sweep_batches=(16, 64), repeats_sweep=3, repeats_b6=3, op_samples=2048,
                 op_repeats=3, op_features=1024, b17_blocks=(2, 4), b17_width=16, b17_repeats=3, vgg_divisor=8,
                 image_size=32, seeds=2, train_images=64, train_steps=2, train_batch=16, lr=0.05, calib_images=32,
                 test_images=32)
TINY = settings("book", book=TINY_BOOK)


def gen(n=0):
    return torch.Generator().manual_seed(n)


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Page("ghost2024", "book", 0, "cpu")


def rows(page):
    return {r.name: r for r in page.claims.rows}


def labelled(fig) -> bool:
    return all(ax.get_xlabel() and ax.get_title() for ax in fig.axes) and fig.axes[0].get_ylabel() != ""


# ---------------------------------------------------------------- settings and rates
def test_settings_at_every_scale_and_cost_grows_with_scale():
    costs = [G.cost(G.settings(s)) for s in SCALES]
    assert 0 < costs[0] < costs[1] < costs[2]
    paper = G.settings("paper")
    assert (paper.depth, paper.width, paper.batch, paper.repeats) == (20, 256, 128, 4096)  # Section 2
    assert G.settings("book").image_size == 32  # no 1×1 maps in Figure 1 (right)


def test_rates_per_repeat_recovers_a_geometric_profile():
    k = torch.arange(12, dtype=torch.float64)
    norms = torch.stack([3.0 * 1.2 ** -k, 0.5 * 1.05 ** -k])
    assert G.rates_per_repeat(norms) == pytest.approx([1.2, 1.05], rel=1e-12)
    with pytest.raises(ValueError, match="repeats, layers"):
        G.rates_per_repeat(torch.ones(5))


# ---------------------------------------------------------------- Figure 1 (left) and Figure 2
@pytest.fixture(scope="module")
def norms():
    return G.measure_figure1_left(TINY, gradprobe.seed(0), "cpu")


def test_figure1_left_is_plain_then_resnet_from_the_weight_stream(norms):
    g = gradprobe.seed(0).weights
    shape = dict(depth=12, width=32, batch=64, chunk=4, device="cpu", generator=g)
    assert torch.equal(norms.plain, repeated_gradient_norms(8, residual=False, **shape))
    assert torch.equal(norms.resnet, repeated_gradient_norms(8, residual=True, **shape))
    assert norms.plain_rates.mean() == pytest.approx(ALPHA, rel=0.03)
    assert 1 < norms.resnet_rates.mean() < norms.plain_rates.mean()


def test_figure2_prediction_is_anchored_at_the_last_layer(norms):
    k = torch.arange(1, 13, dtype=torch.float64)
    assert torch.allclose(norms.predicted, norms.plain_mean[-1] * ALPHA ** (12 - k), rtol=1e-12)
    assert norms.deviation[-1] == 0
    expected = (norms.plain[:, 0] / norms.plain[:, -1]).numpy() / ALPHA ** 11
    assert norms.first_over_predicted == pytest.approx(expected)


def test_figure1_left_rows_decide_on_the_excess_rate(norms, page):
    G.check_figure1_left(page, norms)
    G.check_figure2(page, norms)
    r = rows(page)
    rate = r["PlainNet20: gradient norm grows by α = √(π/(π−1)) per layer (excess rate α − 1)"]
    assert rate.verdict == HOLDS and rate.kind == PAPER and rate.section == "ghost2024-fig1-left"
    assert rate.check.value == pytest.approx(norms.plain_rates.mean() - 1)
    assert all(x.source.startswith("ghost2024, ") and x.quote for x in page.claims.rows)
    # no explosion: the same rows fail
    flat = G.NormsAtInit(torch.ones(8, 12, dtype=torch.float64) + 0.01 * torch.rand(8, 12, dtype=torch.float64,
                                                                                   generator=gen(1)),
                         torch.ones(8, 12, dtype=torch.float64))
    other = Page("ghost2024", "book", 0, "cpu")
    G.check_figure1_left(other, flat)
    G.check_figure2(other, flat)
    assert [x.verdict for x in other.claims.rows] == [FAILS, FAILS]


def test_figure1_left_and_figure2_draw(norms):
    fig = G.figure1_left(norms)
    (ax,) = fig.axes
    assert labelled(fig) and ax.get_yscale() == "log" and len(ax.collections) == 2  # ±2 SE bands
    assert np.allclose(ax.get_lines()[0].get_ydata(), norms.plain_mean.numpy())
    assert all(float(t) == int(t) for t in ax.get_xticks())  # layers are integers
    fig = G.figure2(norms)
    assert np.allclose(fig.axes[0].get_lines()[1].get_ydata(), norms.predicted.numpy())


# ---------------------------------------------------------------- depth
@pytest.fixture(scope="module")
def depth():
    return G.measure_depth(TINY, gradprobe.seed(2), "cpu")


def test_depth_sweep_networks(depth):
    assert depth.depths == (8, 16)
    for d in depth.depths:
        assert np.isnan(depth.weights["ResNet, zero γ", d]).all()  # zero γ: the branches get no gradient
        assert (depth.stream["ResNet, zero γ", d] <= 1.0 + 1e-6).all()
        assert depth.stream["ResNet (γ = 1)", d].mean() > depth.stream["ResNet, γ = 1/√L", d].mean()
    assert depth.stream["plain", 16].mean() > 2 * depth.stream["ResNet (γ = 1)", 16].mean()  # ≈ 19 against ≈ 6.6
    g = gradprobe.seed(2).weights  # the first measurement is the plain network at depth 8
    sig = repeated_signals(3, 8, 32, 64, chunk=max(1, 4 * 20 // 8), generator=g, device="cpu")
    assert depth.stream["plain", 8] == pytest.approx((sig.stream[:, 0] / sig.stream[:, -1]).numpy())
    assert depth.rate("plain", 16) == pytest.approx(depth.weights["plain", 16] ** (1 / 15))
    assert list(depth.table().index.get_level_values(0).unique()) == list(G.DEPTH_NETWORKS)


def test_depth_rows_and_figure(depth, page):
    G.check_depth(page, depth)
    r = rows(page)
    assert r["ResNet with zero γ: backward signal does not grow at any depth"].verdict == HOLDS
    assert r["plain network: gradient norm grows by α per layer at 16 layers (excess rate α − 1)"].kind == PAPER
    assert not any("orders of magnitude" in name for name in r)
    fig = G.figure_depth(depth)
    left, right = fig.axes
    assert labelled(fig) and left.get_yscale() == "log"
    assert len(right.get_legend().get_texts()) == 4 and len(left.get_legend().get_texts()) == 4  # 3 + α^(L−1)


# ---------------------------------------------------------------- Figure 3 and Equation (1)
def test_eq1_table_quotes_and_the_transcribed_formula():
    eq1 = G.eq1_table()
    for act, quoted in G.QUOTED_RATES.items():
        assert eq1.loc[act, "r = E[σ'²]/Var[σ]"] == pytest.approx(quoted, abs=5e-4)
    relu_printed = 0.25 / (0.5 - 1 / (2 * math.pi))  # E[relu'] = ½, squared outside the expectation
    assert eq1.loc["relu", "as transcribed: E[σ']²/Var[σ]"] == pytest.approx(relu_printed, rel=1e-8)


@pytest.fixture(scope="module")
def fig3():
    return G.measure_figure3(TINY, gradprobe.seed(1), "cpu")


def test_figure3_measures_six_curves_and_compares_with_the_right_theory(fig3):
    assert list(fig3.norms) == [(a, n) for a, _ in G.FIGURE3_ACTIVATIONS for n in ("batch", None)]
    table = fig3.table()
    for act, init in G.FIGURE3_ACTIVATIONS:
        assert table.loc[(act, True), "theory"] == gaussian.norm_rate(act)
        weight_var = {"he": 2.0, "lecun": 1.0}[init]
        assert table.loc[(act, False), "theory"] == pytest.approx(gaussian.mean_field(act, weight_var, 12).rate)
    assert table.loc[("relu", False), "theory"] == pytest.approx(1.0)  # He + ReLU: critical
    assert table.loc[("relu", True), "rate / layer"] == pytest.approx(ALPHA, rel=0.05)
    assert abs(table.loc[("relu", False), "rate / layer"] - 1) < 0.03


def test_figure3_rows(fig3, page):
    G.check_figure3(page, fig3, G.eq1_table())
    r = rows(page)
    erratum = r["Eq. (1) as transcribed, E[σ'(X)]²/Var[σ(X)], does not give the quoted rates"]
    assert erratum.kind == ERRATUM and erratum.verdict == HOLDS and "as transcribed" in erratum.note
    assert r["tanh without BN: the gradient explodes (≥ 1% per layer)"].verdict == HOLDS
    assert r["relu without BN: the gradient explodes (≥ 1% per layer)"].verdict != HOLDS
    assert len(page.claims.rows) == 3 + 1 + 3 + 1 + 3
    # an explosion without BN at 5% per layer would make the ReLU row hold
    k = torch.arange(12, dtype=torch.float64)
    fake = dict(fig3.norms)
    fake["relu", None] = torch.stack([1.05 ** -k * (1 + 0.001 * i) for i in range(6)])
    other = Page("ghost2024", "book", 0, "cpu")
    G.check_figure3(other, G.Figure3(fake), G.eq1_table())
    assert rows(other)["relu without BN: the gradient explodes (≥ 1% per layer)"].verdict == HOLDS


def test_figure3_draws_raw_norms_beside_theory(fig3):
    fig = G.figure3(fig3)
    left, right = fig.axes
    assert labelled(fig) and left.get_yscale() == "log"
    measured = left.get_lines()[0].get_ydata()
    assert measured == pytest.approx(fig3.norms["selu", "batch"].mean(0).numpy())  # raw, not normalized
    theory = right.get_lines()[5].get_ydata()  # ReLU without BN: mean field is flat
    assert theory == pytest.approx(np.full(12, theory[-1]))


def test_deviation_sweep():
    dev = G.measure_deviation(TINY, gradprobe.seed(3), "cpu")
    assert set(dev.rates) == {(a, w, b) for a, _ in G.FIGURE3_ACTIVATIONS for w, b in
                              [(16, 128), (32, 128), (32, 16), (32, 64)]}
    assert dev.relative("tanh", 32, 64) == pytest.approx(dev.rates["tanh", 32, 64] / gaussian.norm_rate("tanh") - 1)
    fig = G.figure_deviation(dev)
    assert labelled(fig) and len(fig.axes) == 2


# ---------------------------------------------------------------- Appendix B.1
def test_batchnorm_z_has_the_exact_moments_and_unit_forward_ratio():
    for b in (8, 256):
        rf, z = G.batchnorm_z(b, 16384, sigma=3.0, generator=gen(b))
        assert (rf <= 1).all() and rf.mean() > 1 - 1e-4  # σ_x²/(σ_x² + ε), ε = 10⁻⁵
        assert (z >= -1e-9).all() and (z <= b + 1e-9).all()  # z = B ρ̂², ρ̂ a correlation
        mean, var = batchnorm_z_moments(b)
        assert z.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 16384))
        assert z.var().item() == pytest.approx(var, rel=0.15)
    with pytest.raises(ValueError, match="batch must be an integer >= 2"):
        G.batchnorm_z(1)


@pytest.fixture(scope="module")
def ops():
    return G.measure_operators(4096, 3, batches=(8, 64), features=4096, generator=gen(4))


def test_operators_measure_the_papers_ratios(ops):
    table = ops.table()
    assert table.loc[("linear", "W 512×256, He init"), "R_f measured"] == pytest.approx(1.0, abs=0.02)
    relu = table.loc[("relu", "x ~ N(0, 1)")]
    assert relu["R_f measured"] == pytest.approx(0.5 - 1 / (2 * math.pi), rel=0.03)
    assert relu["R_b measured"] == pytest.approx(0.5, rel=0.03)
    avg = table.loc[("avgpool2x2", "4 iid N(0, 1) per window")]
    assert (avg["R_f measured"], avg["R_b measured"]) == pytest.approx((0.25, 0.0625), rel=0.03)
    assert avg["R_b/R_f"] < table.loc[("maxpool2x2", "4 iid N(0, 1) per window"), "R_b/R_f"]
    assert list(ops.z_table().index) == [8, 64]


def test_operator_rows_and_figure(ops, page):
    G.check_operators(page, ops)
    kinds = {r.name: r.kind for r in page.claims.rows}
    assert kinds["average pool 2×2: (R_f, R_b) = (¼, 1/16), Prop. B.4 with D = 1, d = 4"] == MACHINERY
    assert kinds["max-pool 2×2: R_b = ¼"] == PAPER
    assert rows(page)["max-pool 2×2: R_f = 0.492 (Var of the max of 4 iid N(0, 1), by quadrature)"].verdict == HOLDS
    fig = G.figure_b8(ops)
    (ax,) = fig.axes
    (paper,) = [line for line in ax.get_lines() if line.get_label().startswith("paper")]
    assert labelled(fig) and list(paper.get_xdata()) == [8, 64]
    assert np.allclose(paper.get_ydata(), [1 - 1 / 8, 1 - 1 / 64])


# ---------------------------------------------------------------- Assumption B.6, Remark B.9, Corollary B.7
def test_independence_rows(page):
    ind = G.measure_independence(TINY, gradprobe.seed(5), "cpu")
    assert set(ind.signals) == {(a, n, l) for a in ("relu", "tanh") for n in ("batch", None)
                                for l in ("linear", "square")}
    top = ind.signals["relu", "batch", "square"].correlation[:, -1]
    assert (top > 0.5).all()  # ℓ = ½‖x‖²: the top neuron's derivative is the neuron itself
    G.check_independence(page, ind)
    r = rows(page)
    b6 = r["B.6 as used: E[(∂ℓ/∂y)²g'(x)²] = E[(∂ℓ/∂y)²]·E[g'(x)²] (ReLU + BN, every layer)"]
    factor = ind.signals["relu", "batch", "linear"].independence[:, :-1].mean(dim=1)
    assert b6.check.value == pytest.approx(float(factor.mean())) and abs(b6.check.value - 1) < 0.05
    assert r["Cor. B.7: derivative has zero batch mean below the last BN (ℓ = ½‖x⁽ᴸ⁾‖², ReLU)"].verdict == HOLDS
    assert {x.section for x in page.claims.rows} == {"ghost2024-independence"}
    assert labelled(G.figure_independence(ind))


# ---------------------------------------------------------------- Propositions B.12 and B.14
@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_relu_b14(dist):
    out = G.relu_b14(dist, 400_000, gen(8))
    assert out["var"] == pytest.approx(out["exact_var"], abs=0.01)
    assert out["var"] <= out["bound"] < out["backward"]


def test_b12_b14_tables_and_rows(page):
    b12 = G.b12_table(("relu", "identity"), ("gaussian",), n=50_000, generator=gen(10))
    assert b12.loc[b12.activation == "identity", "Var[g(x)]"].item() == pytest.approx(1.0, abs=1e-9)
    assert b12.loc[b12.activation == "relu", "R_b/R_f"].item() == pytest.approx(math.pi / (math.pi - 1), rel=0.03)
    samples = G.b14_samples(20_000, 3, gen(11))
    assert set(samples) == set(DISTRIBUTIONS) and all(len(v) == 3 for v in samples.values())
    assert samples["uniform"].mean() == pytest.approx(0.5 - 0.75 / 4, abs=0.01)  # E|x| = √3/2
    G.check_b12_b14(page, samples)
    assert [x.verdict for x in page.claims.rows] == [HOLDS, HOLDS]


# ---------------------------------------------------------------- Proposition B.17
def test_b17_closed_form():
    assert G.b17_closed_form(1) == (2.0, pytest.approx(1 + gaussian.RELU_RATE))
    rf, rb = G.b17_closed_form(4000)
    assert rb / rf == pytest.approx(2 ** (gaussian.RELU_RATE - 1), rel=1e-3)  # the limit 2^(r−1)
    assert G.b17_closed_form(3, rate=1.0)[1] == pytest.approx(2.0)  # a linear branch: R_b = R_f


def test_b17_block_and_network_match_the_proposition(page):
    g = gen(9)
    net = scaled_residual_net(8, width=32, generator=g)
    out = G.block_ratios(net[0], torch.randn(512, 32, generator=g), torch.randn(512, 32, generator=g))
    for measured, predicted in zip(out["block"], out["predicted"]):
        assert measured == pytest.approx(predicted, rel=0.05)
    with pytest.raises(ValueError, match="ScaledResidualBlock"):
        G.block_ratios(nn.Identity(), torch.zeros(2, 2), torch.zeros(2, 2))
    b17 = G.measure_b17(blocks=(2, 8), width=64, repeats=3, batch=256, generator=gen(12))
    rf, rb = b17.resnet[8]
    assert rf.mean() == pytest.approx(2.0, rel=0.05)
    assert (rb / rf).mean() == pytest.approx(G.b17_closed_form(8)[1] / 2, rel=0.06)
    assert (b17.plain[8][1] / b17.plain[8][0]).mean() > 100  # ≈ r^16
    G.check_b17(page, b17)
    assert len(page.claims.rows) == 3
    fig = G.figure_b17(b17)
    assert labelled(fig) and fig.axes[0].get_yscale() == "log" and fig.axes[1].get_yscale() == "linear"


# ---------------------------------------------------------------- Figure 1 (right)
def fake_trained(change: float, weight_change: float = 1.0, layers: int = 16) -> G.TrainedBN:
    """σ at initialization flat; training multiplies layer k (from the output) by change^k."""
    k = torch.arange(layers - 1, -1, -1, dtype=torch.float64)
    init = {n: torch.ones(3, layers, dtype=torch.float64) for n in ("sigma", "weight", "gamma", "beta")}
    noise = 1 + 1e-3 * torch.randn(3, layers, generator=gen(0), dtype=torch.float64)
    trained = {"sigma": change ** k * noise, "weight": weight_change ** k * noise,
               "gamma": torch.ones(3, layers, dtype=torch.float64), "beta": torch.zeros(3, layers, dtype=torch.float64)}
    return G.TrainedBN(init, trained, torch.ones(3, layers, dtype=torch.float64), np.array([0.3, 0.3, 0.3]),
                       np.array([False] * 3), [2, 4, 8, 12], steps=100)


def test_figure1_right_rows_follow_the_change_not_the_raw_profile(page):
    G.check_figure1_right(page, fake_trained(1.05, 1.02))
    r = rows(page)
    assert r["training makes σ grow toward the input (growth of σ_trained/σ_init per BN layer)"].verdict == HOLDS
    assert r["training changes shallow weights more (growth of ‖W_k‖_trained/‖W_k‖_init per conv)"].verdict == HOLDS
    assert not any(name.startswith("trained plain VGG") for name in r)  # retired: it held at initialization
    other = Page("ghost2024", "book", 0, "cpu")
    G.check_figure1_right(other, fake_trained(0.97, 0.98))
    assert [x.verdict for x in other.claims.rows][:2] == [FAILS, FAILS]
    smoke = Page("ghost2024", "smoke", 0, "cpu")
    G.check_figure1_right(smoke, fake_trained(1.05))
    assert {x.verdict for x in smoke.claims.rows} == {NOT_TESTABLE}


def test_pool_jumps_read_sigma_around_each_pool():
    trained = fake_trained(1.0)
    sigma = torch.ones(1, 16, dtype=torch.float64)
    sigma[0, 2] = math.e  # σ jumps up right after the first pool (BN index 2)
    jumps = trained.pool_jumps(sigma)
    assert jumps.shape == (1, 4) and jumps[0] == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_figure1_right_trains_stores_and_reuses(cifar10_available, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADPROBE_SWEEPS", str(tmp_path / "sweeps"))
    monkeypatch.chdir(tmp_path)
    trained = G.measure_figure1_right(TINY, seed=0)
    assert trained.init["sigma"].shape == trained.trained["sigma"].shape == (2, 16)  # 2 seeds, VGG19's 16 BN
    assert trained.init["weight"].shape == (2, 16) and trained.pools == [2, 4, 8, 12]
    assert not torch.equal(trained.init["sigma"], trained.trained["sigma"])  # training moved them
    assert not torch.equal(trained.init["sigma"][0], trained.init["sigma"][1])  # two seeds, two networks
    assert torch.equal(trained.init["gamma"], torch.ones(2, 16, dtype=torch.float64))
    again = G.measure_figure1_right(TINY, seed=0)  # from the sweep's store
    assert torch.equal(again.trained["sigma"], trained.trained["sigma"])
    assert labelled(G.figure1_right(trained)) and len(G.figure1_right_change(trained).axes) == 2
    with pytest.raises(ValueError, match="image_size must be 16 or 32"):
        G.measure_figure1_right(settings("book", book={**TINY_BOOK, "image_size": 8}))
