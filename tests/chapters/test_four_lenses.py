"""gradprobe.chapters.four_lenses: the zoo, the design stack, the residual study and their claims,
at tiny sizes (synthetic images in place of CIFAR-10, so the tests need no data)."""
import math

import matplotlib.pyplot as plt
import pytest
import torch

from gradprobe import sweep
from gradprobe.book.claims import FAILS, HOLDS, MACHINERY, NOT_TESTABLE, Claims
from gradprobe.book.scales import SCALES, settings
from gradprobe.chapters import four_lenses as ch
from gradprobe.theory.gaussian import RELU_RATE

TINY = settings("book", book=dict(seeds=2, batch=8, size=32, tokens=8, vocab=32, gpt=(2, 32, 2), vit=(2, 32, 2, 8),
                                  stack=(6, 8), stack_size=8, stack_batch=16, stack_seeds=2, resnets=(18, 34),
                                  resnet_seeds=2))


def gen(n=0):
    return torch.Generator().manual_seed(n)


@pytest.fixture(autouse=True)
def synthetic_images(monkeypatch, tmp_path):
    """Standard-normal 'images' with labels in place of CIFAR-10; sweeps stored under tmp_path."""
    x = torch.randn(256, 3, 32, 32, generator=gen(99))
    y = torch.randint(0, 10, (256,), generator=gen(98))
    monkeypatch.setattr(ch, "_cifar_test", lambda: (x, y))
    monkeypatch.setenv("GRADPROBE_SWEEPS", str(tmp_path / "sweeps"))
    monkeypatch.setenv("GRADPROBE_QUIET", "1")
    yield
    plt.close("all")


def rows(claims):
    return {r.name: r for r in claims.rows}


# ---------------------------------------------------------------- settings, cost, inputs
def test_settings_and_cost_grow_with_scale():
    costs = [ch.cost(ch.settings(s)) for s in SCALES]
    assert 0 < costs[0] < costs[1] < costs[2]
    paper = ch.settings("paper")
    assert paper.size == 224 and paper.gpt == (12, 768, 12) and paper.tokens == 1024   # ImageNet, GPT-2 small
    assert ch.settings("smoke").seeds >= 2                                              # an SE needs two seeds


def test_images_are_resized_with_unit_variance_and_drawn_by_the_generator():
    x, y = ch.images(64, 8, gen(1))
    assert x.shape == (64, 3, 8, 8) and y.shape == (64,)
    assert float(x.var()) == pytest.approx(1.0, rel=0.15)        # 4×4 means of independent pixels, rescaled
    assert torch.equal(ch.images(64, 8, gen(1))[0], x) and not torch.equal(ch.images(64, 8, gen(2))[0], x)
    assert ch.images(4, 64, gen(1))[0].shape == (4, 3, 64, 64)
    with pytest.raises(ValueError, match="must divide 32"):
        ch.images(4, 12, gen(1))


# ---------------------------------------------------------------- the zoo
@pytest.mark.parametrize("arch", ["ViT", "GPT-2-style decoder", "ResNet-56 (CIFAR)"])
def test_zoo_trial_diagnoses_a_fresh_network_reproducibly(arch):
    config = sweep.Config(arch=arch, rep=0, seed=0, device="cpu", **{k: getattr(TINY, k) for k in ch._ZOO_KEYS})
    run = ch.zoo_trial(config)
    again = ch.zoo_trial(config)
    assert run["grad_variance"] == again["grad_variance"]                  # seeded from the configuration
    assert len(run["names"]) == len(run["gsc"]) == len(run["weight_numel"])
    expected = {"ViT": 2 * TINY.vit[0], "GPT-2-style decoder": 2 * TINY.gpt[0], "ResNet-56 (CIFAR)": 27}[arch]
    assert run["residual"] and run["effective_depth"] == expected          # one unit per residual branch
    other = ch.zoo_trial(sweep.Config({**config, "rep": 1}))
    assert other["grad_variance"] != run["grad_variance"]                  # another seed: other weights, batch


def test_build_knows_every_architecture_of_the_zoo():
    with pytest.raises(ValueError, match="unknown architecture"):
        ch.build("AlexNet", TINY, gen(0))
    vit = ch.build("ViT", TINY, gen(0))
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def fake_run(values, in_fit, between, layer_kinds=None, stream=None, **extra):
    """A :func:`ch.summarize`-like dict with the same numbers for every lens."""
    n = len(values)
    run = {"grad_variance": list(values), "gsc": [math.sqrt(v) for v in values], "R_b": list(values),
           "R_f": [1.0] * n, "weight_grad_norm": [math.sqrt(v) for v in values], "weight_numel": [1.0] * n,
           "in_fit": in_fit, "between": between, "kinds_of_layers": layer_kinds or ["conv2d"] * n,
           "stream_layer": [True] * n,
           "bjorck_a": [20.0] * n, "bjorck_b": [1.0] * n, "stream_variance": [], "stream_segment": []}
    if stream is not None:
        run["stream_variance"], run["stream_segment"] = stream
    run.update(extra)
    return run


