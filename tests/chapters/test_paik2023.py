"""gradprobe.chapters.paik2023: the drivers, figures and claims of the Paik & Choi chapter at tiny
sizes (CPU, seconds each). Tests that train on CIFAR-10 skip when it is not there; the Figure 1
drivers run on random images instead."""
import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import gradprobe
from gradprobe.book.scales import settings
from gradprobe.chapters import paik2023
from gradprobe.data.cifar10 import cifar10
from gradprobe.data.tensors import CifarTensors
from gradprobe.measure.rates import RateFit, RateTracker
from gradprobe.theory import gaussian
from gradprobe.train.loop import History

RELU_VAR = (math.pi - 1) / (2 * math.pi)

# the notebook's settings, shrunk to seconds (vgg16 / 16: the smallest VGG with three convs in a row)
TINY = dict(mc_samples=200_000, depth=12, width=64, batch=128, repeats=1, arch_vgg=("vgg16", 16),
            resnets=(8, 14), vit=(2, 16), arch_batch=16, arch_seeds=2, deep_stages=((8, 1), (8, 6)),
            deep_batch=16, deep_seeds=1, train_depth=4, train_width=16, train_batch=16, train_steps=12,
            probe=32, lr_safe=0.1, lr_large=3.0, n_train=128, n_test=64, opt_depth=2, opt_width=16,
            small_batch=8, small_steps=4, small_lr=0.5, warmup=2, eta=0.01, etas=(0.003,),
            large_batch=16, large_steps=3, large_lrs=dict(lalc=1.6, lars=4.0, lamb=4e-3), opt_seeds=2,
            processes=1)


@pytest.fixture
def S():
    return settings("book", book=dict(TINY))


@pytest.fixture
def cifar10_test_split():
    """Skip (when the test runs, not when tests are collected) unless CIFAR-10 can be loaded."""
    try:
        cifar10("test", download=False)
    except Exception as err:  # no data folder, no cache, offline: the data is not there
        pytest.skip(f"CIFAR-10 not available (set GRADPROBE_DATA): {err}")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def random_images(n=64, seed=0) -> CifarTensors:
    """Standard-normal stand-ins for CIFAR-10 images [n, 3, 32, 32] with random labels."""
    g = torch.Generator().manual_seed(seed)
    return CifarTensors(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g),
                        torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))


def labels_of(ax):
    return ax.get_xlabel(), ax.get_ylabel()


# ------------------------------------------------------------------------------------- 1. theory

def test_relu_moments_match_their_closed_forms(S):
    m = paik2023.relu_moments(S.mc_samples, gradprobe.seed(0).data)
    assert m.shape == (2, 3) and m.index[1] == "Monte Carlo, 200,000 samples"
    assert list(m.iloc[0]) == pytest.approx([0.5, RELU_VAR, 0.5], abs=1e-6)     # quadrature
    assert list(m.iloc[1]) == pytest.approx([0.5, RELU_VAR, 0.5], abs=5e-3)     # Monte Carlo
    again = paik2023.relu_moments(S.mc_samples, gradprobe.seed(0).data)
    assert m.equals(again)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        paik2023.relu_moments(0)


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_backward_shows_both_halves_of_the_theory(S, seed):
    fb = paik2023.measure_forward_backward(S, gradprobe.seed(seed), "cpu")
    assert fb.forward_var.shape == fb.grad_var.shape == (S.depth,)
    # forward: constant at 2·Var[relu] ≈ 0.68, not He's 1; backward: π/(π−1) per layer
    assert float(fb.forward_var[1:].mean()) == pytest.approx(2 * RELU_VAR, rel=0.06)
    assert fb.rate_fit.rate == pytest.approx(gaussian.RELU_RATE, rel=0.06) and fb.rate_fit.r2 > 0.98
    assert float(fb.grad_var[1]) > 10 * float(fb.grad_var[-1])        # grows toward the input
    assert f"{fb.rate_fit.rate:.4f} per layer" in fb.summary()


