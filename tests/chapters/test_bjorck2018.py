"""gradprobe.chapters.bjorck2018: the chapter's drivers, figure functions and claims, at tiny sizes
(ResNet-8 on random 8×8 images; CIFAR-10 only where the test says so)."""
import math
from types import SimpleNamespace

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradprobe
from gradprobe.chapters import bjorck2018 as ch
from gradprobe.chapters.bjorck2018 import FIGURE5_LAYERS, dominant_class_share, probe_training_steps
from gradprobe.data.cifar10 import cifar10
from gradprobe.measure.steps import largest_useful_step, step_loss_ratios
from gradprobe.networks.resnet import cifar_resnet, layer, layer_stage, paper_layer

DEPTH = 8


def gen(n=0):
    return torch.Generator().manual_seed(n)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    """Random 8×8 "images" in the chapter's ProbeData: 64 to train on, 16 to test, two probe batches of 16."""
    g = gen(1)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    x_test, y_test = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    return ch.ProbeData(x, y, x_test, y_test, [(x[:16], y[:16]), (x[16:32], y[16:32])])


@pytest.fixture(scope="module")
def nets():
    return ch.networks_at_init(DEPTH, 0, "cpu")


@pytest.fixture(scope="module")
def L():
    return ch.paper_layers(DEPTH)


def labelled(fig):
    """Every panel of ``fig`` that has data has an x label, and some panel has a y label."""
    assert isinstance(fig, matplotlib.figure.Figure)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and (ax.lines or ax.images or ax.patches
                                                                          or ax.collections)]
    assert panels and all(ax.get_xlabel() for ax in panels) and any(ax.get_ylabel() for ax in panels)
    return panels


# ---------------------------------------------------------------------------- data and networks
def test_paper_layers_are_the_identity_at_depth_110_and_keep_the_stage_elsewhere():
    assert ch.paper_layers(110) == {k: k for k in ch.PAPER_LAYERS}
    here = ch.paper_layers(20)
    assert all(layer_stage(h, 20) == layer_stage(k, 110) for k, h in here.items())


def test_networks_at_init_share_their_conv_weights_and_differ_in_bn(nets):
    bn, plain = nets["BN"], nets["no BN"]
    assert bn.depth == plain.depth == DEPTH
    assert all(torch.equal(layer(bn, k).weight, layer(plain, k).weight) for k in range(1, DEPTH + 1))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    again = ch.resnet_at_init(DEPTH, None, 0, "cpu")
    other = ch.resnet_at_init(DEPTH, None, 1, "cpu")
    assert torch.equal(layer(again, 3).weight, layer(plain, 3).weight)
    assert not torch.equal(layer(other, 3).weight, layer(plain, 3).weight)


def test_layer_table_names_each_paper_layer_and_its_shape():
    table = ch.layer_table(ch.resnet_at_init(110, "batch", 0, "cpu"), ch.paper_layers(110))
    assert list(table.columns) == list(ch.PAPER_LAYERS)
    assert list(table.index) == ["layer here (ResNet-110)", "shape"]
    assert table[8]["shape"] == (16, 16, 3, 3) and table[44]["shape"] == (32, 32, 3, 3)
    assert table[80]["shape"] == (64, 64, 3, 3) and table[110]["shape"] == (10, 64)


def test_load_data_refuses_more_batches_than_images_before_loading_anything():
    with pytest.raises(ValueError, match="need 96 training images"):
        ch.load_data(64, 16, 32, 3, "cpu", gen())
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        ch.load_data(64, 16, 0, 1, "cpu", gen())


@pytest.fixture
def cifar10_available():
    """Skip (when the test runs, not when tests are collected) unless CIFAR-10 can be loaded."""
    try:
        cifar10("test", download=False)
    except Exception as err:  # no data folder, no cache, offline: the data is not there
        pytest.skip(f"CIFAR-10 not available (set GRADPROBE_DATA): {err}")


