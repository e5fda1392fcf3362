"""gradprobe.chapters.one_number: the rate table, the BN–ReLU MLP measurement, its figures and claims."""
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import gradprobe
from gradprobe.chapters import one_number as ch
from gradprobe.measure.hooks import record
from gradprobe.networks.layers import ACTIVATIONS
from gradprobe.networks.mlp import mlp

RELU_R = math.pi / (math.pi - 1)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def deep():
    """A 30-layer BN–ReLU MLP measured at a size where the per-layer rates are close to theory."""
    return ch.bn_relu_mlp(30, 64, 64, 3, gradprobe.seed(1))


# ----------------------------------------------------------------- the rate of every activation

def test_rate_table_is_the_quadrature_of_every_activation_largest_first():
    table = ch.rate_table()
    assert sorted(table.index) == sorted(ACTIVATIONS)
    r = table[ch.RATE].to_numpy()
    assert np.all(np.diff(r) <= 0) and table.index[0] == "relu"
    relu = table.loc["relu"]
    assert relu[ch.RATE] == pytest.approx(RELU_R, rel=1e-9)
    assert relu["R_f = Var[φ(z)]"] == pytest.approx(0.5 - 1 / (2 * math.pi), rel=1e-9)
    assert relu["R_b = E[φ'(z)²]"] == pytest.approx(0.5, rel=1e-9)
    # r = R_b / R_f and √r its square root, on every row
    np.testing.assert_allclose(r, table["R_b = E[φ'(z)²]"] / table["R_f = Var[φ(z)]"], rtol=1e-12)
    np.testing.assert_allclose(table["√r (norm / layer)"] ** 2, r, rtol=1e-12)
    assert table.loc["identity", ch.RATE] == pytest.approx(1.0, abs=1e-9)
    assert table.loc["dropout", ch.RATE] == 1.0


def test_rate_table_subset_and_errors():
    table = ch.rate_table(["tanh", "relu"])
    assert list(table.index) == ["relu", "tanh"]
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ch.rate_table(["relu", "swish"])
    with pytest.raises(ValueError, match="at least one"):
        ch.rate_table([])


def test_ghost_eq1_quotes_agree_with_the_quadrature():
    table = ch.rate_table(list(ch.GHOST_EQ1))
    for name, quoted in ch.GHOST_EQ1.items():
        assert table.loc[name, ch.RATE] == pytest.approx(quoted, abs=5e-4)


def test_figure_rates_draws_one_bar_per_activation_and_the_quoted_values():
    table = ch.rate_table()
    fig = ch.figure_rates(table)
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    assert "explosion rate r per layer" in ax.get_xlabel() and "dimensionless" in ax.get_xlabel()
    widths = sorted(p.get_width() for p in ax.patches)
    np.testing.assert_allclose(widths, sorted(table[ch.RATE]))
    quoted = [line for line in ax.lines if line.get_label() == "ghost 2024, quoted"]
    assert len(quoted) == 1
    assert dict(zip(quoted[0].get_ydata(), quoted[0].get_xdata())) == ch.GHOST_EQ1  # each at its name
    theory = [line for line in ax.lines if "closed form" in line.get_label()]
    assert theory and theory[0].get_xdata()[0] == pytest.approx(RELU_R)
    with pytest.raises(ValueError, match="rate_table"):
        ch.figure_rates(table.drop(columns=[ch.RATE]))


# ----------------------------------------------------------------- one measured curve

def test_bn_relu_mlp_shapes_and_theory(deep):
    for values in (deep.norms, deep.variances, deep.forward):
        assert values.shape == (30,) and values.device.type == "cpu" and bool(torch.all(values > 0))
    assert deep.norm_fit.rate == pytest.approx(math.sqrt(RELU_R), rel=0.03)
    assert deep.var_fit.rate == pytest.approx(RELU_R, rel=0.05)
    assert deep.var_fit.r2 > 0.95
    # the forward pass is normalized (Var[W relu(z)] = 2·Var[relu(z)] ≈ 0.68 after layer 1) ...
    assert 0.8 < deep.forward_drift < 1.25
    assert float(deep.forward[5]) == pytest.approx(1 - 1 / math.pi, rel=0.1)
    # ... while the gradient norm grows about √r per layer over 29 layers
    assert deep.gradient_growth == pytest.approx(float(deep.norms[0] / deep.norms[-1]))
    assert deep.gradient_growth > 100


