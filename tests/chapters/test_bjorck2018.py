"""gradprobe.chapters.bjorck2018: the chapter's settings, drivers, figure functions and claims, at
tiny sizes (ResNet-8 on random 8×8 "images"; CIFAR-10 only where a test says so)."""
import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradprobe
from gradprobe import sweep
from gradprobe.book.claims import FAILS, HOLDS, INCONCLUSIVE, MACHINERY, NOT_TESTABLE, PAPER, RECONSTRUCTION, Claims
from gradprobe.chapters import bjorck2018 as ch
from gradprobe.measure import kernels
from gradprobe.measure.steps import largest_useful_step, step_loss_ratios
from gradprobe.networks import resnet
from gradprobe.theory import random_matrices as rm

DEPTH = 8


def gen(n=0):
    return torch.Generator().manual_seed(n)


class FakePage:
    """What the check functions use of a Page: its claims and a glue that remembers."""

    def __init__(self, scale="book"):
        self.claims, self.glued = Claims("bjorck2018", scale=scale), {}

    def glue(self, name, value, fmt=None):
        self.glued[name] = format(value, fmt) if fmt else value
        return value


def settings(**over):
    """The smoke settings at ResNet-8 on 8×8 images, with overrides."""
    base = dict(vars(ch.settings("smoke").at("smoke")))
    base.update(depth=DEPTH, batch=16, init_seeds=2, variant_seeds=2, n_train=64, n_test=16, window_batch=8,
                window_steps=7, window_seeds=2, step_points=5, inputs="standardized")
    base.update(over)
    return SimpleNamespace(**base)


def images(n, seed):
    g = gen(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture
def fake_images(monkeypatch):
    """ch._images returns random 8×8 images: the sweep trials run without CIFAR-10."""
    def fake(n_train, n_test, inputs, data_seed):
        return (*images(n_train, 100 + data_seed), *images(n_test, 200 + data_seed))
    monkeypatch.setattr(ch, "_images", fake)
    return fake


@pytest.fixture
def data():
    x, y = images(64, 1)
    xt, yt = images(16, 2)
    return ch.ProbeData(x, y, xt, yt, [(x[:16], y[:16]), (x[16:32], y[16:32])], "standardized")


@pytest.fixture
def at(data):
    return ch.measure_at_init(settings(), data, "cpu")


def labelled(fig):
    """Every panel of ``fig`` that has data has an x label, and some panel has a y label (or names
    its rows with tick labels)."""
    assert isinstance(fig, matplotlib.figure.Figure)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and (ax.lines or ax.images or ax.patches
                                                                          or ax.collections)]
    named_rows = lambda ax: any(t.get_text() for t in ax.get_yticklabels())
    assert panels and all(ax.get_xlabel() for ax in panels)
    assert any(ax.get_ylabel() or (named_rows(ax) and not ax.get_yscale() == "log") for ax in panels)
    return panels


# ---------------------------------------------------------------------------- settings and networks
def test_settings_cover_every_scale_with_notes_and_the_papers_values():
    S = ch.settings("book")
    keys = list(vars(S.at("book")))
    assert all(list(vars(S.at(scale))) == keys for scale in ("smoke", "paper"))
    assert set(S._notes) == set(keys)
    paper = S.at("paper")
    assert (paper.depth, paper.batch, paper.train_depth, paper.train_batch, paper.rm_N, paper.rm_repeats) == \
        (110, 128, 110, 128, 1000, 10)
    assert set(paper.train_runs) == set(ch.PAPER_ACCURACY) and paper.schedule == "step" and paper.augment
    assert set(ch.PAPER_LRS) <= set(S.window_lrs) and 0.03 in S.window_lrs and S.probe_lrs[0] == 1e-4
    assert S.init == "xavier" and S.inputs == "pixel-mean"
    costs = [ch.cost(S.at(scale)) for scale in ("smoke", "book", "paper")]
    assert 0 < costs[0] < costs[1] < costs[2]
    with pytest.raises(ValueError, match="3 lengths for 2 runs"):
        ch.cost(SimpleNamespace(**{**vars(S.at("book")), "train_steps": (1, 2, 3)}))


