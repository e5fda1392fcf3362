"""gradprobe.chapters.philipp2018: the settings, architectures, drivers, figures, tables and claims
of the chapter, at tiny sizes on the CPU."""
import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

import gradprobe
from gradprobe.book.claims import FAILS, HOLDS, INCONCLUSIVE, MACHINERY, NOT_TESTABLE, PAPER, RECONSTRUCTION, Claims
from gradprobe.chapters import philipp2018 as ch
from gradprobe.chapters.philipp2018 import ARCHITECTURES, architecture, init_survey
from gradprobe.measure import discs as disc_measure
from gradprobe.measure.gsc import activation_modules, residual_checks
from gradprobe.networks.mlp import PreActBlock
from gradprobe.theory import gaussian


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# Tiny settings: every driver of the chapter in seconds on one CPU core.
TINY = SimpleNamespace(linear_layers=6, width=8, batch=10, seeds=2, probes=1, pythagorean_widths=[8, 16],
                       fig5_repeats=50, disc_resolution=11, disc_bn_batch=3, disc_seeds=2,
                       train_archs=["batch-ReLU", "looks-linear ReLU", "batch-ReLU ResNet"], train_depths=[2, 4],
                       train_width=8, train_pool=8, train_images=256, train_batch=32, train_steps=6,
                       learning_rates=[1e-3, 1e-2], train_seeds=2, eval_images=64, checkpoints=2, focus_depth=4)


class FakePage:
    """What the claims functions use of a Page: its claims and glue."""

    def __init__(self, scale="book"):
        self.claims = Claims("philipp2018", scale=scale)
        self.claims.section("philipp2018-test", "test")
        self.glued = {}

    def glue(self, name, value, fmt=None):
        self.glued[name] = format(value, fmt) if fmt else value
        return value

    def glue_not_run(self, *names):
        self.glued.update({name: "(not run)" for name in names})


def labelled(ax) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel()) and bool(ax.get_title())


def verdicts(page):
    return {r.name: r.verdict for r in page.claims.rows}


@pytest.fixture(scope="module")
def survey():
    return ch.survey_figure1(TINY, gradprobe.seed(0), "cpu")


# ----------------------------------------------------------------------------- settings
def test_settings_scales_and_cost():
    book, smoke, paper = (ch.settings(s) for s in ("book", "smoke", "paper"))
    assert book.linear_layers == paper.linear_layers == 50 and book.width == 100
    assert smoke.focus_depth in smoke.train_depths and book.focus_depth in book.train_depths
    assert paper.focus_depth in paper.train_depths
    assert set(book.train_archs) <= set(ARCHITECTURES) and set(paper.train_archs) <= set(ARCHITECTURES)
    assert 0 < ch.cost(smoke) < ch.cost(book) < ch.cost(paper)
    page = FakePage()
    ch.glue_settings(page, book)
    assert page.glued["S_width"] == "100" and page.glued["S_learning_rates"] == "0.0001, 0.001"
    with pytest.raises(ValueError, match="scale must be one of"):
        ch.settings("huge")


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
    assert name.endswith(" ResNet") or name.startswith("looks-linear") or f"{name} ResNet" in ARCHITECTURES


def test_architecture_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        architecture("gelu", 10, 8)
    with pytest.raises(ValueError, match="linear_layers"):
        architecture("ReLU", 1, 8)


# ----------------------------------------------------------------------------- the definitions
def test_gsc_check_and_its_machinery_row():
    table = ch.gsc_check(gen(1), gen(2), probes=500)
    assert list(table.index) == ["stem", "block 1", "block 2", "block 3", "head"]
    exact, estimate = table["GSC(k, output), exact (jacrev)"], table["estimate (500 probes)"]
    assert exact["head"] == 1.0 and np.allclose(estimate, exact, rtol=0.1)
    page = FakePage()
    ch.check_definitions(page, table)
    (row,) = page.claims.rows
    assert row.kind == MACHINERY and row.verdict == HOLDS
    broken = table.copy()
    broken.iloc[:, 1] *= 1.5                      # an estimator 50% off must fail the check
    page = FakePage()
    ch.check_definitions(page, broken)
    assert page.claims.rows[0].verdict == FAILS


