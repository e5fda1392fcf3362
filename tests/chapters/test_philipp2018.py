"""gradprobe.chapters.philipp2018: the architectures of Figure 1, the drivers, figures, tables and
claims of the chapter, at tiny sizes on the CPU."""
import json
import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

import gradprobe
from gradprobe.chapters import philipp2018 as ch
from gradprobe.chapters.philipp2018 import ARCHITECTURES, architecture, init_survey
from gradprobe.data.cifar10 import cifar10
from gradprobe.measure import discs as disc_measure
from gradprobe.measure.gsc import activation_modules
from gradprobe.networks.mlp import PreActBlock
from gradprobe.theory import gaussian


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# Tiny settings: every driver of the chapter in seconds on one CPU core.
TINY = SimpleNamespace(linear_layers=6, width=8, batch=10, seeds=2, probes=1, disc_resolution=11,
                       disc_bn_batch=3, train_images=256, train_pool=8, train_steps=4,
                       learning_rates={"Adam": [1e-3], "SGD": [0.01]}, shallow_layers=2, gsc_every=2,
                       eval_images=64)


@pytest.fixture(scope="module")
def survey():
    return ch.survey_figure1(TINY, gradprobe.seed(0), "cpu")


@pytest.fixture
def cifar10_available():
    """Skip (when the test runs, not when tests are collected) unless CIFAR-10 can be loaded."""
    try:
        cifar10("test", download=False)
    except Exception as err:  # no data folder, no cache, offline: the data is not there
        pytest.skip(f"CIFAR-10 not available (set GRADPROBE_DATA): {err}")


def labelled(ax) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel()) and bool(ax.get_title())


# ----------------------------------------------------------------------------- architectures
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_is_what_its_name_says(name):
    net = architecture(name, 10, 8, in_dim=5, out_dim=3, generator=gen())
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 10 and linears[0].in_features == 5 and linears[-1].out_features == 3
    assert any(isinstance(m, PreActBlock) for m in net.modules()) == name.endswith(" ResNet")
    norms = {type(m) for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm))}
    expected = {"batch-": {nn.BatchNorm1d}, "layer-": {nn.LayerNorm}}.get(name[:6], set())
    assert norms == expected
    nonlinearity = name.removeprefix("batch-").removeprefix("layer-").removeprefix("looks-linear ").split()[0]
    assert {m.name for m in activation_modules(net)} == {nonlinearity.lower()}
    # every plain architecture comes with its ResNet, except looks-linear (a plain ReLU network)
    assert name.endswith(" ResNet") or name.startswith("looks-linear") or f"{name} ResNet" in ARCHITECTURES


def test_architecture_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        architecture("gelu", 10, 8)
    with pytest.raises(ValueError, match="linear_layers"):
        architecture("ReLU", 1, 8)


def test_init_survey_shapes():
    s = init_survey("SELU ResNet", 2, linear_layers=10, width=12, batch=16, data=gen(1), weights=gen(2))
    assert s.gsc.shape == (2, 6) and s.depths == [1, 3, 5, 7, 9, 10]
    assert s.std.shape == (2, 8) and s.rates.shape == (2,)
    assert s.block_values("k").shape == (2, 4)
    plain = init_survey("ReLU", 1, linear_layers=6, width=8, batch=10, data=gen(1), weights=gen(2))
    assert plain.blocks == [[]] and plain.gsc.shape == (1, 6)
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        init_survey("ReLU", 0)


def test_batch_relu_explodes_and_looks_linear_does_not():
    bn = init_survey("batch-ReLU", 1, linear_layers=30, width=64, batch=64, data=gen(1), weights=gen(2))
    ll = init_survey("looks-linear ReLU", 1, linear_layers=30, width=64, batch=64, data=gen(1), weights=gen(2))
    assert float(bn.rates[0]) == pytest.approx((torch.pi / (torch.pi - 1)) ** 0.5, rel=0.05)
    assert float(ll.rates[0]) == pytest.approx(1.0, abs=0.01)


# ----------------------------------------------------------------------------- the definitions
def test_gsc_check_estimate_agrees_with_the_exact_jacobian():
    table = ch.gsc_check(gen(1), gen(2), probes=500)
    assert list(table.index) == ["stem", "block 1", "block 2", "block 3", "head"]
    exact, estimate = table["GSC(k, output), exact (jacrev)"], table["estimate (500 probes)"]
    assert exact["head"] == 1.0                  # GSC of the output with respect to itself
    assert np.allclose(estimate, exact, rtol=0.1)
    assert (exact > 0).all()
    with pytest.raises(ValueError, match="probes must be a positive integer"):
        ch.gsc_check(gen(1), gen(2), probes=0)