def test_figure_forward_backward_has_labelled_axes(S):
    fb = paik2023.measure_forward_backward(S, gradprobe.seed(0), "cpu")
    fig = paik2023.figure_forward_backward(fb, S)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 2
    left, right = fig.axes
    assert labels_of(left) == ("layer index k (input → output)", "Var[h_n] (linear-layer output)")
    assert labels_of(right) == ("layer index k (input → output)", "Var[g_n] = Var[∂ℓ/∂h_n]")
    assert right.get_yscale() == "log" and left.get_yscale() == "linear"
    theory = right.get_lines()[1].get_ydata()      # last layer × r^(L−n): ends at the last measurement
    assert theory[-1] == pytest.approx(float(fb.grad_var[-1]))


def test_mlp_rates_are_seeded():
    a = paik2023.mlp_rates("tanh", "batch", depth=6, width=32, batch=64, repeats=2, generators=gradprobe.seed(1))
    b = paik2023.mlp_rates("tanh", "batch", depth=6, width=32, batch=64, repeats=2, generators=gradprobe.seed(1))
    assert a.shape == (2,) and np.array_equal(a, b) and a[0] != a[1]
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        paik2023.mlp_rates("relu", repeats=0)


def test_activation_rates_bn_explodes_as_predicted_ln_does_not_for_relu(S):
    table = paik2023.measure_activation_rates(S, gradprobe.seed(0), activations=("relu", "identity", "tanh"))
    assert list(table.index) == ["relu", "identity", "tanh"]
    assert list(table.columns) == ["BN: predicted r", "BN: measured", "LN: predicted", "LN: measured"]
    assert table.loc["relu", "BN: predicted r"] == pytest.approx(gaussian.RELU_RATE, abs=1e-3)
    assert table.loc["relu", "LN: predicted"] == pytest.approx(1.0, abs=1e-3)
    assert table["BN: measured"].to_numpy() == pytest.approx(table["BN: predicted r"].to_numpy(), rel=0.08)
    # LayerNorm keeps ReLU's mean, so ReLU does not explode with it; tanh (odd) explodes with both
    assert table.loc["relu", "LN: measured"] < table.loc["relu", "BN: measured"] - 0.25
    assert table.loc["tanh", "LN: measured"] == pytest.approx(table.loc["tanh", "LN: predicted"], rel=0.08)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        paik2023.measure_activation_rates(S, gradprobe.seed(0), activations=("swish",))