# ----------------------------------------------------------------------------- Proposition 1
def test_proposition1_rescaling_changes_raw_gradients_not_the_function_or_gsc():
    p = ch.proposition1(gradprobe.seed(0), linear_layers=6, width=16, batch=12, rate=3.0)
    assert p.raw.shape == p.gsc.shape == (2, 6) and p.layers == list(range(1, 7))
    assert p.output_change < 1e-5
    assert torch.allclose(p.gsc[0], p.gsc[1], rtol=1e-4)
    # raw gradients of f′ are those of f times r^(L−l): 3^5 at the first layer, 1 at the output
    assert torch.allclose(p.raw[1] / p.raw[0], torch.tensor([3.0 ** (6 - l) for l in range(1, 7)]), rtol=1e-3)
    rate_f, rate_g = p.raw_rates
    assert rate_g / rate_f == pytest.approx(3.0, rel=1e-3)
    page = FakePage()
    ch.check_proposition1(page, p)
    assert page.claims.rows[0].verdict == HOLDS and page.claims.rows[0].kind == MACHINERY
    assert float(page.glued["prop1_raw_total"]) == pytest.approx(float(p.raw[1, 0] / p.raw[1, -1]), rel=1e-2)
    fig = ch.figure_proposition1(p)
    try:
        assert len(fig.axes) == 2 and all(labelled(ax) for ax in fig.axes)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="rate must be positive"):
        ch.proposition1(gradprobe.seed(0), rate=0.0)


# ----------------------------------------------------------------------------- Figure 1
def test_block_terms_against_an_independent_computation():
    net = architecture("batch-ReLU ResNet", 10, 16, generator=gen(1))
    x = torch.randn(12, 16, generator=gen(2))
    terms = ch.block_terms(net, x)
    assert terms.shape == (4, 5)
    cos, d_eff, k, error = terms[:, 0], terms[:, 1], terms[:, 2], terms[:, 3]
    assert torch.allclose(error, 2 * cos * k / (k ** 2 + 1))
    assert bool((d_eff >= 16 - 1e-6).all())                    # at least the width
    # the forward Pythagorean error and dilution of gradprobe.measure.gsc.residual_checks
    checks = residual_checks(net, x, probes=1, generator=gen(3))
    assert torch.allclose(error, torch.tensor([c.forward_error for c in checks], dtype=torch.float64), atol=1e-5)
    assert torch.allclose(k, torch.tensor([c.k for c in checks], dtype=torch.float64), rtol=1e-5)
    with pytest.raises(ValueError, match="no PreActBlock"):
        ch.block_terms(architecture("ReLU", 4, 8), torch.randn(3, 8))


def test_standardized_cross_term_is_standard_normal_at_initialization():
    z = torch.cat([ch.block_terms(architecture("ReLU ResNet", 8, 12, generator=gen(s)),
                                  torch.randn(6, 12, generator=gen(100 + s)))[:, 4] for s in range(60)])
    assert len(z) == 180
    assert abs(float(z.mean())) < 3 / math.sqrt(180) and abs(float(z.pow(2).mean()) - 1) < 0.35


def test_init_survey_shapes():
    s = init_survey("SELU ResNet", 2, linear_layers=10, width=12, batch=16, data=gen(1), weights=gen(2))
    assert s.gsc.shape == (2, 6) and s.depths == [1, 3, 5, 7, 9, 10] and s.is_resnet
    assert s.std.shape == s.pseudo_linearity.shape == s.cosine.shape == (2, 8) and s.rates.shape == (2,)
    assert s.block_values("k").shape == (2, 4) and s.terms.shape == (2, 4, 5)
    plain = init_survey("ReLU", 1, linear_layers=6, width=8, batch=10, data=gen(1), weights=gen(2))
    assert plain.blocks == [[]] and plain.gsc.shape == (1, 6) and not plain.is_resnet
    assert plain.terms.shape == (1, 0, 5)
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        init_survey("ReLU", 0)