def test_networks_of_a_seed_share_their_convolutions_and_are_the_sweep_trials_networks():
    nets = {name: ch.network(DEPTH, name, 3) for name in ch.WINDOW_NETWORKS}
    convs = {name: resnet.conv_layers(net) for name, net in nets.items()}
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(convs["BN"], convs["no BN"]))
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(convs["BN"], convs["final BN only"]))
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in nets["final BN only"].modules()) == 1
    run = ch.WindowRun("no BN", 0.1, 3, DEPTH, 7, 8, 64)
    trial = resnet.cifar_resnet(DEPTH, None, generator=sweep.seed_trial(run, fields=("seed",)).weights)
    assert all(torch.equal(a, b) for a, b in zip(trial.parameters(), nets["no BN"].parameters()))
    other = ch.network(DEPTH, "no BN", 4)
    assert not torch.equal(resnet.layer(other, 3).weight, resnet.layer(nets["no BN"], 3).weight)
    assert ch.paper_layers(110) == {k: k for k in ch.PAPER_LAYERS}
    assert ch.figure5_layers(110) == list(ch.FIGURE5_LAYERS) and ch.FIGURE5_LAYERS[-1] == 110


def test_load_data_refuses_more_batches_than_images():
    with pytest.raises(ValueError, match="need 96 training images"):
        ch.load_data(settings(n_train=64, batch=32, init_seeds=3), 0, "cpu")


@pytest.mark.slow          # reads the CIFAR-10 training split (the decoded cache makes it fast)
def test_load_data_gives_he_et_als_inputs_and_one_batch_per_seed(cifar10_available):
    data = ch.load_data(settings(n_train=256, n_test=32, batch=16, init_seeds=3, inputs="pixel-mean"), 0, "cpu")
    assert data.x.shape == (256, 3, 32, 32) and data.x_test.shape == (32, 3, 32, 32)
    assert [tuple(x.shape) for x, _ in data.batches] == [(16, 3, 32, 32)] * 3
    assert not torch.equal(data.batches[0][0], data.batches[1][0])
    assert data.x.abs().max() <= 1.0 and 0.1 < float(data.x.std()) < 0.4     # [0, 1] pixels, centred
    # back on the loaded, standardized scale: ch._undo inverts the preprocessing
    raw = gradprobe.data.tensors.cifar10_tensors(256, 32, generator=torch.Generator().manual_seed(0)).train_x
    assert torch.allclose(ch._undo(data.x, "pixel-mean"), raw, atol=1e-5)


# ---------------------------------------------------------------------------- at initialization
def test_measure_at_init_gives_the_separate_measurements_of_every_seed(data, at):
    L = ch.paper_layers(DEPTH)
    assert at.seeds == 2 and set(at.passes) == {"BN", "no BN"}
    for s in range(2):
        x, y = data.batches[s]
        nets = {name: ch.network(DEPTH, name, s) for name in ch.NETWORKS}
        stds = {name: float(kernels.kernel_gradient(net, x, y, L[55]).std()) for name, net in nets.items()}
        assert at.gradient_ratio(55)[s] == pytest.approx(stds["no BN"] / stds["BN"], rel=1e-5)
        assert at.step_ratio[s] == pytest.approx(step_loss_ratios(nets["no BN"], x, y, [ch.FIG3_ALPHA])[0], rel=1e-5)
        with torch.no_grad():
            logits = nets["no BN"](x).double()
        assert at.output_scale["no BN"][s] == pytest.approx(float(logits.mean(0).abs().max()), rel=1e-5)
        assert at.loss["no BN"][s] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
        assert torch.equal(at.labels[s], y)
        assert [g.summands for g in at.sums("BN", 18)] == [16 * 8 * 8] * 2
    assert all(p.grad is None for p in ch.network(DEPTH, "no BN", 0).parameters())