def test_bn_relu_mlp_draws_in_the_documented_order():
    """The driver equals the experiment written out: per repeat a network from gen.weights, then x and
    the output gradient from gen.data; norms by .backward(), variances by record(); means over repeats."""
    depth, width, batch, repeats = 4, 8, 6, 2
    result = ch.bn_relu_mlp(depth, width, batch, repeats, gradprobe.seed(3))
    gen = gradprobe.seed(3)
    norms, variances, forward = [], [], []
    for _ in range(repeats):
        net = mlp(depth, width, "relu", norm="batch", init="he", generator=gen.weights)
        x = torch.randn(batch, width, generator=gen.data)
        grad_out = torch.randn(batch, width, generator=gen.data) / math.sqrt(width)
        with record(net) as rec:
            net(x).backward(grad_out)
        norms.append(torch.stack([lin.weight.grad.norm() for lin in net.linears()]))
        variances.append(rec.variances("gradients"))
        forward.append(rec.variances("activations"))
    assert torch.equal(result.norms, torch.stack(norms).mean(0))
    assert torch.equal(result.variances, torch.stack(variances).mean(0))
    assert torch.equal(result.forward, torch.stack(forward).mean(0))
    assert (result.depth, result.width, result.batch, result.repeats) == (depth, width, batch, repeats)
    other = ch.bn_relu_mlp(depth, width, batch, repeats, gradprobe.seed(4))
    assert not torch.equal(other.norms, result.norms)


def test_bn_relu_mlp_errors():
    gen = gradprobe.seed(0)
    with pytest.raises(ValueError, match="depth must be an integer >= 2"):
        ch.bn_relu_mlp(1, 8, 4, 1, gen)
    with pytest.raises(ValueError, match="batch must be an integer >= 2"):
        ch.bn_relu_mlp(3, 8, 1, 1, gen)
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        ch.bn_relu_mlp(3, 8, 4, 0, gen)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        ch.bn_relu_mlp(3, 8.0, 4, 1, gen)


def test_summary_reports_the_fits_beside_the_theory(deep):
    lines = deep.summary().splitlines()
    assert len(lines) == 4
    assert f"{deep.norm_fit.rate:.4f} per layer" in lines[0] and f"{math.sqrt(RELU_R):.4f}" in lines[0]
    assert f"{deep.var_fit.rate:.4f} per layer" in lines[1] and f"{RELU_R:.4f}" in lines[1]
    assert lines[2].endswith(f"{deep.forward_drift:.4f}")
    assert f"{deep.gradient_growth:.4g}" in lines[3] and f"{math.sqrt(RELU_R) ** 29:.4g}" in lines[3]


def test_predicted_norms_grow_by_the_norm_rate_from_the_last_layer(deep):
    predicted = deep.predicted_norms()
    assert predicted.shape == (30,) and predicted[-1] == pytest.approx(float(deep.norms[-1]))
    np.testing.assert_allclose(predicted[:-1] / predicted[1:], math.sqrt(RELU_R), rtol=1e-12)


def test_figure_bn_relu_mlp_draws_measured_and_predicted_norms(deep):
    fig = ch.figure_bn_relu_mlp(deep)
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert "weight-gradient norm" in ax.get_ylabel() and "layer index" in ax.get_xlabel()
    assert "30-layer" in ax.get_title() and "width 64" in ax.get_title()
    measured, predicted = ax.lines
    assert list(measured.get_xdata()) == list(range(1, 31))
    np.testing.assert_allclose(measured.get_ydata(), deep.norms.numpy(), rtol=1e-6)
    np.testing.assert_allclose(predicted.get_ydata(), deep.predicted_norms())
    assert "3 repeats" in measured.get_label()
    with pytest.raises(ValueError, match="MLPGradients"):
        ch.figure_bn_relu_mlp(deep.norms)


# ----------------------------------------------------------------- paper vs this book

def test_claims_hold_for_a_deep_bn_relu_mlp(deep):
    claims = ch.check_claims(deep)
    assert claims.chapter == "one_number" and len(claims.rows) == 6
    assert all(row.source for row in claims.rows)
    assert claims.all_passed, claims.summary()
    rates = {row.name: row.measured for row in claims.rows}
    assert rates["BN–ReLU gradient norm grows ∼1.21 per layer"] == deep.norm_fit.rate
    assert rates["BN–ReLU gradient variance grows π/(π−1) per layer"] == deep.var_fit.rate


def test_claims_fail_when_the_gradient_does_not_explode():
    flat = torch.ones(10)
    result = ch.MLPGradients(10, 8, 8, 1, norms=flat, variances=flat, forward=flat)
    claims = ch.check_claims(result)
    failed = [row.name for row in claims.rows if not row.passed]
    assert failed == ["BN–ReLU gradient norm grows ∼1.21 per layer",
                      "BN–ReLU gradient variance grows π/(π−1) per layer",
                      "the forward pass stays normalized while the gradient explodes"]
    with pytest.raises(ValueError, match="MLPGradients"):
        ch.check_claims({"norms": flat})


def test_claims_fail_when_the_forward_pass_drifts():
    """Exploding gradients alone do not make Philipp et al.'s claim: the forward pass must stay
    normalized too."""
    depth = 30
    norms = torch.tensor(RELU_R ** (0.5 * np.arange(depth, 0, -1)), dtype=torch.float32)
    drifting = torch.linspace(1, 3, depth)
    claims = ch.check_claims(ch.MLPGradients(depth, 8, 8, 1, norms=norms, variances=norms ** 2,
                                             forward=drifting))
    failed = [row.name for row in claims.rows if not row.passed]
    assert failed == ["the forward pass stays normalized while the gradient explodes"]