def test_survey_figure1_covers_every_architecture_and_is_seeded(survey):
    assert list(survey) == list(ARCHITECTURES)
    for name, s in survey.items():
        assert s.gsc.shape == (TINY.seeds, len(s.depths)) and s.depths[-1] == TINY.linear_layers
        assert s.is_resnet == name.endswith("ResNet") and torch.all(s.gsc > 0)
    again = ch.survey_figure1(TINY, gradprobe.seed(0), "cpu")
    assert all(torch.equal(survey[n].gsc, again[n].gsc) for n in survey)
    other = ch.survey_figure1(TINY, gradprobe.seed(1), "cpu")
    assert not torch.equal(survey["batch-ReLU"].gsc, other["batch-ReLU"].gsc)
    assert torch.allclose(survey["looks-linear ReLU"].gsc, torch.ones(1), rtol=0.2)


def synthetic(name, rate, last_sign_diversity=0.45, last_std=1.0, last_pl=0.3, layers=10, seeds=3,
              jitter=1e-3):
    """An InitSurvey whose GSC grows by ``rate`` (± a small per-seed jitter) per layer toward the
    input, with domain measures ramping from their Gaussian values to the given last values."""
    depths = list(range(1, layers + 1))
    rates = [rate + jitter * (s - 1) for s in range(seeds)]
    gsc = torch.tensor([[r ** (layers - d) for d in depths] for r in rates])
    ramp = lambda first, last: torch.stack([torch.linspace(first, last + jitter * s, layers - 1)  # noqa: E731
                                            for s in range(seeds)])
    return ch.InitSurvey(name, depths, gsc, ramp(1.0, last_std), ramp(0.46, last_sign_diversity),
                         torch.ones(seeds, layers - 1), ramp(0.3, last_pl), ramp(0.0, 0.0), [[]] * seeds,
                         torch.zeros(seeds, 0, 5, dtype=torch.float64))


def paper_like_survey():
    """The plain architectures as the paper describes them."""
    return {"ReLU": synthetic("ReLU", 1.0, last_sign_diversity=0.03, last_pl=0.02),
            "layer-ReLU": synthetic("layer-ReLU", 1.0, last_sign_diversity=0.03, last_pl=0.02),
            "batch-ReLU": synthetic("batch-ReLU", 1.21),
            "tanh": synthetic("tanh", 1.005, last_std=0.1, last_pl=0.01),
            "layer-tanh": synthetic("layer-tanh", 1.09, last_pl=0.15),
            "batch-tanh": synthetic("batch-tanh", 1.10, last_pl=0.15),
            "SELU": synthetic("SELU", 1.04, last_pl=0.13),
            "looks-linear ReLU": synthetic("looks-linear ReLU", 1.0)}


def test_figure1_table_rates_and_verdicts():
    table = ch.figure1_table(paper_like_survey())
    assert table.loc["batch-ReLU", "GSC rate / linear layer"].startswith("1.21 ±")
    assert table.loc["batch-ReLU", "GSC(1, 10)"] == pytest.approx(1.21 ** 9, rel=1e-2)
    assert table["does"].to_dict() == {"ReLU": "collapses", "layer-ReLU": "collapses", "batch-ReLU": "explodes",
                                       "tanh": "collapses", "layer-tanh": "explodes", "batch-tanh": "explodes",
                                       "SELU": "explodes", "looks-linear ReLU": "neither"}


