"""gradprobe.chapters.paik2023: the drivers, trials, figures and claims of the Paik & Choi chapter at
tiny sizes (CPU, seconds each). CIFAR-10 is replaced by random images (the trials' data functions are
patched), so nothing here needs the data set."""
import math

import pandas as pd
import pytest
import torch

from gradprobe import sweep
from gradprobe.book.claims import HOLDS, MACHINERY, PAPER, RECONSTRUCTION
from gradprobe.book.page import Page
from gradprobe.chapters import paik2023 as ch
from gradprobe.theory import gaussian

R = math.pi / (math.pi - 1)


@pytest.fixture
def random_cifar(monkeypatch):
    """Random stand-ins for CIFAR-10: batches for Figure 1, flattened subsets for training."""
    def batch(n, generator):
        return torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator)

    def training(n_train, n_val, n_test, pool, data_seed):
        g = torch.Generator().manual_seed(data_seed)
        d = 3 * (32 // pool) ** 2
        w = torch.randn(d, 10, generator=g)               # a learnable task: labels from a linear map
        make = lambda n: (lambda x: (x, (x @ w).argmax(1)))(torch.randn(n, d, generator=g))
        return (*make(n_train), *make(max(n_val, 1)), *make(n_test))

    monkeypatch.setattr(ch, "_cifar_batch", batch)
    monkeypatch.setattr(ch, "_training_data", training)


@pytest.fixture
def sweeps(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADPROBE_SWEEPS", str(tmp_path / "sweeps"))
    monkeypatch.delenv("GRADPROBE_SCHEDULER", raising=False)
    return tmp_path / "sweeps"


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Page("paik2023", "book", 0, "cpu")


def labelled(fig):
    return all(ax.get_xlabel() and (ax.get_ylabel() or [t for t in ax.get_yticklabels() if t.get_text()])
               for ax in fig.axes if ax.get_visible()
               and ax.get_label() != "<colorbar>")


# ------------------------------------------------------------------------------------ settings, cost

def test_settings_at_every_scale_and_cost_grows_with_scale():
    costs = [ch.cost(ch.settings(s)) for s in ("smoke", "book", "paper")]
    assert 0 < costs[0] < costs[1] < costs[2]
    S = ch.settings("book")
    assert S.opt_seeds >= 5 and S.train_seeds >= 5 and S.arch_seeds >= 5 and S.deep_seeds >= 5
    assert "widths × depths" in repr(S)            # the notes are part of the table


def test_paper_scale_networks_construct(random_cifar):
    S = ch.settings("paper")
    for label, kind, options in ch.arch_settings(S):
        net = ch._build(kind, dict(options), torch.Generator().manual_seed(0))
        assert sum(p.numel() for p in net.parameters()) > 0, label
    cfg = ch.deep_config(S.deep_stages, 16)
    assert ch._weight_layers(cfg) == 51


# ------------------------------------------------------------------------------------ 1. theory

def test_relu_moments_match_their_closed_forms():
    m = ch.relu_moments(200_000, torch.Generator().manual_seed(0))
    assert list(m.iloc[0]) == pytest.approx([0.5, (math.pi - 1) / (2 * math.pi), 0.5], abs=1e-12)
    assert list(m.iloc[1]) == pytest.approx(list(m.iloc[0]), abs=5e-3)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        ch.relu_moments(0)


def test_mlp_trial_seeds_itself_and_measures_r_for_relu():
    c = ch.MLPSetting("relu", "batch", depth=12, width=128, batch=128, repeats=6)
    a, b = ch.mlp_trial(c), ch.mlp_trial(c)
    assert a["rates"].shape == (6,) and a["forward"].shape == a["backward"].shape == (6, 12)
    torch.testing.assert_close(a["backward"], b["backward"], rtol=0, atol=0)        # from the configuration
    other = ch.mlp_trial(ch.MLPSetting("relu", "batch", 12, 128, 128, 6, seed=1))
    assert not torch.equal(a["backward"], other["backward"])
    assert float(a["rates"].mean()) == pytest.approx(R, rel=0.04)
    ln = ch.mlp_trial(ch.MLPSetting("relu", "layer", 12, 128, 128, 6))
    assert float(ln["rates"].mean()) == pytest.approx(1.0, abs=0.04)
    assert float(a["forward"][:, 1:].mean()) == pytest.approx(2 * gaussian.forward_ratio("relu"), rel=0.05)


def test_mlp_trial_chunks_do_not_change_the_networks(monkeypatch):
    c = ch.MLPSetting("relu", "batch", depth=6, width=32, batch=32, repeats=10)
    monkeypatch.setattr(ch, "MLP_CHUNK", 100)
    whole = ch.mlp_trial(c)
    monkeypatch.setattr(ch, "MLP_CHUNK", 4)
    chunked = ch.mlp_trial(c)
    torch.testing.assert_close(chunked["backward"], whole["backward"], rtol=1e-5, atol=0)


def test_width_trial_finds_r_times_n_out_over_n_in():
    w = ch.width_trial(ch.WidthSetting(depth=12, width=128, batch=256, repeats=3))
    assert w["up"].shape == w["down"].shape == (3,)
    assert w["up"].mean() == pytest.approx(1.0, abs=0.08) and w["down"].mean() == pytest.approx(1.0, abs=0.08)
    with pytest.raises(ValueError, match="depth"):
        ch.width_trial(ch.WidthSetting(depth=4, width=16, batch=8, repeats=1))


def test_run_theory_table_figure_and_claims(sweeps, page):
    S = ch.settings("smoke")
    theory = ch.run_theory(S)
    assert list(theory.table.index) == list(ch.THEORY_ACTIVATIONS)
    assert theory.table.loc["relu", "BN: predicted r(φ)"] == pytest.approx(R)
    assert theory.table.loc["relu", "LN: predicted"] == pytest.approx(1.0)
    assert labelled(ch.figure_forward_backward(theory))
    page.claims.section("paik2023-theory", "theory")
    ch.check_theory(page, S, theory)
    rows = page.claims.rows
    kinds = [r.kind for r in rows]
    assert kinds.count(MACHINERY) == 9 and kinds.count(PAPER) == 3 and kinds.count(RECONSTRUCTION) == 1
    assert all(r.source for r in rows) and all(r.quote for r in rows if r.kind == PAPER)
    # the closed-form machinery rows hold (quadrature agrees to 1e-5 whatever the scale)
    assert all(r.verdict == HOLDS for r in rows if "closed form" in r.name)
    # re-running the sweep reuses the stored trials and gives the same table
    again = ch.run_theory(S)
    pd.testing.assert_frame_equal(theory.table, again.table)


def test_mc_rate_agrees_with_quadrature():
    est = ch._mc_rate("silu", 200_000, torch.Generator().manual_seed(3))
    assert est.shape == (10,)
    assert est.mean() == pytest.approx(gaussian.explosion_rate("silu"), rel=0.01)
    assert ch._closed_form_rate("leaky_relu") == pytest.approx(gaussian.explosion_rate("leaky_relu"), rel=1e-7)


# ------------------------------------------------------------------------------------ 2. Figure 1(b)

def test_deep_config_layout_and_errors():
    assert ch.deep_config(((4, 2), (8, 3)), 16) == (4, 4, "M", 8, 8, 8)
    assert ch.deep_config(((4, 2), (8, 3)), 32) == (4, 4, 8, 8, 8)
    assert ch.deep_config(((4, 2), (8, 3)), 8).count("M") == 2
    assert ch._weight_layers(ch.deep_config(((16, 2), (32, 48)))) == 51
    with pytest.raises(ValueError, match="power of 2"):
        ch.deep_config(((4, 2), (8, 3)), 12)
    with pytest.raises(ValueError, match="stages must be"):
        ch.deep_config(((4, 2),), 16)


def test_deep_trial_pairs_activations_of_one_seed(random_cifar):
    cfg = ch.deep_config(((8, 1), (8, 6)), 16)
    relu = ch.deep_trial(ch.DeepSetting("relu", cfg, 16, 0))
    ident = ch.deep_trial(ch.DeepSetting("identity", cfg, 16, 0))
    assert relu["pairs"] == 4                                    # 6 convs in the long stage, the first after a pool
    assert relu["rate"] > ident["rate"]
    # the same seed: the same weight draws, so a network with φ = identity is fed the same images
    again = ch.deep_trial(ch.DeepSetting("relu", cfg, 16, 0))
    assert again["rate"] == relu["rate"]


def test_figure1b_table_tolerances_figure_and_claims(random_cifar, sweeps, page):
    S = ch.settings("smoke")
    result = ch.run_figure1b(S)
    t = result.table
    assert list(t.index) == list(ch.FIGURE1B_ACTIVATIONS)
    assert (t["tolerance"] >= ch.APPROX).all()
    assert t["tolerance"].to_numpy() == pytest.approx(ch.APPROX + t.iloc[:, 4].abs().to_numpy())
    assert set(result.maps) == set(S.map_sizes) and all(len(v) == S.map_seeds for v in result.maps.values())
    assert labelled(ch.figure1b(result))
    page.claims.section("paik2023-fig1b", "Figure 1(b)")
    ch.check_figure1b(page, result)
    names = [r.name for r in page.claims.rows]
    assert any("1.21" in n for n in names) and any("DropOut" in n for n in names)
    assert all(r.source for r in page.claims.rows)


def test_depth_width_study_grid_and_rows(sweeps, page):
    S = ch.settings("smoke")
    result = ch.run_depth_width(S)
    assert set(result.excess) == {(a, d, w) for a in ch.DW_ACTIVATIONS for d in S.dw_depths for w in S.dw_widths}
    assert labelled(ch.figure_depth_width(result))
    page.claims.section("paik2023-fig1b", "Figure 1(b)")
    ch.check_depth_width(page, result)
    assert [r.kind for r in page.claims.rows] == [RECONSTRUCTION] * 3


# ------------------------------------------------------------------------------------ 3. Figure 1(a)

def test_arch_trial_corrects_the_vgg_fit_with_more_pairs(random_cifar):
    S = ch.settings("smoke")
    nets = {label: (kind, options) for label, kind, options in ch.arch_settings(S)}
    kind, options = nets["VGG-16 (BN)"]
    r = ch.arch_trial(ch.ArchSetting("VGG-16 (BN)", kind, options, 16, 0))
    # VGG-16: three clean pairs for the segmented fit; seven once the pool-fed pairs are corrected
    assert r["fit_pairs"] == 3 and r["corrected_pairs"] == 7
    assert r["layers"] == 13 and not r["residual"] and r["effective_depth"] >= 13
    res = ch.arch_trial(ch.ArchSetting("ResNet-8 (BN)", *nets["ResNet-8 (BN)"], 16, 0))
    assert res["residual"] and res["effective_depth"] == 3 and math.isnan(res["corrected"])
    assert len(res["stream"]) == 3
    swin = ch.arch_trial(ch.ArchSetting("Swin (LayerNorm)", *nets["Swin (LayerNorm)"], 16, 0))
    assert swin["per_depth"] == pytest.approx(1.0, abs=0.1)


def test_arch_settings_group_norm_is_not_instance_norm():
    S = ch.settings("book")
    label, kind, options = next(n for n in ch.arch_settings(S) if "GroupNorm" in n[0])
    net = ch._build(kind, dict(options), torch.Generator().manual_seed(0))
    assert all(n.num_channels // n.num_groups == S.gn_group > 1 for n in net.norms())


def test_figure1a_table_figure_and_claims(random_cifar, sweeps, page):
    S = ch.settings("smoke")
    result = ch.run_figure1a(S)
    assert len(result.table) == 7 and all(len(v) == S.arch_seeds for v in result.trials.values())
    assert labelled(ch.figure1a(result))
    page.claims.section("paik2023-fig1a", "Figure 1(a)")
    ch.check_figure1a(page, result)
    rows = {r.name: r for r in page.claims.rows}
    assert sum(r.kind == PAPER for r in rows.values()) == 3
    gn = next(r for n, r in rows.items() if n.startswith("GroupNorm rate"))
    assert gn.check.paper == f"{gaussian.predicted_rate('relu', 'group', group_size=4):.4g}"


# ------------------------------------------------------------------------------------ 4. alleviation

def test_alleviation_trial_factors_multiply_to_the_ratio(random_cifar):
    c = ch.AlleviationSetting(depth=6, width=32, lr=0.1, batch=32, steps=6, probe=64, measure=(0, 2, 5),
                              n_train=256, pool=4, seed=0)
    r = ch.alleviation_trial(c)
    assert r["steps"].tolist() == [0, 2, 5] and r["factors"].shape == (3, len(ch.FACTORS), 4)
    product = r["factors"].prod(dim=1) * R
    torch.testing.assert_close(product, r["ratio"], rtol=1e-9, atol=0)
    assert len(r["loss"]) == 6


def test_alleviation_plateau_per_seed_and_claims(random_cifar, sweeps, page):
    S = ch.settings("smoke")
    result = ch.run_alleviation(S)
    assert len(result.runs) == S.train_seeds and result.plateau_from == S.train_steps // 2
    plateau = result.per_seed()
    manual = [float(r["rate"].numpy()[result.steps >= result.plateau_from].mean()) for r in result.runs]
    assert plateau == pytest.approx(manual)
    table = result.factor_logs()
    # the logs of the eight factors add up to the log of measured / r
    assert table["log"].iloc[:-1].sum() == pytest.approx(table["log"].iloc[-1], abs=1e-9)
    assert labelled(ch.figure_alleviation(result)) and labelled(ch.figure_mechanism(result))
    page.claims.section("paik2023-alleviation", "alleviation")
    ch.check_alleviation(page, result)
    rows = page.claims.rows
    assert [r.kind for r in rows] == [PAPER, PAPER, RECONSTRUCTION, RECONSTRUCTION, MACHINERY]
    assert rows[-1].verdict == HOLDS                       # the identity holds at any scale


# ------------------------------------------------------------------------------------ 5. LALC

def tiny_setting(**kw):
    base = dict(rule="sgd", lr=0.1, warmup=0, batch=16, steps=12, seed=0, depth=3, width=16, pool=4, n_train=64,
                n_val=16, n_test=32, checkpoint_epochs=1)
    return ch.TrainSetting(**{**base, **kw})


def test_train_trial_pairs_rules_of_a_seed_and_reports_accuracy(random_cifar):
    a = ch.train_trial(tiny_setting())
    b = ch.train_trial(tiny_setting(rule="lalc", options=(("trust_coefficient", 0.01),)))
    assert 0 <= a["test_accuracy"] <= 1 and len(a["loss"]) == 12 and a["diverged_at"] == -1
    assert a["loss"][0] == b["loss"][0]            # same initial weights and first batch for every rule
    with_warmup = ch.train_trial(tiny_setting(warmup=6))
    assert with_warmup["loss"][0] == a["loss"][0] and with_warmup["loss"][-1] != a["loss"][-1]


def test_train_trial_resumes_from_its_checkpoint_identically(random_cifar, sweeps, monkeypatch):
    config = tiny_setting(steps=16)                # 4 steps per epoch: a checkpoint every 4 steps
    reference = ch.train_trial(config)
    calls = {"n": 0}
    real_fit = ch.fit

    def killed_after_two_chunks(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")      # not an Exception: the sweep does not record it
        return real_fit(*args, **kw)

    monkeypatch.setattr(ch, "fit", killed_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(ch.train_trial, [config])
    monkeypatch.setattr(ch, "fit", real_fit)
    done = sweep.run(ch.train_trial, [config])
    resumed = done[config]
    torch.testing.assert_close(resumed["loss"], reference["loss"], rtol=0, atol=0)
    assert resumed["test_accuracy"] == reference["test_accuracy"]


def test_choose_picks_the_best_and_flags_grid_edges():
    rows, edges = [], []
    assert ch._choose({0.1: 0.3, 0.2: 0.5, 0.4: 0.4}, "inside", rows, edges) == 0.2
    assert ch._choose({0.1: 0.6, 0.2: 0.5}, "edge", rows, edges) == 0.1
    assert ch._choose({0.1: 0.5, 0.2: 0.5}, "tie", rows, edges) == 0.1        # ties: the smaller
    assert edges == ["edge", "tie"] and len(rows) == 7 and [r[3] for r in rows[:3]] == ["", "✓", ""]


def test_lalc_comparisons_claims_and_figures(random_cifar, sweeps, page):
    S = ch.settings("smoke")
    tuning = ch.run_tuning(S)
    assert tuning.eta in S.etas and set(tuning.lrs) == set(ch.LARGE_RULES)
    small, large = ch.run_small_batch(S, tuning), ch.run_large_batch(S, tuning)
    assert list(small.summary.index) == list(ch.SMALL_RULES) and list(large.summary.index) == list(ch.LARGE_RULES)
    assert small.accuracy("SGD").shape == (S.opt_seeds,)
    # tuning seeds and verdict seeds never meet
    assert set(small.runs["seed"]) == set(range(S.opt_seeds)) and ch.TUNE_SEED >= S.opt_seeds
    assert labelled(ch.figure_lalc_small_batch(small)) and labelled(ch.figure_lalc_large_batch(large))
    page.claims.section("paik2023-lalc", "LALC")
    ch.check_lalc(page, tuning, small, large)
    rows = page.claims.rows
    assert [r.kind for r in rows] == [PAPER, RECONSTRUCTION, RECONSTRUCTION, RECONSTRUCTION, MACHINERY]
    assert all("LARC" in r.note for r in rows[1:4])


def test_lalc_is_larc_clip_step_for_step():
    assert ch._lalc_equals_larc_clip() == 0.0


# ------------------------------------------------------------------------------------ 6. three ways

def test_three_ways_agree_and_make_a_machinery_row(page):
    S = ch.settings("smoke")
    table = ch.measure_three_ways(S, page.gen)
    assert table.shape == (S.three_ways, 3)
    assert (table.max(axis=1) / table.min(axis=1) - 1 < 0.06).all()
    page.claims.section("paik2023-three-ways", "three ways")
    ch.check_three_ways(page, table)
    assert page.claims.rows[0].kind == MACHINERY