@pytest.mark.slow          # decodes the CIFAR-10 training split unless it is cached
def test_load_data_gives_mean_subtracted_cifar_and_distinct_probe_batches(cifar10_available):
    data = ch.load_data(64, 16, 8, 2, "cpu", gen(3))
    assert data.x.shape == (64, 3, 32, 32) and data.x_test.shape == (16, 3, 32, 32)
    assert [tuple(xb.shape) for xb, _ in data.batches] == [(8, 3, 32, 32)] * 2
    assert data.xb is data.batches[0][0] and data.yb is data.batches[0][1]
    assert not torch.equal(data.batches[0][0], data.batches[1][0])
    assert data.x.abs().max() <= 1.0        # [0, 1] pixels minus the channel mean: not unit variance
    assert 0.1 < float(data.x.std()) < 0.4


def test_calibrate_measures_the_loss_and_one_small_step(nets, data):
    found = ch.calibrate(nets, data.xb, data.yb)
    with torch.no_grad():
        assert found.loss["no BN"] == pytest.approx(float(F.cross_entropy(nets["no BN"](data.xb), data.yb)))
    assert found.ratio["BN"] == step_loss_ratios(nets["BN"], data.xb, data.yb, [1e-4])[0]
    assert all(r < 1 for r in found.ratio.values())      # a small step along −∇L lowers the loss
    lines = str(found).splitlines()
    assert len(lines) == 2 and lines[0].startswith("BN ") and "after one step of size 1e-4" in lines[1]


# ---------------------------------------------------------------------------- Figure 1, Appendix E
def test_train_figure1_runs_every_setting_and_the_figures_show_them(data):
    S = SimpleNamespace(train_depth=DEPTH, train_steps=4, train_batch=8, eval_every=2, seeds=1)
    runs = ch.FIGURE1_RUNS + (("no BN", None, 1e4),)       # one run that must diverge
    histories = ch.train_figure1(S, data, 0, "cpu", runs=runs)
    assert list(histories) == [(label, lr) for label, _, lr in runs]
    kept = [hs[0] for key, hs in histories.items() if key != ("no BN", 1e4)]
    assert all(h.steps == 4 and [e[0] for e in h.evals] == [2, 4] for h in kept)
    assert histories[("no BN", 1e4)][0].diverged
    assert ch.train_figure1(S, data, 0, "cpu", runs=runs[:1])[("BN", 0.1)][0].loss == histories[("BN", 0.1)][0].loss

    summary = ch.figure1_summary(histories)
    assert summary.index.names == ["network", "lr"]
    assert summary.loc[("BN", 0.1), "diverged at step"] == "—"
    assert summary.loc[("no BN", 1e4), "diverged at step"] == str(histories[("no BN", 1e4)][0].diverged_at)
    assert math.isnan(summary.loc[("no BN", 1e4), "final test acc."])
    assert summary.loc[("BN", 0.1), "final test acc."] == histories[("BN", 0.1)][0].evals[-1][2]
    final = summary.loc[("final BN only", 0.03), "final test acc."]
    assert ch.final_accuracies(summary)["final BN only, lr 0.03"] == f"{final:.3f}"

    fig = ch.figure1(histories, S)
    panels = labelled(fig)
    assert panels[0].get_xlabel() == "% of training" and panels[0].get_ylabel() == "accuracy"
    legend = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert any("diverged at step" in t for t in legend)            # the diverged run is marked
    assert not any(t.startswith("final BN only") for t in legend)   # Appendix E's run is not Figure 1's
    fig_e = ch.appendix_e(histories, S)
    assert labelled(fig_e)[0].get_ylabel() == "test accuracy"
    assert any(t.get_text().startswith("final BN only") for t in fig_e.axes[0].get_legend().get_texts())


# ---------------------------------------------------------------------------- Figure 2
def test_kurtosis_of_a_gaussian_is_three():
    sample = np.random.default_rng(0).standard_normal(200_000)
    assert ch.kurtosis(sample) == pytest.approx(3.0, abs=0.05)
    assert ch.kurtosis(np.array([-1.0, 1.0] * 50)) == pytest.approx(1.0)