def test_measure_variants_changes_only_what_each_variant_names(data, at, monkeypatch):
    monkeypatch.setattr(ch.tensors, "channel_stats", lambda root=None: ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    S = settings(inputs="channel-mean")
    data.inputs = "channel-mean"
    variants = ch.measure_variants(S, data, "cpu", at)
    v = variants.set_index(["variant", "seed"])
    assert list(dict.fromkeys(variants.variant)) == ["this chapter", *ch.VARIANTS]
    for s in range(2):
        base = at.passes["no BN"][s]
        assert v.loc[("this chapter", s), "loss"] == pytest.approx(base.loss, rel=1e-6)
        scaled = F.cross_entropy(255 * base.logits.double(), at.labels[s])
        assert v.loc[("pixels on 0–255", s), "loss"] == pytest.approx(float(scaled), rel=1e-9)
        # standardized = channel-mean inputs divided by σ = 0.25: a homogeneous network's output × 4
        assert v.loc[("standardized inputs", s), "output_scale"] == \
            pytest.approx(4 * v.loc[("this chapter", s), "output_scale"], rel=1e-4)
        assert v.loc[("He init", s), "output_scale"] > v.loc[("this chapter", s), "output_scale"]
    table = ch.variants_table(variants)
    assert table.loc["pixels on 0–255", "× output scale"] == "255"
    assert table.loc["standardized inputs", "× output scale"] == "4"


def test_first_edition_is_gradprobe_seed_0_with_the_channel_mean(data, monkeypatch):
    monkeypatch.setattr(ch.tensors, "channel_stats", lambda root=None: ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    data.inputs = "standardized"
    first = ch.first_edition(settings(), data, "cpu")
    net = resnet.cifar_resnet(DEPTH, None, generator=gradprobe.seed(0).weights)
    x, y = data.batches[0]
    with torch.no_grad():
        loss = F.cross_entropy(net(x * 0.25), y)              # channel-mean scale: σ · standardized
    assert first.seeds == 1 and first.loss["no BN"][0] == pytest.approx(float(loss), rel=1e-5)


def test_five_numbers_and_the_calibration_rows(at):
    table = ch.five_numbers(at, at)
    assert len(table) == 5 and table.columns[-1] == "this chapter (2 seeds)"
    assert table.iloc[0, 2] == f"{np.median(at.loss['no BN']):.3g} [{at.loss['no BN'].min():.3g} – " \
                               f"{at.loss['no BN'].max():.3g}]"
    assert ch._summary([1.0, np.nan, 3.0]) == "3 [1 – overflow]"
    page = FakePage()
    variants = ch.measure_variants(settings(), ch.ProbeData(*images(16, 9), *images(4, 9),
                                                            [images(16, 11), images(16, 12)], "standardized"),
                                   "cpu", at)
    ch.check_calibration(page, at, at, variants)
    rows = page.claims.rows
    assert [r.kind for r in rows] == [RECONSTRUCTION] * 3 and {r.section for r in rows} == {"bjorck2018-calibration"}
    assert rows[0].verdict == HOLDS                          # a ResNet-8 starts far below 10³
    assert rows[2].check.criterion == "x ≥ 3" and page.glued["init_seeds"] == "2"


# ---------------------------------------------------------------------------- the window and the training runs
def result(loss, spread, diverged_at=-1, ratios=None):
    return {"loss": np.array(loss, dtype=float), "spread": np.array(spread, dtype=float),
            "accuracy": np.zeros(len(loss)), "diverged_at": diverged_at, "ratios": ratios or {}}


def test_classify_names_divergence_collapse_and_training_with_their_evidence():
    assert ch.classify(result([80.0, 2e4], [10, 1e3], diverged_at=1)) == \
        ("diverged", "loss 80 → 2e+04 after 1 update")
    collapsed = result([800.0, 30, 2.4, 2.35], [100, 8, 0.1, 0.05])
    assert ch.classify(collapsed)[0] == "collapsed"
    assert ch.classify(collapsed)[1] == "loss 800 → 2.35, logit spread 1e+02 → 0.05"
    assert ch.classify(result([80.0, 5, 2.35], [10, 1, 0.5]))[0] == "training"       # still input-dependent
    assert ch.classify(result([2.4, 2.35, 2.32], [0.3, 0.25, 0.2]))[0] == "training"  # small from the start
    assert ch.classify(result([80.0, 5, 3.1], [10, 1, 0.01]))[0] == "training"        # not a uniform guess


def test_window_run_records_every_step_scans_three_batches_and_is_a_pure_function(fake_images):
    run = ch.WindowRun("no BN", 1e-3, 0, DEPTH, 7, 8, 64, "standardized", scan_points=4)
    found = ch.window_run(run)
    assert len(found["loss"]) == len(found["spread"]) == 7 and found["diverged_at"] == -1
    assert sorted(found["ratios"]) == [1, 4, 7] and found["ratios"][1].shape == (4,)
    # the first scan is at initialization, on the first mini-batch of the seed's order
    x, y, _, _ = fake_images(64, 1, "standardized", 0)
    idx = torch.randperm(64, generator=sweep.seed_trial(run, fields=("seed",)).data)[:8]
    net = ch.network(DEPTH, "no BN", 0)
    assert found["ratios"][1] == pytest.approx(step_loss_ratios(net, x[idx], y[idx], ch.step_sizes(4)), rel=1e-4)
    with torch.no_grad():
        assert found["spread"][0] == pytest.approx(float(net(x[idx]).double().std(0).mean()), rel=1e-5)
    again = ch.window_run(run)
    assert np.array_equal(again["loss"], found["loss"])
    wild = ch.window_run(ch.WindowRun("no BN", 1e5, 0, DEPTH, 7, 8, 64, "standardized"))
    assert wild["diverged_at"] >= 0 and ch.classify(wild)[0] == "diverged"


def window_of(classes_by_key, spread_end=0.5):
    """A Window of synthetic results: {(network, lr): ["d", "c", "t", ...] per seed}."""
    make = {"d": lambda: result([50.0, 5e3], [5, 500], diverged_at=1),
            "c": lambda: result([50.0, 2.4, 2.31, 2.3, 2.31, 2.3, 2.3], [5, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02]),
            "t": lambda: result([50.0, 6, 4, 3.5, 3.2, 3.0, 2.9], [5, 2, 1, 1, 0.8, 0.6, spread_end])}
    return ch.Window({key: [make[c]() for c in cs] for key, cs in classes_by_key.items()}, DEPTH, 7, 8)


def test_window_fractions_and_largest_rates_per_seed():
    w = window_of({("no BN", 1e-4): "tt", ("no BN", 3e-4): "td", ("no BN", 1e-3): "dd", ("no BN", 3e-3): "dt"})
    assert list(w.diverged("no BN", 3e-4)) == [0.0, 1.0]
    assert list(w.largest_rate("no BN")) == [3e-4, 1e-4]                  # a later "training" does not count
    table = ch.window_table(w)
    assert table.loc[("no BN", "0.0003"), "seed 1"] == "diverged: loss 50 → 5e+03 after 1 update"


def test_probe_uses_the_papers_rate_unless_a_seed_collapses_there():
    S = settings(probe_lrs=(1e-4, 3e-5))
    fine = window_of({("BN", 0.1): "tt", ("no BN", 1e-4): "tt", ("no BN", 3e-5): "tt"})
    assert ch.probe(fine, S).rate == 1e-4
    dead = window_of({("BN", 0.1): "tt", ("no BN", 1e-4): "tc", ("no BN", 3e-5): "tt"})
    found = ch.probe(dead, S)
    assert found.rate == 3e-5 and "no seed diverged or collapsed" in found.why
    assert ch._collapse_step(dead.results[("no BN", 1e-4)][1]) == 2
    hopeless = window_of({("BN", 0.1): "tt", ("no BN", 1e-4): "dd", ("no BN", 3e-5): "cd"})
    assert ch.probe(hopeless, S).rate == 3e-5 and ch.probe(hopeless, S).why.startswith("every candidate")


def test_run_window_is_a_sweep_over_networks_rates_and_seeds(fake_images, monkeypatch, tmp_path):
    monkeypatch.setenv("GRADPROBE_SWEEPS", str(tmp_path))
    S = settings(window_lrs=(3e-5, 1e-4, 0.1), window_seeds=2, probe_lrs=(1e-4, 3e-5))
    w = ch.run_window(S, 0, "cpu")
    assert set(w.results) == {(n, lr) for n in ch.WINDOW_NETWORKS for lr in S.window_lrs}
    assert all(len(v) == 2 for v in w.results.values())
    assert sorted(w.results[("no BN", 1e-4)][0]["ratios"]) == [1, 4, 7] and not w.results[("BN", 1e-4)][0]["ratios"]
    found = ch.probe(w, S)
    assert found.useful("BN", 0.1, 1)[0] == largest_useful_step(found.alphas, w.results[("BN", 0.1)][0]["ratios"][1])
    again = ch.run_window(S, 0, "cpu")                        # stored: a re-run reuses every trial
    assert np.array_equal(again.results[("BN", 0.1)][1]["loss"], w.results[("BN", 0.1)][1]["loss"])
    depth_steps = ch.scan_appendix_h(settings(appH_depths=(DEPTH, 14), window_seeds=2, step_points=5), found, 0, "cpu")
    assert set(depth_steps) == {DEPTH, 14, "BN"} and np.array_equal(depth_steps[DEPTH], found.useful("no BN", 1e-4, 1))
    for fig in (ch.figure_window(w), ch.figure3(found), ch.figure3_trajectory(found),
                ch.appendix_h(depth_steps, settings())):
        labelled(fig)
    page = FakePage()
    ch.check_figure3(page, found, depth_steps)
    assert [r.section for r in page.claims.rows] == ["bjorck2018-fig3"] * 4 and page.glued["probe_rate"] == "0.0001"


def test_train_run_evaluates_at_its_points_and_stops_at_divergence(fake_images):
    run = ch.TrainRun("BN", 0.03, 0, DEPTH, 6, 8, 64, 16, "standardized", eval_points=2)
    found = ch.train_run(run)
    assert len(found["loss"]) == 6 and [e[0] for e in found["evals"]] == [3, 6] and found["diverged_at"] == -1
    assert 0 <= found["evals"][-1][2] <= 1
    stepped = ch.train_run(ch.TrainRun("BN", 0.03, 0, DEPTH, 6, 8, 64, 16, "standardized", schedule="step"))
    assert stepped["loss"][:3].tolist() == found["loss"][:3].tolist()     # the same until the rate drops at 50 %
    assert stepped["loss"][4] != found["loss"][4]
    wild = ch.train_run(ch.TrainRun("no BN", 1e5, 0, DEPTH, 6, 8, 64, 16, "standardized"))
    assert wild["diverged_at"] >= 0 and wild["evals"] == []
    assert ch._offset(lambda step: step, 100, 5) == 105


def training_of(acc_bn, acc_plain, lr=0.03, depth=20):
    runs = lambda accs: [{"loss": np.full(30, 2.0), "accuracy": np.zeros(30), "diverged_at": -1,
                          "evals": [(30, 1.0, a)]} for a in accs]
    return ch.Training({("BN", lr): runs(acc_bn), ("no BN", lr): runs(acc_plain)}, depth,
                       {("BN", lr): 30, ("no BN", lr): 30})


def test_check_figure1_decides_the_window_over_seeds_and_leaves_the_accuracies_to_the_paper_scale():
    keys = {("BN", 0.1): "tt", ("no BN", 0.1): "dd", ("no BN", 0.003): "dd", ("no BN", 1e-4): "tt",
            ("no BN", 3e-4): "tt", ("final BN only", 0.03): "tt", ("final BN only", 0.1): "tt",
            ("BN", 1e-4): "tt", ("BN", 0.003): "tt"}
    page = FakePage()
    ch.check_figure1(page, settings(), window_of(keys), training_of([0.35, 0.33, 0.34], [0.22, 0.21, 0.23]))
    rows = {r.name: r for r in page.claims.rows}
    assert rows["Fig. 1: BN trains at lr 0.1, the unnormalized network diverges there"].verdict == HOLDS
    assert rows["Sec. 2: above 10⁻⁴ the unnormalized network fails (3·10⁻⁴)"].verdict == NOT_TESTABLE
    assert rows["Matched rate 0.03: BN and no BN reach comparable accuracy (within 5 points)"].verdict == FAILS
    assert rows["Matched rate 0.03: both networks leave chance (≥ 20 % test accuracy)"].kind == RECONSTRUCTION
    accuracy_rows = ("Fig. 1: BN at", "Fig. 1: no BN at", "Fig. 1: with BN", "App. E: one BN at the end,")
    paper_rows = [r for r in page.claims.rows if r.name.startswith(accuracy_rows)]
    assert len(paper_rows) == 6 and all(r.verdict == NOT_TESTABLE and r.kind == PAPER for r in paper_rows)
    mixed = FakePage()
    ch.check_figure1(mixed, settings(), window_of({**keys, ("no BN", 0.003): "dt"}), training_of([0.3] * 3, [0.3] * 3))
    rows = {r.name: r for r in mixed.claims.rows}
    assert rows["Fig. 1: larger rates diverge without BN (0.003)"].verdict == INCONCLUSIVE   # one seed in two
    assert rows["Matched rate 0.03: BN and no BN reach comparable accuracy (within 5 points)"].verdict == HOLDS
    # at the paper's scale the ResNet-110 runs exist and the accuracies are compared with the paper's
    full = FakePage("paper")
    ch.check_figure1(full, settings(), window_of(keys), training_of([0.80, 0.81, 0.82], [0.81, 0.82, 0.83],
                                                                  lr=1e-4, depth=110))
    rows = {r.name: r for r in full.claims.rows}
    assert rows["Fig. 1: BN at lr 0.0001 reaches 81.0% test accuracy"].verdict == HOLDS
    assert rows["Matched rate 0.0001: BN and no BN reach comparable accuracy (within 5 points)"].kind == PAPER


# ---------------------------------------------------------------------------- figures at initialization
def test_figures_at_initialization_are_labelled(at):
    for fig in (ch.figure2(at), ch.figure5(at), ch.figure6(at), ch.figure7(at)):
        labelled(fig)
    assert ch.kurtosis(np.random.default_rng(0).standard_normal(100_000)) == pytest.approx(3, abs=0.05)


def test_dominant_class_and_sign_agreement_read_the_magnitudes():
    labels = torch.tensor([0, 1, 2, 3])
    one_class = torch.zeros(4, 10, dtype=torch.float64)
    one_class[:, 5] = 1.0                          # every image put in class 5 with certainty
    one_class[torch.arange(4), labels] -= 1.0
    assert ch.dominant_class(one_class, labels) == (5, 1.0)
    assert ch.sign_agreement(one_class) == pytest.approx(1.0)     # classes no image pushes are left out
    uniform = torch.full((10, 10), 0.1, dtype=torch.float64) - torch.eye(10, dtype=torch.float64)
    assert ch.dominant_class(uniform, torch.arange(10))[1] == pytest.approx(0.1)
    assert ch.sign_agreement(uniform) == pytest.approx(0.0, abs=1e-12)   # each column's pushes cancel
    with pytest.raises(ValueError, match="B labels"):
        ch.dominant_class(uniform, torch.arange(3))


def test_table1_per_summand_and_its_claims(at):
    table = ch.table1(at)
    assert list(table.index) == list(ch.PAPER_TABLE1) and table.loc[("BN", 18), "paper a/b"] == "251.8"
    sums = at.sums("no BN", 54)
    assert table.loc[("no BN", 54), "summands B·H·W"] == sums[0].summands
    assert table.loc[("no BN", 54), "a per summand"] == f"{np.median([s.a / s.summands for s in sums]):.2g}"
    page = FakePage()
    ch.check_table1(page, at)
    kinds = [r.kind for r in page.claims.rows]
    assert kinds == [PAPER, PAPER, PAPER, RECONSTRUCTION] and "t1_bn_sqrt" in page.glued


def fake_at(ratio, dominant_bn=0.3, seeds=4):
    """An AtInit whose layer-55 gradient std ratio is ``ratio`` (up to noise) and whose BN network
    gives its dominant class the probability ``dominant_bn``."""
    L = ch.paper_layers(DEPTH)
    g = gen(7)
    passes = {"BN": [], "no BN": []}
    labels = [torch.arange(10) % 10 for _ in range(seeds)]
    for name, scale in (("BN", 1.0), ("no BN", ratio)):
        for s in range(seeds):
            probs = torch.full((10, 10), (1 - (dominant_bn if name == "BN" else 0.99)) / 9, dtype=torch.float64)
            probs[:, 3] = dominant_bn if name == "BN" else 0.99
            grads = {L[55]: scale * (1 + 0.01 * s) * torch.randn(32, 32, 3, 3, generator=g)}
            passes[name].append(kernels.OnePass(1.0, torch.zeros(10, 10), probs - torch.eye(10, dtype=torch.float64),
                                                {}, grads, {}))
    return ch.AtInit(passes, [1.0] * seeds, DEPTH, L, labels)


def test_checks_at_initialization_decide_on_the_numbers():
    page = FakePage()
    ch.check_figure2(page, fake_at(100))
    assert page.claims.rows[0].verdict == HOLDS and page.glued["fig2_ratio"].startswith(("9", "1"))
    page = FakePage()
    ch.check_figure2(page, fake_at(1))
    assert page.claims.rows[0].verdict == FAILS
    page = FakePage()
    ch.check_figure6(page, fake_at(100, dominant_bn=0.2))
    assert [r.verdict for r in page.claims.rows[:2]] == [HOLDS, HOLDS]
    page = FakePage()
    ch.check_figure6(page, fake_at(100, dominant_bn=0.9))
    assert page.claims.rows[1].verdict == FAILS


def test_check_figures_5_and_7_rows(at):
    page = FakePage()
    ch.check_figure5(page, at)
    ch.check_figure7(page, at)
    assert [r.section for r in page.claims.rows] == ["bjorck2018-fig5"] * 2 + ["bjorck2018-fig7"] * 2
    assert all(r.source.startswith("bjorck2018, ") for r in page.claims.rows)


def test_figure4_dissects_the_diverging_update_of_every_seed(data):
    S = settings(diverge_lr=1e4, find_steps=3, sweep_points=5, fig4_seeds=2)
    anatomy = ch.find_figure4_updates(S, data, "cpu")
    assert all(u is not None for u in anatomy.updates) and anatomy.layers == {k: ch.paper_layers(DEPTH)[k]
                                                                               for k in ch.FIGURE4_LAYERS}
    sw = anatomy.sweeps[0]
    assert np.array_equal(sw.fractions, np.linspace(0, 1, 5))
    assert sw.loss[0] == pytest.approx(anatomy.updates[0].loss_before, rel=1e-5)
    var = anatomy.final("variance")
    finite = sw.variances[anatomy.layers[80]][-1]
    assert var[80][0] == (finite[np.isfinite(finite)].max() if np.isfinite(finite).any() else var[80][0])
    labelled(ch.figure4(anatomy))
    table = ch.figure4_table(anatomy)
    assert list(table.index) == ["seed 0", "seed 1", "paper (colour bars)"]
    u = anatomy.updates[1]
    assert table.loc["seed 1", "update"] == u.step + 1
    assert table.loc["seed 1", "loss before → after"].startswith(f"{u.loss_before:.3g} → ")
    assert table.loc["paper (colour bars)", "layer 80: largest variance, 0 % → 100 %"] == "up to 5e+16"
    page = FakePage()
    ch.check_figure4(page, anatomy)
    assert len(page.claims.rows) == 2
    calm = ch.find_figure4_updates(settings(diverge_lr=1e-9, find_steps=1, fig4_seeds=1), data, "cpu")
    assert calm.sweeps == [None] and ch.figure4_table(calm).loc["seed 0", "update"] == "none"
    assert "nothing to dissect" in ch.figure4(calm).axes[1].texts[0].get_text()


# ---------------------------------------------------------------------------- random matrices
def test_figure9_tolerance_is_the_precision_of_n_eigenvalues_and_the_test_can_fail():
    found = ch.sample_figure9(200, 2, gen(0))
    assert found.tolerance == 5 / 200 and [v.shape for v in found.ks.values()] == [(2,)] * 3
    assert all(v.max() < found.tolerance for v in found.ks.values())
    assert all(w > 2 * found.tolerance for w in found.wrong.values())
    assert found.ks[3][0] == pytest.approx(rm.ks_distance(found.squared[3][0], 3))
    fig = ch.figure9(found)
    assert len(fig.axes) == 4 and len(fig.axes[0].patches) > 0        # the overlay of all three first
    labelled(fig)
    labelled(ch.figure8())
    theorem = ch.theorem1_moments((1, 3))
    assert theorem.moments[2][3] == pytest.approx(4, rel=1e-4)


def test_appendix_k_slopes_and_theory():
    cond = ch.measure_appendix_k((1, 2, 3, 4), 60, 20, gen(0))
    assert cond.kappa.shape == (4, 20) and cond.slopes.shape == (20,)
    assert cond.slopes[0] == pytest.approx(np.polyfit([1, 2, 3, 4], np.log(cond.kappa[:, 0]), 1)[0])
    assert cond.theory == pytest.approx(math.log(rm.condition_growth(60)))
    assert abs(np.mean(cond.slopes) - cond.theory) < 0.2 * cond.theory
    labelled(ch.appendix_k(cond))
    page = FakePage()
    ch.check_random_matrices(page, ch.theorem1_moments(), ch.sample_figure9(200, 2, gen(1)), cond)
    rows = page.claims.rows
    assert [r.kind for r in rows] == [MACHINERY, MACHINERY, PAPER, PAPER, PAPER]
    assert rows[0].verdict == HOLDS and rows[1].verdict == HOLDS and rows[2].verdict == HOLDS
    with pytest.raises(ValueError, match="at least two"):
        ch.measure_appendix_k((3,), 10, 2, gen(0))