# ----------------------------------------------------------------------------- Figure 1
def test_survey_figure1_covers_every_architecture_and_is_seeded(survey):
    assert list(survey) == list(ARCHITECTURES)
    for name, s in survey.items():
        assert s.name == name and s.gsc.shape == (TINY.seeds, len(s.depths)) and s.depths[-1] == TINY.linear_layers
        assert len(s.blocks) == TINY.seeds and bool(s.blocks[0]) == name.endswith("ResNet")
        assert torch.all(s.gsc > 0)
    again = ch.survey_figure1(TINY, gradprobe.seed(0), "cpu")
    assert all(torch.equal(survey[n].gsc, again[n].gsc) for n in survey)
    other = ch.survey_figure1(TINY, gradprobe.seed(1), "cpu")
    assert not torch.equal(survey["batch-ReLU"].gsc, other["batch-ReLU"].gsc)
    # looks-linear ReLU is linear at initialization: a relative change anywhere passes unchanged
    assert torch.allclose(survey["looks-linear ReLU"].gsc, torch.ones(1), rtol=0.2)


def synthetic(name, rate, last_sign_diversity=0.45, last_std=1.0, layers=10, seeds=2):
    """An InitSurvey whose GSC grows by exactly ``rate`` per layer toward the input."""
    depths = list(range(1, layers + 1))
    gsc = torch.tensor([[rate ** (layers - d) for d in depths]] * seeds)
    ramp = lambda first, last: torch.linspace(first, last, layers - 1).repeat(seeds, 1)  # noqa: E731
    return ch.InitSurvey(name, depths, gsc, ramp(1.0, last_std), ramp(0.46, last_sign_diversity),
                         torch.ones(seeds, layers - 1), [[]] * seeds)


def test_figure1_table_rates_and_verdicts():
    survey = {"batch-ReLU": synthetic("batch-ReLU", 1.2),
              "ReLU": synthetic("ReLU", 1.0, last_sign_diversity=0.03),
              "tanh": synthetic("tanh", 1.01, last_std=0.1),
              "looks-linear ReLU": synthetic("looks-linear ReLU", 1.0)}
    table = ch.figure1_table(survey)
    assert list(table.index) == list(survey)
    assert table.loc["batch-ReLU", "GSC rate / linear layer"] == pytest.approx(1.2, abs=1e-4)
    assert table.loc["batch-ReLU", "GSC(1, 50)"] == pytest.approx(1.2 ** 9, abs=0.05)
    assert table.loc["batch-ReLU", "± (sd over seeds)"] == 0
    assert table["verdict"].to_dict() == {"batch-ReLU": "explodes", "ReLU": "collapses", "tanh": "collapses",
                                          "looks-linear ReLU": "neither"}
    assert table.loc["batch-ReLU", "expected [spec]"] == ch.SPEC_RATE["batch-ReLU"]


def test_figure1_draws_six_labelled_panels_with_the_theory_line(survey):
    fig = ch.figure1(survey, TINY)
    try:
        assert isinstance(fig, plt.Figure) and len(fig.axes) == 6
        assert all(labelled(ax) for ax in fig.axes)
        a, b = fig.axes[:2]
        assert "dimensionless" in a.get_ylabel() and a.get_yscale() == "log"
        plain = [n for n in survey if not n.endswith("ResNet")]
        assert [t.get_text() for t in a.get_legend().get_texts()][:len(plain)] == plain
        theory = a.get_lines()[-1]
        expected = gaussian.norm_rate("relu") ** (TINY.linear_layers - np.arange(1, 7))
        assert np.allclose(theory.get_ydata(), expected)
        assert {t.get_text() for t in b.get_legend().get_texts()} == {n for n in survey if n.endswith("ResNet")}
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="at least one architecture"):
        ch.figure1({}, TINY)