def test_measure_figure2_pools_the_kernel_gradients(nets, data, L):
    found = ch.measure_figure2(nets, data.batches, L[55])
    numel = layer(nets["BN"], L[55]).weight.numel()
    assert set(found.grads) == {"BN", "no BN"} and all(g.shape == (2 * numel,) for g in found.grads.values())
    assert found.ratio == pytest.approx(found.grads["no BN"].std() / found.grads["BN"].std())
    assert str(found).startswith("gradient std, no BN / BN: ") and "excess kurtosis" in str(found)
    fig = ch.figure2(found)
    assert fig.axes[0].get_xlabel() == f"∂L/∂K entries of layer {L[55]} (paper's 55)"
    assert fig.axes[0].get_ylabel() == "count (log)" and fig.axes[0].get_yscale() == "log"


# ---------------------------------------------------------------------------- Figure 3, Appendix H
def test_figure5_layers_span_the_resnet_110_evenly_and_end_at_the_classifier():
    net = cifar_resnet(110)
    *convs, last = FIGURE5_LAYERS
    assert layer(net, last) is net.fc
    assert all(isinstance(layer(net, k), torch.nn.Conv2d) for k in convs)
    steps = {b - a for a, b in zip(convs, convs[1:])}
    assert len(steps) == 1 and {layer_stage(k, 110) for k in convs} == {1, 2, 3}


def test_dominant_class_share():
    made = torch.zeros(10, 4)
    made[:9, 2] = 1.0
    made[9, 0] = 1.0
    assert dominant_class_share(made).cls == 2 and dominant_class_share(made).share == pytest.approx(0.9)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    found = dominant_class_share(made, labels)      # images of class 2 are not counted
    assert found.cls == 2 and found.share == pytest.approx(7 / 8) and found.probability == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="expected output gradients"):
        dominant_class_share(torch.zeros(3))


def test_probe_training_steps_scans_the_requested_batches():
    g = gen(1)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    model = cifar_resnet(8, None, generator=gen())
    w0 = layer(model, 3).weight.detach().clone()
    found, history = probe_training_steps(model, x, y, [1e-4, 1e-3], lr=1e-3, batch_size=16, batches=(1, 3),
                                          generator=gen(2))
    assert sorted(found) == [1, 3] and all(r.shape == (2,) for r in found.values())
    assert history.steps == 3 and not history.diverged
    assert not torch.equal(w0, layer(model, 3).weight)       # it trained in between
    with pytest.raises(ValueError, match="start at 1"):
        probe_training_steps(model, x, y, [1e-4], lr=1e-3, batch_size=16, batches=(0,))


def test_step_sizes_span_1e_5_to_1():
    alphas = ch.step_sizes(6)
    assert alphas.shape == (6,) and alphas[0] == pytest.approx(1e-5) and alphas[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="points must be an integer >= 2"):
        ch.step_sizes(1)


def test_probe_figure3_and_appendix_h_scan_the_step_sizes(data):
    alphas = ch.step_sizes(5)
    probes = ch.probe_figure3(data, alphas, depth=DEPTH, batch_size=16, seed=0, device="cpu")
    assert list(probes) == ["BN", "no BN"]
    assert all(sorted(p.ratios) == [1, 4, 7] and all(r.shape == (5,) for r in p.ratios.values())
               for p in probes.values())
    useful = ch.useful_steps(probes, alphas)
    assert useful["BN"][4] == largest_useful_step(alphas, probes["BN"].ratios[4])
    table = ch.useful_table(useful)
    assert table.index.name == "mini-batch" and list(table.columns) == ["BN", "no BN"]
    fig = ch.figure3(probes, alphas)
    assert len(fig.axes) == 6 and fig.axes[0].get_ylabel() == "new loss / old loss"
    assert fig.axes[3].get_xlabel() == "step size α along −∇L" and fig.axes[3].get_title() == "no BN, mini-batch 1"

    depth_steps = ch.scan_appendix_h(data, alphas, (8, 14), batch_size=8, seed=0, device="cpu")
    fresh = ch.resnet_at_init(14, None, 0, "cpu")
    expected = largest_useful_step(alphas, step_loss_ratios(fresh, data.xb[:8], data.yb[:8], alphas))
    assert list(depth_steps) == [8, 14] and depth_steps[14] == expected
    fig = ch.appendix_h(depth_steps, useful["BN"][1], alphas, DEPTH)
    assert labelled(fig)[0].get_xlabel() == "ResNet depth (weight layers)"