def test_check_figure1_follows_the_measurements():
    page = FakePage()
    ch.check_figure1(page, paper_like_survey())
    v = verdicts(page)
    assert v["batch-ReLU, batch-tanh, layer-tanh and SELU explode at initialization"] == HOLDS
    assert v["ReLU and layer-ReLU do not explode but their domain collapses"] == HOLDS
    assert v["tanh does not explode but its domain collapses"] == HOLDS
    kinds = {r.name: r.kind for r in page.claims.rows}
    assert kinds["looks-linear ReLU: GSC ≡ 1 and no collapse at initialization"] == MACHINERY
    assert kinds["the caption's overlapping curves appear in our panels"] == RECONSTRUCTION
    assert all(r.source and (r.kind != PAPER or r.quote) for r in page.claims.rows)
    assert page.glued["rate_batch_ReLU"] == "1.210"
    # SELU no longer exploding: the first row fails; ReLU collapsing no more: the third fails
    changed = {**paper_like_survey(), "SELU": synthetic("SELU", 1.0),
               "ReLU": synthetic("ReLU", 1.0, last_sign_diversity=0.4)}
    page = FakePage()
    ch.check_figure1(page, changed)
    v = verdicts(page)
    assert v["batch-ReLU, batch-tanh, layer-tanh and SELU explode at initialization"] == FAILS
    assert v["ReLU and layer-ReLU do not explode but their domain collapses"] == FAILS
    with pytest.raises(ValueError, match="lacks"):
        ch.check_figure1(FakePage(), {"ReLU": changed["ReLU"]})


def test_caption_overlap_is_zero_for_identical_curves():
    s = paper_like_survey()
    gaps = ch._caption_overlaps({**s, "layer-ReLU": s["ReLU"]})
    assert float(gaps["E vs ReLU"].max()) == 0.0 and float(gaps["F vs ReLU"].max()) == 0.0
    assert float(ch._gap(s, "gsc", "batch-ReLU", True).min()) > 0.3     # a steep curve is far from a flat one


def test_figure1_panels_are_labelled_with_the_theory_line(survey):
    for draw in (lambda: ch.figure1_scale(survey, TINY), lambda: ch.figure1_domain(survey)):
        fig = draw()
        try:
            axes = [ax for ax in fig.axes if ax.get_title()]
            assert len(axes) == 3 and all(labelled(ax) for ax in axes)
            legend = {t.get_text() for t in fig.legends[0].get_texts()}
            assert {n for n in survey if not n.endswith("ResNet")} <= legend
        finally:
            plt.close(fig)
    fig = ch.figure1_scale(survey, TINY)
    try:
        theory = fig.axes[0].get_lines()[-1]
        expected = gaussian.norm_rate("relu") ** (TINY.linear_layers - np.arange(1, 7))
        assert np.allclose(theory.get_ydata(), expected)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="at least one plain architecture"):
        ch.figure1_scale({}, TINY)


# ----------------------------------------------------------------------------- ResNets
def test_resnet_rows_follow_the_rates(survey):
    page = FakePage()
    ch.check_resnets(page, survey)
    names = [r.name for r in page.claims.rows]
    assert names[0].startswith("ResNets of the exploding") and names[2].startswith("... their ResNets collapse")
    assert all(r.kind == PAPER and r.quote for r in page.claims.rows)
    # a survey in which every ResNet keeps its plain version's numbers: nothing is lower, nothing collapses less
    same = {**survey, **{f"{n} ResNet": survey[n] for n in ch.EXPLODING + ch.COLLAPSING}}
    page = FakePage()
    ch.check_resnets(page, same)
    assert all(r.verdict in (FAILS, INCONCLUSIVE) for r in page.claims.rows)
    table = ch.resnet_table(survey)
    assert len(table) == 14 and "SELU ResNet" in table.index
    fig = ch.figure_resnets(survey)
    try:
        assert len(fig.axes) == 3 and all(ax.get_xlabel() for ax in fig.axes)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="no ResNet"):
        ch.resnet_table({n: s for n, s in survey.items() if not n.endswith("ResNet")})


# ----------------------------------------------------------------------------- Pythagorean equation
def test_dilution_theory_of_the_stem_and_branch():
    assert ch._dilution_theory("batch-ReLU ResNet") == pytest.approx(2.0)       # He stem 2, branch 2·½
    tanh2 = gaussian.gaussian_expectation(lambda z: math.tanh(z) ** 2)
    assert ch._dilution_theory("layer-tanh ResNet") == pytest.approx(1 / tanh2)