def test_width_ratios_alternate_as_r_times_n_out_over_n_in(S):
    out = paik2023.measure_width_ratios(S, gradprobe.seed(0), "cpu")
    t = out.table
    assert len(t) == 2 * (S.depth // 4) - 3                  # pairs of layers both fed by ReLU
    ratio = t["n_out/n_in of layer n+1"].to_numpy()
    assert set(np.round(ratio, 6)) == {3.0, round(1 / 3, 6)}
    assert t["predicted r·n_out/n_in"].to_numpy() == pytest.approx(gaussian.RELU_RATE * ratio, abs=1e-3)
    measured = t["measured Var(g_n)/Var(g_n+1)"].to_numpy()
    assert np.all((measured > 2) == (ratio > 1))
    assert out.largest_deviation == pytest.approx(np.max(np.abs(measured / t["predicted r·n_out/n_in"] - 1)))
    assert out.largest_deviation < 0.25 and f"over {len(t)} layer pairs" in out.summary()
    with pytest.raises(ValueError, match="S.depth must be an integer >= 8"):
        paik2023.measure_width_ratios(settings("book", book={**TINY, "depth": 6}), gradprobe.seed(0), "cpu")


# ------------------------------------------------------------------------------------- 2./3. Figure 1

def test_figure1_configs(S):
    assert paik2023.figure1a_config(S) == [4, 4, "M", 8, 8, "M", 16, 16, 16, "M", 32, 32, 32, "M",
                                           32, 32, 32, "M"]
    assert paik2023.figure1b_config(S) == [8, "M"] + [8] * 6
    assert paik2023.figure1b_layers(S) == 8                     # 7 convolutions + the linear head
    with pytest.raises(ValueError, match="S.deep_stages convs must be a positive integer"):
        paik2023.figure1b_config(settings("book", book={**TINY, "deep_stages": ((8, 0),)}))


def test_figure1a_measures_every_network_on_its_own_batches(S):
    gen = gradprobe.seed(0)
    rates = paik2023.measure_figure1a(S, random_images(), gen, "cpu")
    assert list(rates) == ["VGG-16 (BN)", "ResNet-8 (BN)", "ResNet-14 (BN)", "VGG-16 (GroupNorm)",
                           "VGG-16 (LayerNorm)", "ViT (LayerNorm)"]
    assert all(len(v) == S.arch_seeds and np.all(np.isfinite(v)) for v in rates.values())
    assert np.mean(rates["VGG-16 (BN)"]) > 1.3                  # BN–ReLU explodes (π/(π−1) in theory)
    assert np.mean(rates["ViT (LayerNorm)"]) == pytest.approx(1.0, abs=0.05)
    table = paik2023.figure1a_table(rates)
    assert table.loc["ResNet-8 (BN)", "rate (mean)"] == np.mean(rates["ResNet-8 (BN)"])
    assert table.loc["ResNet-8 (BN)", "std over seeds"] == np.std(rates["ResNet-8 (BN)"])
    with pytest.raises(ValueError, match="2 batches of 16 need 32 training images, got 16"):
        paik2023.measure_figure1a(S, random_images(16), gen, "cpu")


def test_figure1a_draws_one_bar_per_network(S):
    rates = {"VGG-16 (BN)": [1.45, 1.47], "ResNet-8 (BN)": [0.8, 0.9], "ResNet-14 (BN)": [1.1, 1.2],
             "VGG-16 (GroupNorm)": [1.1, 1.0], "VGG-16 (LayerNorm)": [1.0, 1.0], "ViT (LayerNorm)": [1.0, 1.0]}
    fig = paik2023.figure1a(paik2023.figure1a_table(rates), S)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == list(rates)
    assert [p.get_height() for p in ax.patches] == pytest.approx([np.mean(v) for v in rates.values()])
    assert ax.get_ylabel() == "Var(g_n)/Var(g_n+1) per layer"


def test_figure1b_ranks_relu_above_no_activation(S):
    rates = paik2023.measure_figure1b(S, random_images(), gradprobe.seed(0), "cpu",
                                      activations=("relu", "identity", "dropout"))
    table = paik2023.figure1b_table(rates)
    assert list(table.index) == ["relu", "identity", "dropout"]
    assert table.loc["relu", "predicted r(φ)"] == pytest.approx(gaussian.RELU_RATE, abs=1e-3)
    assert table.loc["relu", "measured (mean)"] > table.loc["identity", "measured (mean)"] + 0.2
    assert table["measured / predicted"].to_numpy() == pytest.approx(
        (table["measured (mean)"] / table["predicted r(φ)"]).to_numpy())
    fig = paik2023.figure1b(table, S)
    bars, scatter = fig.axes
    assert [t.get_text() for t in bars.get_xticklabels()] == ["relu", "identity", "dropout"]
    assert labels_of(scatter) == ("predicted rate r(φ)", "measured rate")
    assert fig._suptitle.get_text().startswith("8-layer VGG-like BN network")
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        paik2023.measure_figure1b(S, random_images(), gradprobe.seed(0), "cpu", activations=("relu6",))


# ------------------------------------------------------------------------------------- 4. alleviation

def test_alleviation_tracks_the_rate_of_both_runs(S, cifar10_test_split):
    runs = paik2023.measure_alleviation(S, 0, gradprobe.seed(0), "cpu")
    assert list(runs) == [S.lr_safe, S.lr_large]
    safe = runs[S.lr_safe]
    assert safe.tracker.measured_steps == list(range(S.train_steps))   # steps 0–20: all of a short run
    assert len(safe.history.loss) == S.train_steps and 0 <= safe.test_accuracy <= 1
    assert safe.tracker.rates[0] > 1.1                                  # explodes at initialization
    assert safe.tracker.mean_correlation()[0] == pytest.approx(1.0, abs=0.2)
    again = paik2023.measure_alleviation(S, 0, gradprobe.seed(0), "cpu")
    assert again[S.lr_safe].history.loss == safe.history.loss           # each run from seed(seed)
    lines = paik2023.alleviation_summary(runs).splitlines()
    assert len(lines) == 2 and lines[0].startswith("lr 0.1: rate at step 0") and lines[1].startswith("lr 3:")
    fig = paik2023.figure_alleviation(runs, S)
    assert [ax.get_ylabel() for ax in fig.axes] == ["fitted Var(g_n)/Var(g_n+1)", "mean correlation ρ over layers",
                                                    "training loss (cross-entropy)"]
    assert all(ax.get_xlabel() == "training step + 1" and ax.get_xscale() == "log" for ax in fig.axes)


def fake_run(rates, correlations, loss, accuracy=0.3) -> paik2023.AlleviationRun:
    tracker = RateTracker(torch.zeros(2, 3), torch.zeros(2))
    tracker.measured_steps = list(range(len(rates)))
    tracker.rates = list(rates)
    tracker.correlations = [np.array([1.0, c, c]) for c in correlations]
    return paik2023.AlleviationRun(tracker, History(loss=list(loss)), 1.0, accuracy)


def test_first_step_below_one_and_summary():
    assert fake_run([1.4, 1.1, 0.9, 0.8], [1] * 4, [2.3]).first_step_below_one() == 2
    assert fake_run([1.4, 1.1], [1] * 2, [2.3]).first_step_below_one() is None
    run = fake_run([1.4] + [0.9] * 11, [1.0] * 11 + [float("nan")], [2.3], accuracy=0.25)
    assert paik2023.alleviation_summary({0.1: run}) == (
        "lr 0.1: rate at step 0 1.4000, step 10 0.9000, last 0.9000; first step with rate < 1: 1; "
        "mean ρ step 0 1.000, max 1.000; test accuracy 0.250")
    with pytest.raises(ValueError, match="at least 11 measured steps, got 2"):
        paik2023.alleviation_summary({0.1: fake_run([1.4, 1.1], [1] * 2, [2.3])})


# ------------------------------------------------------------------------------------- 5. LALC

def test_trials_refuse_bad_settings():
    with pytest.raises(ValueError, match="Trial.steps"):
        paik2023.Trial("sgd", 0.1, 0, 0, 8)
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        paik2023.Trial("adamw", 0.1, 0, 1, 8)
    with pytest.raises(ValueError, match="processes must be a positive integer"):
        paik2023.run_trials([], processes=0)


@pytest.mark.slow
def test_run_trials_same_results_in_one_or_two_processes(cifar10_test_split):
    trials = [paik2023.Trial(name, lr, seed=s, steps=3, batch_size=8, depth=2, width=16, n_train=64, n_test=32,
                             options=opts)
              for name, lr, opts in [("sgd", 0.1, ()), ("lalc", 1.0, (("trust_coefficient", 0.01),))] for s in (0, 1)]
    here = paik2023.run_trials(trials, processes=1)
    spread = paik2023.run_trials(trials, processes=2)
    for a, b in zip(here, spread):
        assert a.trial == b.trial
        assert a.loss == b.loss and a.test_accuracy == b.test_accuracy
    assert here[0].loss != here[1].loss  # different seeds, different runs
    assert len(here[0].loss) == 3 and here[0].diverged_at is None


def test_lalc_small_and_large_batch_trials(S, cifar10_test_split):
    small = paik2023.lalc_small_batch(S, 5, "cpu")
    rules = ["SGD", "SGD + warm-up", "LALC η=0.01", "LALC η=0.003"]
    assert list(small.summary.index) == rules
    assert len(small.results) == len(small.runs) == S.opt_seeds * len(rules)
    assert list(small.runs["seed"]) == [5] * 4 + [6] * 4               # seed, seed + 1, ...
    sgd, warm = small.results[0].trial, small.results[1].trial
    assert (sgd.batch_size, sgd.steps, sgd.depth, sgd.warmup_steps, warm.warmup_steps) == (8, 4, 2, 0, 2)
    lalc = small.runs[small.runs["rule"] == "LALC η=0.01"]["test accuracy"]
    assert small.summary.loc["LALC η=0.01", "accuracy_mean"] == pytest.approx(lalc.mean())
    assert small.summary.loc["LALC η=0.01", "accuracy_std"] == pytest.approx(lalc.std())
    large = paik2023.lalc_large_batch(S, 0, "cpu")
    assert list(large.summary.index) == ["LALC", "LARS", "LAMB"]
    assert [r.trial.lr for r in large.results[:3]] == [1.6, 4.0, 4e-3]
    assert all((r.trial.batch_size, r.trial.steps) == (16, 3) for r in large.results)


def fake_comparison(accuracies: dict, steps: int) -> paik2023.Comparison:
    results, rows = [], []
    for rule, accs in accuracies.items():
        for seed, acc in enumerate(accs):
            trial = paik2023.Trial("sgd", 0.1, seed, steps, 8, label=rule)
            results.append(paik2023.TrialResult(trial, acc, 1.0, 1.0, None, list(np.linspace(2.3, 1.5, steps))))
            rows.append((rule, seed, acc, 1.0))
    runs = pd.DataFrame(rows, columns=["rule", "seed", "test accuracy", "final train loss"])
    summary = runs.groupby("rule", sort=False).agg(accuracy_mean=("test accuracy", "mean"),
                                                    accuracy_std=("test accuracy", "std"))
    return paik2023.Comparison(results, runs, summary)


def test_lalc_figures(S):
    small = fake_comparison({"SGD": [0.2, 0.3], "SGD + warm-up": [0.3, 0.4], "LALC η=0.01": [0.4, 0.4],
                             "LALC η=0.003": [0.4, 0.5]}, S.small_steps)
    fig = paik2023.figure_lalc_small_batch(small, S)
    curves, bars = fig.axes
    assert labels_of(curves) == ("training step", "training loss (running mean)")
    assert [line.get_label() for line in curves.get_lines()][:3] == ["SGD", "SGD + warm-up", "LALC η=0.01"]
    assert bars.get_ylabel() == "test accuracy" and len(bars.patches) == 4
    assert [p.get_height() for p in bars.patches] == pytest.approx([0.25, 0.35, 0.4, 0.45])
    large = fake_comparison({"LALC": [0.5, 0.6], "LARS": [0.5, 0.5], "LAMB": [0.3, 0.4]}, S.large_steps)
    (ax,) = paik2023.figure_lalc_large_batch(large, S).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["LALC", "LARS", "LAMB"]
    assert ax.get_ylabel() == "test accuracy" and [p.get_height() for p in ax.patches] == pytest.approx(
        [0.55, 0.5, 0.35])


# ------------------------------------------------------------------------------------- 6. three ways

def test_three_measurements_of_the_rate_agree(S):
    out = paik2023.measure_three_ways(S, gradprobe.seed(0))
    assert len(out) == 4 and out.iloc[3] == pytest.approx(math.sqrt(gaussian.RELU_RATE))
    assert out.iloc[:3].to_numpy() == pytest.approx(np.full(3, out.iloc[3]), rel=0.03)
    assert out.iloc[:3].max() / out.iloc[:3].min() - 1 < 0.03


# ------------------------------------------------------------------------------------- claims

def ideal_results(S, **changes):
    """Results with the paper's values (theory where it has none): every claim should hold."""
    arch = {"VGG-16 (BN)": [gaussian.RELU_RATE], "ResNet-8 (BN)": [1.1], "ResNet-14 (BN)": [1.2],
            "VGG-16 (GroupNorm)": [1.05], "VGG-16 (LayerNorm)": [1.0], "ViT (LayerNorm)": [1.0]}
    deep = {a: [gaussian.explosion_rate(a)] for a in paik2023.FIGURE1B_ACTIVATIONS}
    results = dict(
        moments=paik2023.relu_moments(1000, gradprobe.seed(0).data).assign(
            **{"Var[relu(z)] (what BN sees)": [RELU_VAR, RELU_VAR]}),
        forward_backward=paik2023.ForwardBackward(torch.ones(4), torch.ones(4), RateFit(gaussian.RELU_RATE, 1, 1)),
        activations=pd.DataFrame({"LN: measured": [1.0]}, index=["relu"]),
        widths=paik2023.WidthRatios(pd.DataFrame(), 0.01),
        figure1a=paik2023.figure1a_table(arch), figure1b=paik2023.figure1b_table(deep),
        alleviation={S.lr_safe: fake_run([1.45, 1.2, 0.95, 0.9], [1.0, 2.0, 3.0, 3.0], [2.0, 1.5]),
                     S.lr_large: fake_run([1.45, 3.0], [1.0, 50.0], [2.3] * 10, accuracy=0.1)},
        small_batch=fake_comparison({"SGD": [0.2, 0.2], "SGD + warm-up": [0.3, 0.32],
                                     f"LALC η={S.eta:g}": [0.31, 0.33]}, 4),
        large_batch=fake_comparison({"LALC": [0.5], "LARS": [0.45], "LAMB": [0.4]}, 3),
        three_ways=pd.Series([1.21, 1.22, 1.215, 1.211]))
    return {**results, **changes}


def test_claims_hold_for_the_papers_values_with_sources(S, tmp_path):
    claims = paik2023.check_claims(S, **ideal_results(S))
    assert claims.chapter == "paik2023" and len(claims.rows) == 27
    assert claims.all_passed, claims.summary()
    assert all(c.source for c in claims.rows)
    assert {c.source.split(",")[0] for c in claims.rows} >= {"paik2023", "spec (paik2023.md)"}
    saved = json.loads(claims.save(tmp_path / "paik2023.claims.json").read_text())
    assert saved["chapter"] == "paik2023" and saved["all_passed"] and len(saved["claims"]) == 27


def test_claims_fail_where_the_measurement_contradicts_the_paper(S):
    failing = dict(
        large_batch=fake_comparison({"LALC": [0.4], "LARS": [0.45], "LAMB": [0.4]}, 3),
        alleviation={S.lr_safe: fake_run([1.45, 1.3, 1.2], [1.0, 1.1, 1.2], [2.0]),
                     S.lr_large: fake_run([1.45], [1.0], [1.0] * 10)},
        three_ways=pd.Series([1.21, 1.30, 1.215, 1.211]),
        figure1b=paik2023.figure1b_table({**{a: [gaussian.explosion_rate(a)] for a in paik2023.FIGURE1B_ACTIVATIONS},
                                          "elu": [1.5]}))
    claims = paik2023.check_claims(S, **ideal_results(S, **failing))
    failed = {c.name for c in claims.rows if not c.passed}
    assert failed == {"large batch: LALC ≥ LARS and LAMB at equal epochs [recon LALC]",
                      "the explosion is relieved within the first steps of training, toward vanishing",
                      "the correlation between activations rises and offsets the explosion",
                      "too large a learning rate: training fails",
                      "three measurements of the rate agree (largest relative spread)",
                      "smoother ReLU variants explode less (51-layer VGG)",
                      "measured / predicted rate, all eight activations (worst)"}
