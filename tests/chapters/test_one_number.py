"""gradprobe.chapters.one_number: the rate table, the three measured curves, their figures and claims."""
import math

import matplotlib
import numpy as np
import pytest
import torch

import gradprobe
from gradprobe.book.claims import ERRATUM, FAILS, HOLDS, MACHINERY, PAPER
from gradprobe.book.page import Page
from gradprobe.book.scales import SCALES, settings
from gradprobe.chapters import one_number as ch
from gradprobe.measure.repeats import Signals, repeated_signals
from gradprobe.networks.layers import ACTIVATIONS

RELU_R = math.pi / (math.pi - 1)
TINY = settings("book", book=dict(depth=24, width=64, batch=64, repeats=4, chunk=2))


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Page("one_number", "book", 0, "cpu")


@pytest.fixture(scope="module")
def curves():
    return ch.measure_curves(TINY, gradprobe.seed(1))


def test_settings_and_cost():
    assert [ch.settings(s).repeats for s in SCALES] == [8, 64, 4096]
    assert 0 < ch.cost(ch.settings("smoke")) < ch.cost(ch.settings("book")) < ch.cost(ch.settings("paper"))


# ----------------------------------------------------------------- the rate of every activation
def test_rate_table_is_the_quadrature_of_every_activation_largest_first():
    table = ch.rate_table()
    assert sorted(table.index) == sorted(ACTIVATIONS)
    r = table[ch.RATE].to_numpy()
    assert np.all(np.diff(r) <= 0) and table.index[0] == "relu"
    assert table.loc["relu", ch.RATE] == pytest.approx(RELU_R, rel=1e-9)
    np.testing.assert_allclose(r, table["R_b = E[φ'(z)²]"] / table["R_f = Var[φ(z)]"], rtol=1e-12)
    np.testing.assert_allclose(table["√r (norm / layer)"] ** 2, r, rtol=1e-12)
    assert table.loc["dropout", ch.RATE] == 1.0
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ch.rate_table(["relu", "swish"])
    with pytest.raises(ValueError, match="at least one"):
        ch.rate_table([])


def test_figure_rates_draws_one_bar_per_activation_and_the_quoted_values():
    table = ch.rate_table()
    fig = ch.figure_rates(table)
    (ax,) = fig.axes
    assert "dimensionless" in ax.get_xlabel()
    np.testing.assert_allclose(sorted(p.get_width() for p in ax.patches), sorted(table[ch.RATE]))
    (quoted,) = [line for line in ax.lines if line.get_label() == "ghost 2024, quoted"]
    assert dict(zip(quoted.get_ydata(), quoted.get_xdata())) == ch.GHOST_EQ1  # each at its name
    with pytest.raises(ValueError, match="rate_table"):
        ch.figure_rates(table.drop(columns=[ch.RATE]))


def test_rate_rows_quote_the_ghost_paper_and_two_errata(page):
    ch.check_rates(page, ch.rate_table())
    kinds = [r.kind for r in page.claims.rows]
    assert kinds == [PAPER] * 3 + [ERRATUM, ERRATUM, MACHINERY]
    assert all(r.verdict == HOLDS for r in page.claims.rows)
    paper = [r for r in page.claims.rows if r.kind == PAPER]
    assert all(r.source == "ghost2024, App. C, Eq. (1)" and "1.467" in r.quote for r in paper)
    paik = page.claims.rows[4]
    assert paik.source == "paik2023, Sec. 1" and "1.21" in paik.quote and "as transcribed" in paik.note


# ----------------------------------------------------------------- three measured curves
def test_measure_curves_is_repeated_signals_from_the_weight_stream(curves):
    g = gradprobe.seed(1).weights  # the three networks, in the order of CURVES, from one stream
    for name, (act, norm) in ch.CURVES.items():
        expected = repeated_signals(4, 24, 64, 64, activation=act, norm=norm, chunk=2, generator=g, device="cpu")
        assert torch.equal(curves.signals[name].weight_norms, expected.weight_norms)
    assert curves.repeats == 4 and isinstance(curves.signals["BatchNorm–ReLU"], Signals)


def test_curves_follow_theory(curves):
    assert curves.norm_rates("BatchNorm–ReLU").mean() == pytest.approx(math.sqrt(RELU_R), rel=0.02)
    assert curves.var_rates("BatchNorm–ReLU").mean() == pytest.approx(RELU_R, rel=0.04)
    assert curves.norm_rates("ReLU, no BatchNorm").mean() == pytest.approx(1.0, abs=0.04)  # width 64: noisy
    assert 1.05 < curves.norm_rates("BatchNorm–GELU").mean() < curves.norm_rates("BatchNorm–ReLU").mean()
    assert 0.8 < curves.forward_drift("BatchNorm–ReLU").mean() < 1.25  # BatchNorm keeps the forward scale
    bn = curves.predicted("BatchNorm–ReLU")
    np.testing.assert_allclose(bn[:-1] / bn[1:], math.sqrt(RELU_R), rtol=1e-12)
    flat = curves.predicted("ReLU, no BatchNorm")  # mean field: He + ReLU is critical
    np.testing.assert_allclose(flat, flat[-1], rtol=1e-9)
    assert flat[-1] == pytest.approx(float(curves.signals["ReLU, no BatchNorm"].weight_norms[:, -1].mean()))


def test_figure_curves(curves):
    fig = ch.figure_curves(curves)
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and "weight-gradient norm" in ax.get_ylabel()
    assert "24-layer" in ax.get_title() and "width 64" in ax.get_title()
    measured = [line for line in ax.lines if line.get_label().endswith("measured")]
    assert len(measured) == 3 and len(ax.collections) == 3  # ±2 SE bands
    with pytest.raises(ValueError, match="Curves"):
        ch.figure_curves({"norms": 1})


def test_curve_rows_hold_for_the_measurement_and_fail_without_explosion(curves, page):
    ch.check_curves(page, curves)
    verdicts = [r.verdict for r in page.claims.rows]
    assert verdicts[:3] + verdicts[4:] == [HOLDS] * 4 and verdicts[3] != FAILS  # no BN: noisy at width 64
    assert {r.section for r in page.claims.rows} == {"one_number-curves"}
    sources = [r.source for r in page.claims.rows]
    assert sources[0].startswith("paik2023, Sec. 1") and sources[2] == "philipp2018, abstract"
    # networks whose gradient does not grow: the explosion rows fail, "no explosion without BN" holds
    signals = {}
    for name, sig in curves.signals.items():
        noise = torch.rand(sig.weight_norms.shape, generator=gradprobe.seed(0).data, dtype=torch.float64)
        flat = 1 + 1e-3 * noise
        signals[name] = Signals(flat, sig.forward, flat ** 2, sig.stream, sig.independence, sig.correlation,
                                sig.mean_square)
    other = Page("one_number", "book", 0, "cpu")
    ch.check_curves(other, ch.Curves(24, 64, 64, signals))
    verdicts = {r.name: r.verdict for r in other.claims.rows}
    assert verdicts["BN–ReLU: gradient norm grows by √(π/(π−1)) ∼ 1.21 per layer (excess rate)"] == FAILS
    assert verdicts["BN–ReLU: the forward pass keeps its scale while the gradient explodes"] == FAILS
    assert verdicts["ReLU without BatchNorm: no explosion (growth < 1% per layer)"] == HOLDS