# ---------------------------------------------------------------------------- Figure 4
def figure4_settings(diverge_lr, find_steps=3):
    return SimpleNamespace(depth=DEPTH, probe_batch=16, find_steps=find_steps, sweep_points=5, diverge_lr=diverge_lr)


def test_find_figure4_update_sweeps_from_before_to_after_the_diverging_update(data, L, nets):
    anatomy = ch.find_figure4_update(figure4_settings(1e4), data, L, seed=0, device="cpu", lrs=(1e-6,))
    assert list(anatomy.updates) == [1e4, 1e-6] and anatomy.updates[1e-6] is None
    u, sweep = anatomy.update, anatomy.sweep
    assert u is not None and anatomy.layers == {8: L[8], 44: L[44], 80: L[80]}
    assert np.array_equal(sweep.fractions, np.linspace(0, 1, 5)) and sweep.loss.shape == (5,)
    assert sweep.loss[0] == pytest.approx(u.loss_before, rel=1e-5)          # t = 0: the weights before
    assert not sweep.loss[-1] <= 1e3                                         # t = 1: diverged
    channels = layer(nets["no BN"], L[80]).out_channels
    assert sweep.variances[L[80]].shape == (5, channels)
    report = anatomy.report().splitlines()
    assert report[0].startswith(f"ResNet-{DEPTH} without BN, lr 10000: update 1 sends the loss")
    assert report[1].endswith("no update diverged in 3 steps") and report[2].startswith("loss along the update")

    fig = ch.figure4(anatomy)
    assert fig.axes[0].get_ylabel() == "% of the update applied" and fig.axes[0].get_xlabel() == "channel c"
    mean, var = ch.final_moments(anatomy)
    assert var[80] == ch.finite_max(sweep.variances[L[80]][-1])
    table = ch.figure4_table(anatomy)
    assert list(table.index) == [8, 44, 80] and list(table["paper's colour bar, variance"]) == ["1", "5e6", "5e16"]


def test_figure4_without_a_diverging_update(data, L):
    anatomy = ch.find_figure4_update(figure4_settings(1e-6, find_steps=1), data, L, seed=0, device="cpu", lrs=())
    assert anatomy.update is None and anatomy.sweep is None
    assert anatomy.report() == f"ResNet-{DEPTH} without BN, lr 1e-06: no update diverged in 1 steps"
    with pytest.raises(ValueError, match="nothing was swept"):
        ch.figure4(anatomy)
    assert ch.finite_max(np.array([np.nan, np.inf])) == -np.inf


# ---------------------------------------------------------------------------- Figures 5, 6, 7, Table 1
def test_measure_figure5_rms_is_that_of_the_layer_output(nets, data):
    found = ch.measure_figure5(nets, data.xb)
    assert found.layers == ch.figure5_layers(DEPTH) and found.layers[-1] == DEPTH
    with torch.no_grad():
        logits = {name: net(data.xb).double() for name, net in nets.items()}
    for name in nets:           # mean_c(μ_c² + σ_c²) of the classifier's outputs is their mean square
        assert found.rms[name][DEPTH] == pytest.approx(float(logits[name].pow(2).mean().sqrt()), rel=1e-6)
    assert found.out_ratio == pytest.approx(found.rms["no BN"][DEPTH] / found.rms["BN"][DEPTH])
    first, last = paper_layer(6, DEPTH), paper_layer(102, DEPTH)           # the paper's layers 6 and 102
    assert found.growth["no BN"] == pytest.approx(found.rms["no BN"][last] / found.rms["no BN"][first])
    assert str(found).startswith("output-layer RMS: BN ")
    fig = ch.figure5(found)
    assert fig.axes[0].get_xlabel() == f"layer (paper's numbering; here ResNet-{DEPTH})"
    assert fig.axes[0].get_ylabel() == "magnitude (log)"