def test_pythagorean_sweep_figures_table_and_rows(survey):
    sweep_ = ch.pythagorean_sweep(TINY, gradprobe.seed(0))
    assert sweep_.widths == [8, 16] and set(sweep_.terms) == {n for n in ARCHITECTURES if n.endswith("ResNet")}
    assert sweep_.terms["ReLU ResNet"][16].shape == (2, 2, 5)
    spread = sweep_.spread("ReLU ResNet")
    assert spread.shape == (2, 2) and sweep_.slopes("ReLU ResNet").shape == (2,)
    expected = math.log(float(spread[0, 1] / spread[0, 0])) / math.log(2)
    assert float(sweep_.slopes("ReLU ResNet")[0]) == pytest.approx(expected, rel=1e-5)
    table = ch.pythagorean_table(survey, sweep_)
    assert len(table) == 7 and "end-to-end GSC measured / predicted" in table.columns
    page = FakePage()
    ch.check_pythagoras(page, survey, sweep_)
    assert [r.kind for r in page.claims.rows] == [MACHINERY, PAPER, PAPER, PAPER]
    assert {"pyth_max_ReLU", "pyth_deff_batch_ReLU", "pyth_s_low"} <= set(page.glued)
    for fig in (ch.figure_pythagoras(survey, sweep_), ch.figure_dilution(survey)):
        try:
            assert all(labelled(ax) for ax in fig.axes)
        finally:
            plt.close(fig)
    with pytest.raises(ValueError, match="at least two widths"):
        ch.pythagorean_sweep(SimpleNamespace(**{**vars(TINY), "pythagorean_widths": [8]}), gradprobe.seed(0))


def test_end_to_end_prediction_is_the_product_of_the_blocks(survey):
    s = survey["batch-ReLU ResNet"]
    measured, predicted = ch._end_to_end(s)
    k, g = s.block_values("k"), s.block_values("gsc_residual")
    by_hand = torch.prod(torch.sqrt((k ** 2 + g ** 2) / (k ** 2 + 1)), 1) * s.gsc[:, -2]
    assert torch.allclose(predicted, by_hand) and torch.equal(measured, s.gsc[:, 0])


# ----------------------------------------------------------------------------- cross-reference, Figure 5
def test_cross_reference_row_compares_with_the_norm_rate():
    page = FakePage()
    ch.check_cross_reference(page, {"batch-ReLU": synthetic("batch-ReLU", gaussian.norm_rate("relu"))})
    assert page.claims.rows[0].verdict == HOLDS and page.claims.rows[0].source == "ghost2024, Eq. (1)"
    assert page.glued["xref_theory"] == f"{math.sqrt(math.pi / (math.pi - 1)):.4f}"
    page = FakePage()
    ch.check_cross_reference(page, {"batch-ReLU": synthetic("batch-ReLU", 1.30)})
    assert page.claims.rows[0].verdict == FAILS


def test_figure5_population_values_and_samples():
    # ReLU on N(0, 1): the closed form √(1/4 − 1/(2π)); ReLU depends on μ/σ only
    assert ch._population_residual("relu", 0.0, 1.0) == pytest.approx(math.sqrt(0.25 - 1 / (2 * math.pi)), rel=1e-6)
    assert ch._population_residual("relu", 0.3, 0.2) == pytest.approx(ch._population_residual("relu", 3.0, 2.0))
    assert ch._population_residual("tanh", 0.0, 0.2) < 0.05 < ch._population_residual("tanh", 0.0, 1.0)
    f5 = ch.pseudo_linearity_fig5(SimpleNamespace(fig5_repeats=400), gradprobe.seed(0))
    assert set(f5.residuals) == set(ch.FIG5_CASES) | set(ch._REFERENCE_CASES)
    for case, values in f5.residuals.items():
        assert values.shape == (400,) and f5.shown[case].shape == (50,)
        # a line fitted to 50 points leaves less than the population residual (it adapts to them)
        assert 0.6 * f5.theory[case] < float(values.mean()) < 1.02 * f5.theory[case]
    # ... and tends to it with many points (quadrature against sampling)
    for act, mu, sigma in list(ch.FIG5_CASES.values()) + list(ch._REFERENCE_CASES.values()):
        z = mu + sigma * torch.randn(1, 400_000, generator=gen(7), dtype=torch.float64)
        a = torch.relu(z) if act == "relu" else torch.tanh(z)
        assert float(ch._linear_fit_residual(z, a)[0]) == pytest.approx(ch._population_residual(act, mu, sigma),
                                                                        rel=0.01)
    page = FakePage()
    ch.check_figure5(page, f5)
    assert page.claims.rows[0].verdict == HOLDS and "very closely" in page.claims.rows[0].quote
    fig = ch.figure5(f5)
    try:
        assert [ax.get_title()[0] for ax in fig.axes] == ["A", "B", "C"] and all(labelled(ax) for ax in fig.axes)
    finally:
        plt.close(fig)
    assert len(ch.fig5_table(f5)) == 5