def test_one_number_table_refits_each_lens_on_the_runs_of_the_fit():
    # two runs of three layers (a pool between them), each growing by exactly 1.5 toward the input
    values = [9 * 1.5 ** 2, 9 * 1.5, 9.0, 0.5, 4 * 1.5 ** 2, 4 * 1.5, 4.0, 0.1]
    in_fit = [True, True, True, False, True, True, True, False]
    between = ["BN–ReLU", "BN–ReLU", "", "", "BN–ReLU", "BN–ReLU", "", ""]
    ks, depth, seg = ch._runs_of_fit(fake_run(values, in_fit, between))
    assert ks == [0, 1, 2, 4, 5, 6] and depth == [0, 1, 2, 0, 1, 2] and seg == [0, 0, 0, 1, 1, 1]
    zoo = ch.Zoo({"VGG-19 (BN)": [fake_run(values, in_fit, between)] * 2})
    table = ch.one_number_table(zoo)
    for samples in table["samples"]:
        assert samples == pytest.approx([1.5, 1.5], rel=1e-12)


def test_stream_growth_leaves_the_jumps_between_stages_out():
    run = fake_run([1.0], [False], [""], stream=([8.0, 4.0, 2.0, 100.0, 10.0], [0, 0, 0, 1, 1]))
    assert ch._stream_growth(run) == pytest.approx(4.0 * 10.0)           # 8/2 within stage 0, 100/10 in 1
    chained = ch._chained(run)
    assert chained[-1] == 1.0 and chained[0] == pytest.approx(40.0)
    assert chained[2] == pytest.approx(chained[3])                        # no jump at the stage boundary


def zoo_of(rate_layer, rate_depth, predicted=RELU_RATE):
    runs = {}
    for arch in ch.ZOO:
        rl = rate_layer.get(arch, [1.0, 1.0])
        rd = rate_depth.get(arch, rl)
        runs[arch] = [fake_run([4.0, 2.0, 1.0], [True, True, True], ["BN–ReLU", "BN–ReLU", ""], stream=([4.0, 2.0, 1.0], [0] * 3),
                               rate_layer=a, rate_depth=b, predicted_layer=predicted, effective_depth=16,
                               residual=arch != "VGG-19 (BN)", kinds="BN–ReLU", overall_growth=2.0)
                      for a, b in zip(rl, rd)]
    return ch.Zoo(runs)


def test_zoo_claims_are_decided_on_the_right_numbers():
    zoo = zoo_of({"VGG-19 (BN)": [1.46, 1.47]}, {"ResNet-50": [1.465, 1.468], "ViT": [1.5, 1.51],
                                                 "GPT-2-style decoder": [1.0, 1.01]})
    claims = Claims("four_lenses")
    claims.section("four_lenses-zoo", "zoo")
    ch.check_zoo(claims, zoo)
    r = rows(claims)
    assert r["VGG-19 (BN): rate per layer ≈ π/(π−1)"].verdict == HOLDS
    assert r["ResNet-50: norm rate per effective depth ≈ 1.21"].verdict == HOLDS      # √1.467 per branch
    assert r["pre-act ResNet-50: norm rate per effective depth ≈ 1.21"].verdict == FAILS   # √1 per branch
    assert r["ViT: no explosion"].verdict == FAILS and r["GPT-2-style decoder: no explosion"].verdict == HOLDS
    # the synthetic lenses grow by exactly 2 per layer: √2 is far from √r
    assert r["VGG-19 (BN): weight gradients grow at √r per layer"].verdict == FAILS