def test_measure_figure6_gives_softmax_minus_one_hot(nets, data):
    found = ch.measure_figure6(nets, data.xb, data.yb)
    for g in found.grads.values():
        assert g.shape == (16, 10)
        assert torch.allclose(g.sum(dim=1), torch.zeros(16, dtype=g.dtype), atol=1e-12)   # rows sum to 0
        own = g[torch.arange(16), data.yb]
        assert (own <= 0).all() and (g.sum(dim=1) - own >= 0).all()            # only the label's entry is negative
    assert found.dominant["BN"] == dominant_class_share(found.grads["BN"], data.yb)
    assert len(str(found).splitlines()) == 2
    fig = ch.figure6(found)
    assert fig.axes[0].get_xlabel() == "class j" and fig.axes[0].get_ylabel() == "image b in the mini-batch"


def test_table1_has_a_at_least_b_and_the_papers_values(nets, data, L):
    table = ch.table1(nets, data.batches, L)
    assert table.index.names == ["network", "layer"] and len(table) == 6
    assert (table["a"] >= table["b"]).all() and (table["a/b"] >= 1).all()
    assert table.loc[("BN", 18), "paper a/b"] == 251.8 and table.loc[("no BN", 90), "paper b"] == 1.2e-04


def test_measure_figure7_maps_channels_and_shares(nets, data, L):
    found = ch.measure_figure7(nets, data.xb, data.yb, L[45])
    weight = layer(nets["BN"], L[45]).weight
    assert found.maps["BN"].shape == (weight.shape[1], weight.shape[0])
    assert all(0 < s <= 1 + 1e-12 for s in found.shares.values())
    fig = ch.figure7(found)
    assert fig.axes[0].get_xlabel() == "output channel o" and fig.axes[0].get_ylabel() == "input channel i"


# ---------------------------------------------------------------------------- Figures 8, 9, Appendix K
def test_theorem1_moments_are_the_fuss_catalan_numbers():
    found = ch.theorem1_moments((1, 3))
    for M in (1, 3):
        assert found.mass[M] == pytest.approx(1, abs=1e-6) and found.moments[1][M] == pytest.approx(1, abs=1e-4)
        assert found.moments[2][M] == pytest.approx(M + 1, rel=1e-3)
    assert str(found).startswith("∫ρ_M: {1: '") and "}  E[x]: {1: '" in str(found) and "}  E[x²]: {" in str(found)
    fig = ch.figure8((1, 2))
    assert fig.axes[0].get_xlabel() == "squared singular value x" and len(fig.axes[0].lines) == 3


def test_sample_figure9_and_appendix_k():
    found = ch.sample_figure9(40, 2, gen(0), Ms=(1, 2))
    assert [v.shape for v in found.squared.values()] == [(2, 40)] * 2 and all(0 < k < 1 for k in found.ks.values())
    assert np.array_equal(ch.sample_figure9(40, 2, gen(0), Ms=(1, 2)).squared[2], found.squared[2])
    fig = ch.figure9(found)
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "singular value s"

    cond = ch.measure_appendix_k((1, 2, 3), 30, 3, gen(0))
    assert cond.kappa.shape == (3, 3) and (cond.kappa >= 1).all()
    assert cond.per_factor == pytest.approx(float(np.exp(np.polyfit([1, 2, 3], np.log(cond.median), 1)[0])))
    assert str(cond).startswith("median κ: [")
    assert labelled(ch.appendix_k(cond))[0].get_ylabel() == "condition number s_max/s_min"
    with pytest.raises(ValueError, match="at least two numbers of factors"):
        ch.measure_appendix_k((3,), 30, 3, gen(0))