# ----------------------------------------------------------------------------- Figure 2
def fake_discs(roughness, gsc, names=("ReLU", "SELU", "batch-ReLU")):
    """Figure2Discs with given roughness [seeds, steps] and GSC [seeds] per architecture."""
    mask = torch.ones(128, 128, dtype=torch.bool)                 # a 128-pixel disc: a step is 2π/128
    seeds = len(gsc[0])
    return ch.Figure2Discs(np.zeros((32, 32, 3), np.uint8), "cat", mask,
                           {n: [torch.full((8, 8, 3), 0.5)] * seeds for n in names},
                           {n: torch.tensor(r) for n, r in zip(names, roughness)},
                           {n: torch.tensor(g) for n, g in zip(names, gsc)}, {}, {})


def test_roughness_exponents_and_rank_correlations():
    smooth = [[0.01, 0.02, 0.04]] * 2                     # ∝ pixel step: α = 1
    confetti = [[0.6, 0.6, 0.6]] * 2                      # the same at every resolution: α = 0
    d = fake_discs([smooth, [[0.1, 0.15, 0.2]] * 2, confetti], [[1.0, 1.2], [8.0, 9.0], [1e4, 2e4]])
    assert torch.allclose(d.exponents("ReLU"), torch.ones(2)) and torch.allclose(d.exponents("batch-ReLU"),
                                                                                   torch.zeros(2), atol=1e-6)
    assert torch.allclose(d.rank_correlations(), torch.ones(2))
    reversed_ = fake_discs([confetti, [[0.1, 0.15, 0.2]] * 2, smooth], [[1.0, 1.2], [8.0, 9.0], [1e4, 2e4]])
    assert torch.allclose(reversed_.rank_correlations(), -torch.ones(2))
    page = FakePage()
    ch.check_figure2(page, d)
    v = verdicts(page)
    assert v["discs are rougher the larger their network's GSC"] == HOLDS
    # GSC·2π/128 ≥ 10: batch-ReLU must be confetti; 4·GSC·2π/128 ≤ 1: ReLU smooth; SELU in between
    assert page.glued["disc_confetti"] == "batch-ReLU" and page.glued["disc_smooth"] == "ReLU"
    assert v["confetti where a pixel step is amplified past 1, smooth pictures where it is not"] == HOLDS
    page = FakePage()
    ch.check_figure2(page, reversed_)
    assert set(verdicts(page).values()) == {FAILS}