def test_design_claims_and_machinery():
    def runs(rates, predicted, ab=20.0):
        return [fake_run([1.0], [False], [""], rate_layer=x, predicted_layer=predicted, bjorck_a=[ab], bjorck_b=[1.0])
                for x in rates]
    designs = {name: runs([1.0, 1.0], 1.0) for name in ch.DESIGNS}
    designs["BN–ReLU"] = runs([1.466, 1.468], RELU_RATE, ab=100.0)
    designs["ReLU–LN"] = runs([1.10, 1.12], RELU_RATE)
    designs["ReLU, no normalization"] = runs([1.0, 1.0], 1.0, ab=1.5)
    claims = Claims("four_lenses")
    claims.section("four_lenses-designs", "designs")
    ch.check_designs(claims, designs)
    r = rows(claims)
    assert r["BN–ReLU stack: rate 1.467"].verdict == HOLDS
    assert r["BN–tanh stack: rate 1.178"].verdict == FAILS                             # measured 1.0
    assert r["ReLU–LN: normalization after the activation explodes at r(ReLU)"].verdict == FAILS
    assert r["no activation: no explosion"].verdict == HOLDS
    assert r["ReLU without normalization (He init): the gradient still explodes"].verdict == FAILS
    assert r["no normalization: a/b within a factor 2"].verdict == HOLDS
    assert r["BatchNorm: a/b about 10²"].verdict == HOLDS
    zoo = zoo_of({}, {})
    ch.machinery_checks(claims, zoo, designs)
    machinery = [row for row in claims.rows if row.kind == MACHINERY]
    assert [row.verdict for row in machinery] == [HOLDS, HOLDS]


# ---------------------------------------------------------------- the design stack
@pytest.mark.parametrize("design", ["BN–ReLU", "ReLU–LN", "BN, no activation", "ReLU, no normalization"])
def test_stack_puts_the_normalization_where_the_design_says(design):
    norm, act, order = ch.DESIGNS[design]
    net = ch.stack(4, 8, norm=norm, activation=act, order=order, generator=gen(0))
    kinds = [type(m).__name__ for m in net][:3]
    expected = {"BN–ReLU": ["Conv2d", "BatchNorm2d", "Elementwise"], "ReLU–LN": ["Conv2d", "Elementwise", "GroupNorm"],
                "BN, no activation": ["Conv2d", "BatchNorm2d", "Elementwise"],
                "ReLU, no normalization": ["Conv2d", "Elementwise", "Conv2d"]}[design]
    assert kinds == expected
    d = ch._quiet_diagnose(net, torch.randn(16, 3, 8, 8, generator=gen(1)), torch.randint(0, 10, (16,)), gen(2))
    assert d.kinds == ("BN" if design == "BN, no activation" else design.split(",")[0])
    w = net[0].weight.detach()
    assert float(w.var()) == pytest.approx(2 / w[0].numel(), rel=0.35)                # He, fan-in


def test_design_trial_is_one_diagnosis_of_a_fresh_stack():
    config = sweep.Config(design="ReLU–BN", rep=0, seed=0, device="cpu", stack=(4, 8), size=8, batch=16)
    run = ch.design_trial(config)
    assert run["kinds"] == "ReLU–BN" and run["predicted_layer"] == pytest.approx(RELU_RATE, rel=1e-6)
    assert run["layers_in_fit"] == 4                             # the 4 convs; the pool before the head ends the run


# ---------------------------------------------------------------- residual branches
def test_branches_counts_residual_blocks():
    assert ch.branches(50) == 16 and ch.branches(152) == 50


def test_residual_claims_zero_gamma_and_depth():
    def runs(rate, growth):
        return [fake_run([1.0], [False], [""], rate_depth=rate, stream=([growth, 1.0], [0, 0])) for _ in range(2)]
    res = {("post", 18, "1"): runs(1.5, 8.0), ("post", 18, "0"): runs(1.0, 1.0),
           ("pre", 18, "1"): runs(1.5, 10.0), ("pre", 18, "1/√L"): runs(1.1, 3.0),
           ("pre", 34, "1"): runs(1.4, 500.0), ("pre", 34, "1/√L"): runs(1.05, 3.3)}
    res[("pre", 34, "1/√L")][1]["stream_variance"] = [3.4, 1.0]            # a spread, so the SE is not zero
    claims = Claims("four_lenses", scale="book")
    claims.section("four_lenses-residual", "residual")
    ch.check_residual(claims, res)
    verdicts = [r.verdict for r in claims.rows]
    assert verdicts == [HOLDS, HOLDS, HOLDS]
    smoke = Claims("four_lenses", scale="smoke")
    smoke.section("four_lenses-residual", "residual")
    ch.check_residual(smoke, res)
    assert smoke.rows[1].verdict == NOT_TESTABLE                          # shallow networks at smoke scale
    res[("post", 18, "1")] = runs(1.0, 1.0)              # γ = 1 does not explode: zero-γ relieves nothing
    flat = Claims("four_lenses", scale="book")
    flat.section("four_lenses-residual", "residual")
    ch.check_residual(flat, res)
    assert flat.rows[0].verdict == FAILS


def test_figures_have_labelled_axes():
    zoo = zoo_of({"VGG-19 (BN)": [1.46, 1.47]}, {})
    for fig in (ch.figure_zoo_rates(zoo), ch.figure_zoo_profiles(zoo), ch.figure_one_number(zoo)):
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