# ---------------------------------------------------------------------------- claims
@pytest.fixture(scope="module")
def results(data, nets, L):
    """Everything check_claims reads, from tiny runs."""
    S = SimpleNamespace(depth=DEPTH, train_depth=DEPTH, train_steps=2, train_batch=8, eval_every=2, seeds=1,
                        probe_batch=16, find_steps=2, sweep_points=3, diverge_lr=1e4)
    alphas = ch.step_sizes(4)
    probes = ch.probe_figure3(data, alphas, depth=DEPTH, batch_size=16, seed=0, device="cpu")
    return S, dict(
        summary=ch.figure1_summary(ch.train_figure1(S, data, 0, "cpu")), probes=probes,
        anatomy=ch.find_figure4_update(S, data, L, seed=0, device="cpu"),
        grads=ch.measure_figure2(nets, data.batches, L[55]), useful=ch.useful_steps(probes, alphas),
        depth_steps=ch.scan_appendix_h(data, alphas, (8, 14), batch_size=8, seed=0, device="cpu"),
        moments=ch.measure_figure5(nets, data.xb), out_grads=ch.measure_figure6(nets, data.xb, data.yb),
        table=ch.table1(nets, data.batches, L), maps=ch.measure_figure7(nets, data.xb, data.yb, L[45]),
        theorem1=ch.theorem1_moments(), fig9=ch.sample_figure9(30, 1, gen(0)),
        conditioning=ch.measure_appendix_k((1, 2, 3), 20, 2, gen(0)))


def test_check_claims_checks_every_figure_with_its_source(results):
    S, found = results
    claims = ch.check_claims(S, **found)
    names = [c.name for c in claims.rows]
    assert len(names) == 21 and names[0].startswith("Fig. 1:") and names[-1].startswith("App. E:")
    for figure in ("Fig. 2", "Fig. 3", "App. H", "Fig. 4", "Fig. 5", "Fig. 6", "Table 1", "Fig. 7", "Thm. 1",
                   "Fig. 9", "App. K"):
        assert any(n.startswith(figure) for n in names), figure
    assert all(c.source.startswith("bjorck2018, ") for c in claims.rows)
    assert claims.chapter == "bjorck2018"
    thm = next(c for c in claims.rows if c.name.startswith("Thm. 1"))
    assert thm.passed and thm.measured == found["theorem1"].mass[5]


def test_check_claims_fail_when_the_measurement_says_so(results):
    S, found = results
    flat = ch.Conditioning((1, 2, 3), 20, np.array([[5.0, 5.0], [4.0, 4.0], [3.0, 3.0]]))   # κ falls with M
    steep = ch.Conditioning((1, 2, 3), 20, np.array([[2.0, 2.0], [40.0, 40.0], [800.0, 800.0]]))
    app_k = lambda cond: next(c for c in ch.check_claims(S, **{**found, "conditioning": cond}).rows
                              if c.name.startswith("App. K"))
    assert not app_k(flat).passed and app_k(steep).passed
    wrong_mass = ch.Theorem1Moments({0: {5: 0.99}, 1: {}, 2: {}})
    thm = next(c for c in ch.check_claims(S, **{**found, "theorem1": wrong_mass}).rows if c.name.startswith("Thm. 1"))
    assert not thm.passed
    nothing = ch.DivergenceAnatomy({0.1: None, 0.003: None, 1e-6: None}, None, 1e-6, DEPTH, 1, {})
    rows = ch.check_claims(S, **{**found, "anatomy": nothing}).rows
    fig4 = [c for c in rows if c.name.startswith("Fig. 4")]
    assert len(fig4) == 2 and not any(c.passed for c in fig4) and fig4[1].measured == "no diverging update"
    assert rows[0].measured.startswith("no BN diverges at neither") and not rows[0].passed