# ----------------------------------------------------------------------------- the residual trick
def test_residual_trick_figure_and_table(survey):
    resnets = [n for n in survey if n.endswith("ResNet")]
    fig = ch.residual_trick(survey)
    try:
        assert len(fig.axes) == 3 and all(labelled(ax) for ax in fig.axes)
        scatter = fig.axes[2]
        assert len(scatter.collections) == len(resnets)      # one scatter of blocks per ResNet
        points = scatter.collections[0].get_offsets()
        first = survey[resnets[0]]
        assert np.allclose(points[:, 0], first.block_values("gsc_block").flatten())
    finally:
        plt.close(fig)
    table = ch.pythagorean_table(survey)
    assert list(table.index) == resnets
    assert (table["max |forward error|"] >= table["median |forward error|"]).all()
    k = survey["batch-ReLU ResNet"].block_values("k")[:, -1].mean()
    assert table.loc["batch-ReLU ResNet", "dilution k of the last block"] == round(float(k), 3)
    plain_only = {n: s for n, s in survey.items() if not n.endswith("ResNet")}
    with pytest.raises(ValueError, match="no ResNet"):
        ch.residual_trick(plain_only)


def test_cross_reference_states_the_measured_rate_and_the_theory(survey):
    lines = ch.cross_reference(survey).splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(f"{float(survey['batch-ReLU'].rates.mean()):.4f}")
    assert f"π/(π−1) = {math.pi / (math.pi - 1):.4f}" in lines[1]
    assert lines[2] == f"√(π/(π−1)) = {math.sqrt(math.pi / (math.pi - 1)):.4f}"
    with pytest.raises(ValueError, match="lacks 'batch-ReLU'"):
        ch.cross_reference({})


# ----------------------------------------------------------------------------- Figure 2
def fake_discs(names, roughness):
    mask = torch.ones(4, 4, dtype=torch.bool)
    pictures = {n: torch.full((4, 4, 3), 0.5) for n in names}
    return ch.Figure2Discs(np.zeros((32, 32, 3), np.uint8), "cat", torch.zeros(16, 3), mask, pictures,
                           dict(zip(names, roughness)), {})


def test_roughness_rank_correlation_follows_gsc():
    survey = {n: synthetic(n, r) for n, r in (("ReLU", 1.0), ("SELU", 1.04), ("batch-ReLU", 1.2))}
    names = list(survey)
    assert ch.roughness_rank_correlation(fake_discs(names, [0.01, 0.2, 0.6]), survey) == pytest.approx(1.0)
    assert ch.roughness_rank_correlation(fake_discs(names, [0.6, 0.2, 0.01]), survey) == pytest.approx(-1.0)
    table = ch.roughness_table(fake_discs(names, [0.01234, 0.2, 0.6]), survey)
    assert list(table.index) == names and table.loc["ReLU", "roughness"] == 0.012
    with pytest.raises(ValueError, match="lacks 'tanh'"):
        ch.roughness_table(fake_discs(["tanh"], [0.1]), survey)


@pytest.mark.slow
def test_discs_figure2_centre_is_the_network_itself(cifar10_available, survey):
    names = ("looks-linear ReLU", "batch-ReLU")
    d = ch.discs_figure2(TINY, gradprobe.seed(0), "cpu", names=names)
    assert d.label == "cat" and d.image.shape == (32, 32, 3) and list(d.pictures) == list(names)
    for name in names:
        picture = d.pictures[name]
        assert picture.shape == (11, 11, 3) and 0 <= picture.min() and picture.max() <= 1
        assert torch.all(picture[~d.mask] == 1.0)                      # white outside the disc
        assert 0 <= d.roughness[name] <= 1
        net, x, weights = d.setups[name]
        assert x.shape == ((TINY.disc_bn_batch if "batch" in name else 1), 3072) and weights.shape == (3, 8, 3072)
        # the centre of the disc is c = (1, 0, 0), i.e. W_A: the network as it was built
        with torch.no_grad():
            own = disc_measure.colours(net(x)[:1])[0]
        assert torch.allclose(picture[5, 5], own, atol=1e-5)
    checks = ch.disc_rounding(d, names=names, points=4)
    assert [c.name for c in checks] == list(names) and checks[0].largest < 1e-5   # linear: no rounding blow-up
    assert str(checks[0]).startswith("looks-linear ReLU largest colour difference")
    fig = ch.figure2(d, survey, TINY)
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[0] == "A  input (cat)" and titles[2].startswith("C  looks-linear ReLU\nroughness")
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- Figure 3
def test_train_figure3_refuses_bad_settings_before_loading_data():
    bad = SimpleNamespace(**{**vars(TINY), "learning_rates": {"RMSprop": [0.1]}})
    with pytest.raises(ValueError, match="unknown optimizer 'RMSprop'"):
        ch.train_figure3(bad, gradprobe.seed(0))
    with pytest.raises(ValueError, match="train_steps must be a positive integer"):
        ch.train_figure3(SimpleNamespace(**{**vars(TINY), "train_steps": 0}), gradprobe.seed(0))