@pytest.mark.slow
def test_discs_figure2_centre_is_the_network_itself(cifar10_available):
    from gradprobe.data.cifar10 import CIFAR10_CLASSES, cifar10, to_tensor
    from gradprobe.data.tensors import channel_stats

    names = ("looks-linear ReLU", "batch-ReLU")
    S = SimpleNamespace(**{**vars(TINY), "disc_resolution": 11})
    d = ch.discs_figure2(S, gradprobe.seed(0), "cpu", names=names)
    assert d.label == "cat" and d.image.shape == (32, 32, 3) and list(d.pictures) == list(names)
    for name in names:
        assert len(d.pictures[name]) == 2 and d.roughness[name].shape == (2, len(ch.DISC_STEPS))
        picture = d.pictures[name][0]
        assert picture.shape == (11, 11, 3) and torch.all(picture[~d.mask] == 1.0)   # white outside
        assert bool((d.gsc[name] > 0).all())
    assert list(d.float64) == ["batch-ReLU"] and d.float64["batch-ReLU"].shape == (2, 2)
    assert d.rounding["batch-ReLU"][1] < 1e-6                 # float64: shared products = one network per point
    # the centre of the disc is c = (1, 0, 0), i.e. W_A: the first network as it was built, whose
    # seed is the first draw of the weights generator
    seed_value = int(torch.randint(0, 2**31, (1,), generator=gradprobe.seed(0).weights))
    images, labels = cifar10("test")
    cat = images[[int(np.flatnonzero(labels == CIFAR10_CLASSES.index("cat"))[0])]]
    x = to_tensor(cat, *channel_stats()).flatten(1)
    net, x1, _ = ch._disc_setup("looks-linear ReLU", S, seed_value, x, "cpu")
    with torch.no_grad():
        own = disc_measure.colours(net(x1))[0]
    assert torch.allclose(d.pictures["looks-linear ReLU"][0][5, 5], own, atol=1e-5)
    table = ch.roughness_table(d)
    assert list(table.index) == list(names) and table.loc["batch-ReLU", "float64 / float32"]
    for fig in (ch.figure2_discs(d, S, 1), ch.figure2_discs(d, S, 2), ch.figure2_roughness(d, S)):
        plt.close(fig)


# ----------------------------------------------------------------------------- Figure 3
def test_checkpoint_steps():
    assert ch.checkpoint_steps(800, 4) == [100, 200, 400, 800]
    assert ch.checkpoint_steps(6, 4) == [1, 2, 3, 6]
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        ch.checkpoint_steps(0, 2)


def test_train_figure3_refuses_bad_settings_before_loading_data():
    with pytest.raises(ValueError, match="unknown architecture 'gelu'"):
        ch.train_figure3(SimpleNamespace(**{**vars(TINY), "train_archs": ["gelu"]}))
    with pytest.raises(ValueError, match="train_steps must be a positive integer"):
        ch.train_figure3(SimpleNamespace(**{**vars(TINY), "train_steps": 0}))
    with pytest.raises(ValueError, match="learning_rates must be positive"):
        ch.train_figure3(SimpleNamespace(**{**vars(TINY), "learning_rates": [0.0]}))