@pytest.mark.slow
def test_train_figure3_runs_tables_and_linearization(cifar10_available):
    training = ch.train_figure3(TINY, gradprobe.seed(0), "cpu")
    archs = ["batch-ReLU (6 layers)", "batch-ReLU ResNet (6 layers)", "batch-ReLU (2 layers)"]
    assert [(r.arch, r.optimizer) for r in training.runs] == [(a, o) for a in archs for o in ("Adam", "SGD")]
    for r in training.runs:
        assert r.hist.steps == TINY.train_steps and r.tracker.steps == [0, 2]
        assert r.tracker.table().shape[0] == 2 and 0 <= r.train_error <= 1 and 0 <= r.test_error <= 1
    assert training.x_eval.shape == (TINY.eval_images, 3 * 4 * 4)
    best = training.best
    assert list(best) == archs
    assert all(b.train_error == min(r.train_error for r in training.runs if r.arch == a) for a, b in best.items())
    table = ch.figure3_table(training)
    assert len(table) == 6 and table["lr"].tolist() == ["0.001", "0.01"] * 3
    linearized = ch.linearize_figure3(training, TINY)
    for arch, lin in linearized.items():
        assert lin.layers[0] == 0 and lin.layers == sorted(lin.layers)
        assert float(lin.errors[0]) == best[arch].train_error       # nothing linearized: the trained network
        assert 0 <= lin.effective_depth <= len(best[arch].net.linears()) + 1
    assert str(linearized[archs[0]]).startswith(f"{archs[0]:30s} training error")
    fig = ch.figure3(training, linearized, TINY)
    try:
        assert len(fig.axes) == 3 and all(labelled(ax) for ax in fig.axes)
        assert len(fig.axes[0].get_lines()) == 6 and len(fig.axes[2].get_lines()) == 3
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- claims
def fake_training(plain_error, resnet_error):
    runs = [ch.TrainingRun(arch, "SGD", 0.1, None, {}, None, None, err, err)
            for arch, err in ((f"batch-ReLU ({TINY.linear_layers} layers)", plain_error),
                              (f"batch-ReLU ResNet ({TINY.linear_layers} layers)", resnet_error),
                              ("batch-ReLU (2 layers)", 0.2))]
    return ch.Figure3Runs(runs, torch.zeros(1, 1), torch.zeros(1))


def test_check_claims_rows_have_sources_and_follow_the_measurements(survey, tmp_path, monkeypatch):
    names = list(ch.DISC_ARCHITECTURES)
    gsc = [float(survey[n].gsc[:, 0].median()) for n in names]
    smooth_when_flat = fake_discs(names, gsc)                  # roughness in GSC's order
    claims = ch.check_claims(survey, smooth_when_flat, fake_training(0.85, 0.30), TINY)
    assert claims.chapter == "philipp2018" and len(claims.rows) == 15
    assert all(c.source.startswith("philipp2018") for c in claims.rows)
    by_name = {c.name: c for c in claims.rows}
    rough = by_name["exploding architectures give rough discs"]
    assert rough.measured == pytest.approx(1.0) and rough.passed
    trained = claims.rows[-1]
    assert trained.measured == "0.850 vs 0.300" and trained.passed
    rate = by_name["batch-ReLU GSC rate per layer = √(π/(π−1)) (cross-reference, chapter 1)"]
    assert rate.measured == pytest.approx(float(survey["batch-ReLU"].rates.mean()))
    assert rate.paper == pytest.approx(gaussian.norm_rate("relu"))
    close = ch.check_claims(survey, fake_discs(names, [1 / g for g in gsc]), fake_training(0.35, 0.30), TINY)
    assert not close.rows[-1].passed and not {c.name: c for c in close.rows}[rough.name].passed
    monkeypatch.chdir(tmp_path)
    saved = json.loads(claims.save().read_text())
    assert saved["chapter"] == "philipp2018" and len(saved["claims"]) == 15
    with pytest.raises(ValueError, match="lacks"):
        ch.check_claims({"ReLU": survey["ReLU"]}, smooth_when_flat, fake_training(0.9, 0.1), TINY)