def fake_run(final_error, eff_errors=(0.3, 0.3, 0.4), depth=4, diverged=False):
    """A train_trial result with the final training error and a linearization curve."""
    errors = torch.tensor([[0.8, 0.85, 0.9], [final_error, *eff_errors[1:]]])
    return {"marks": [3, 6], "counts": [0, depth // 2, depth], "errors": errors, "gsc": torch.ones(3, depth),
            "gsc_depths": list(range(1, depth + 1)), "residuals": torch.full((depth,), 0.2),
            "blocks": torch.zeros(2, 5, dtype=torch.float64), "accuracy": torch.zeros(6), "diverged": diverged}


def fake_figure3(error_of):
    trials, results = [], {}
    for arch in ("batch-ReLU", "looks-linear ReLU", "batch-ReLU ResNet"):
        for depth in (2, 4):
            for lr in (1e-3, 1e-2):
                for seed in range(3):
                    t = ch.TrainTrial(arch, depth, lr, seed, 8, 8, 256, 32, 6, 64, 2)
                    trials.append(t)
                    results[t] = fake_run(error_of(arch, depth, lr) + 0.01 * seed, depth=depth)
    return ch.Figure3(trials, results, ["batch-ReLU", "looks-linear ReLU", "batch-ReLU ResNet"], [2, 4],
                      [1e-3, 1e-2], [0, 1, 2])


def test_figure3_best_learning_rate_effective_depth_and_rows():
    def paper_like(arch, depth, lr):        # batch-ReLU worse when deep, the others not; lr 1e-2 better
        deep = depth == 4 and arch == "batch-ReLU"
        return (0.85 if deep else 0.3) + (0.05 if lr == 1e-3 else 0.0)

    f3 = fake_figure3(paper_like)
    assert f3.best_lr("batch-ReLU", 2) == 1e-2
    assert torch.allclose(f3.final_errors("batch-ReLU", 4), torch.tensor([0.85, 0.86, 0.87]))
    eff = f3.effective_depths("looks-linear ReLU", 4)
    assert eff.shape == (3, 2) and bool(torch.isnan(eff[:, 0]).all())   # at the first mark: still at chance
    assert torch.isfinite(eff[:, 1]).all() and bool((eff[:, 1] <= 4).all())
    page = FakePage()
    ch.check_figure3(page, f3, focus_depth=4)
    v = verdicts(page)
    assert v["exploding architectures train worse at the largest depth than at their best depth"] == HOLDS
    assert v["the batch-ReLU ResNet trains far better than plain batch-ReLU at the largest depth"] == HOLDS
    assert v["looks-linear ReLU trains far better than the exploding architectures at the largest depth"] == HOLDS
    kinds = {r.name: r.kind for r in page.claims.rows}
    assert kinds["exploding gradients limit effective depth (linearization measure)"] == RECONSTRUCTION
    assert float(page.glued["f3_err_deep_batch_ReLU"]) == pytest.approx(0.86, abs=0.005)
    # architectures only larger scales train still have their prose numbers, marked as not run
    assert page.glued["f3_eff_SELU"] == page.glued["f3_resid_layer_tanh"] == "(not run)"
    assert "f3_eff_batch_ReLU" in page.glued and page.glued["f3_eff_batch_ReLU"] != "(not run)"
    # every architecture trains equally well at every depth: the depth-limit rows fail
    page = FakePage()
    ch.check_figure3(page, fake_figure3(lambda arch, depth, lr: 0.3), focus_depth=4)
    assert verdicts(page)["exploding architectures train worse at the largest depth than at their best depth"] == FAILS
    # below book scale the training rows are not testable
    page = FakePage("smoke")
    ch.check_figure3(page, f3, focus_depth=4)
    assert set(verdicts(page).values()) == {NOT_TESTABLE}
    table = ch.figure3_table(f3)
    assert len(table) == 6 and table.loc[("batch-ReLU", 4), "best lr"] == "0.01"
    for fig in (ch.figure3_depth(f3), ch.figure3_training(f3, 4)):
        try:
            assert all(labelled(ax) for ax in fig.axes[:3])
        finally:
            plt.close(fig)
    with pytest.raises(ValueError, match="was not trained"):
        ch.figure3_training(f3, 16)


@pytest.mark.slow
def test_train_trial_and_the_sweep(cifar10_available, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADPROBE_SWEEPS", str(tmp_path))
    S = SimpleNamespace(**{**vars(TINY), "train_archs": ["batch-ReLU ResNet"], "train_depths": [4],
                           "learning_rates": [1e-3], "train_seeds": 2})
    f3 = ch.train_figure3(S)
    assert len(f3.trials) == 2 and f3.seeds == [0, 1]
    r = f3.results[f3.trials[0]]
    assert r["marks"] == [3, 6] and r["errors"].shape == (2, len(r["counts"])) and r["counts"][0] == 0
    assert r["gsc"].shape == (3, len(r["gsc_depths"])) and r["blocks"].shape == (1, 5)
    assert r["residuals"].shape == (3,) and bool((r["errors"] >= 0).all() & (r["errors"] <= 1).all())
    assert r["accuracy"].shape == (TINY.train_steps,)
    again = ch.train_trial(f3.trials[0])                      # a trial seeds itself: the same numbers
    assert torch.equal(again["errors"], r["errors"]) and torch.equal(again["gsc"], r["gsc"])
    assert not torch.equal(f3.results[f3.trials[1]]["errors"], r["errors"])
