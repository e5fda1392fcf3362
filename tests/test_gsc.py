"""Philipp et al.'s measures: GSC exact and estimated, collapsing domain, dilution."""
import math

import pytest
import torch

from gradprobe import gsc, measure, models, theory

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_qm_norm():
    assert float(gsc.qm_norm(torch.eye(7))) == pytest.approx(1.0)
    assert float(gsc.qm_norm(torch.full((5,), 3.0))) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="at least one column"):
        gsc.qm_norm(torch.tensor(2.0))


def test_gsc_from_jacobian_is_scale_invariant():
    a = torch.randn(4, 6, generator=gen())
    x = torch.randn(6, generator=gen(1))
    # f_l = A f_k: scaling f_l or f_k does not change GSC
    g1 = gsc.gsc_from_jacobian(a, x, a @ x)
    g2 = gsc.gsc_from_jacobian(10 * a, x, 10 * a @ x)
    assert float(g1) == pytest.approx(float(g2), rel=1e-6)
    assert float(gsc.gsc_from_jacobian(torch.eye(6), x, x)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="entries"):
        gsc.gsc_from_jacobian(a, x, x)


@pytest.mark.parametrize("kw", [dict(activation="relu"), dict(activation="relu", norm="batch"),
                                dict(activation="tanh", norm="layer", init="lecun"),
                                dict(activation="selu", norm="batch", residual="preact", init="lecun")])
def test_probe_estimate_matches_exact_jacobian(kw):
    net = models.mlp(5, 8, out_dim=4, generator=gen(), **kw)
    x = torch.randn(6, 8, generator=gen(1))
    layers = measure.weight_layers(net)
    exact = torch.tensor([gsc.gsc_exact(net, x, m) for m in layers])
    estimate = gsc.gsc_profile(net, x, probes=1000, generator=gen(2))
    assert torch.allclose(estimate, exact, rtol=0.04)


def test_loss_gsc_is_exact():
    net = models.mlp(4, 6, "relu", norm="batch", out_dim=3, generator=gen())
    x = torch.randn(5, 6, generator=gen(1))
    loss = lambda out: out.pow(2).mean()
    layers = measure.weight_layers(net)
    profile = gsc.gsc_profile(net, x, loss=loss)
    for k in (0, 2):
        assert float(profile[k]) == pytest.approx(gsc.gsc_exact(net, x, layers[k], loss=loss), rel=1e-4)


def test_gsc_to_an_inner_target():
    net = models.mlp(5, 6, "tanh", init="lecun", generator=gen())
    x = torch.randn(5, 6, generator=gen(1))
    layers = measure.weight_layers(net)
    exact = gsc.gsc_exact(net, x, layers[0], target=layers[2])
    estimate = gsc.gsc_profile(net, x, [layers[0]], target=layers[2], probes=2000, generator=gen(2))
    assert float(estimate[0]) == pytest.approx(exact, rel=0.04)


def test_profile_leaves_grads_and_running_stats_alone():
    net = models.mlp(4, 6, "relu", norm="batch", generator=gen())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    gsc.gsc_profile(net, torch.randn(8, 6, generator=gen(1)), generator=gen(2))
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="probes"):
        gsc.gsc_profile(net, torch.randn(8, 6), probes=0)
    with pytest.raises(ValueError, match="target or loss"):
        gsc.gsc_profile(net, torch.randn(8, 6), target=net[0].linear, loss=lambda o: o.sum())


def test_batch_relu_rate_is_the_theory():
    net = gsc.architecture("batch-ReLU", 50, 100, generator=gen())
    modules, depths = gsc.gsc_points(net)
    assert depths == list(range(1, 51))
    profile = gsc.gsc_profile(net, torch.randn(100, 100, generator=gen(1)), modules, generator=gen(2))
    assert measure.fit_rate(profile, reverse=True).rate == pytest.approx(theory.norm_rate("relu"), rel=0.03)


def test_looks_linear_has_gsc_one():
    net = gsc.architecture("looks-linear ReLU", 20, 20, generator=gen())
    x = torch.randn(30, 20, generator=gen(1))
    modules, _ = gsc.gsc_points(net)
    for m in modules[::6]:
        assert gsc.gsc_exact(net, x, m) == pytest.approx(1.0, abs=0.03)


def test_architectures_and_points():
    assert len(gsc.ARCHITECTURES) == 15
    net = gsc.architecture("tanh ResNet", 10, 8, in_dim=5, out_dim=3, generator=gen())
    modules, depths = gsc.gsc_points(net)
    assert depths == [1, 3, 5, 7, 9, 10] and len(modules) == 6
    with pytest.raises(ValueError, match="unknown architecture"):
        gsc.architecture("gelu", 10, 8)
    with pytest.raises(ValueError, match="linear_layers"):
        gsc.architecture("ReLU", 1, 8)


def test_sign_diversity_and_std():
    z = torch.tensor([[1.0, 2.0, -1.0], [2.0, 3.0, -2.0], [-1.0, 4.0, -3.0], [-2.0, 5.0, -4.0]])
    assert float(gsc.sign_diversity(z)) == pytest.approx((0.5 + 0 + 0) / 3)
    assert float(gsc.preactivation_std(z)) == pytest.approx(float(z.std(0, unbiased=False).mean()))
    with pytest.raises(ValueError, match="batch"):
        gsc.preactivation_std(torch.ones(1, 3))


def test_domain_stats_see_tanh_and_relu_collapse():
    x = torch.randn(100, 50, generator=gen(1))
    tanh = gsc.domain_stats(gsc.architecture("tanh", 40, 50, generator=gen()), x)
    assert len(tanh.std) == 39 and tanh.std[-1] < 0.3 * tanh.std[0]          # the pre-activations shrink
    relu = gsc.domain_stats(gsc.architecture("ReLU", 40, 50, generator=gen()), x)
    assert relu.sign_diversity[0] > 0.4 and relu.sign_diversity[-1] < 0.15   # units stop switching
    bn = gsc.domain_stats(gsc.architecture("batch-ReLU", 10, 50, generator=gen()), x)
    assert torch.allclose(bn.std, torch.ones(9), atol=1e-3) and torch.allclose(bn.qm, torch.ones(9), atol=1e-3)


def test_dilution_formula_limits():
    assert gsc.dilution_prediction(0.0, 3.0) == pytest.approx(3.0)
    assert gsc.dilution_prediction(1e4, 3.0) == pytest.approx(1.0, abs=1e-6)
    assert gsc.dilution(torch.ones(4) * 3, torch.ones(4)) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="zero"):
        gsc.dilution(torch.ones(3), torch.zeros(3))


def test_residual_check_identities_and_exact_block_gsc():
    net = gsc.architecture("batch-ReLU ResNet", 8, 10, generator=gen())
    x = torch.randn(12, 10, generator=gen(1))
    checks = gsc.residual_checks(net, x, probes=500, generator=gen(2))
    assert len(checks) == 3
    for c in checks:
        # the dilution formula is exact up to the two Pythagorean errors
        lhs = c.gsc_block ** 2 * (1 + c.forward_error)
        rhs = (c.k ** 2 + c.gsc_residual ** 2) / (c.k ** 2 + 1) * (1 + c.jacobian_error)
        assert lhs == pytest.approx(rhs, rel=0.03)
    # block 1's GSC against the exact Jacobian from block 0's output to block 1's output
    blocks = [m for m in net.modules() if isinstance(m, models.PreActBlock)]
    exact = gsc.gsc_exact(net, x, blocks[0], target=blocks[1])
    assert checks[1].gsc_block == pytest.approx(exact, rel=0.03)
    with pytest.raises(ValueError, match="PreActBlock"):
        gsc.residual_checks(models.mlp(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="shape"):
        gsc.residual_check(lambda z: z[:, :2], torch.randn(3, 4))


def test_tracker_records_every_n_steps():
    net = models.mlp(3, 6, "relu", out_dim=2, generator=gen())
    tracker = gsc.GSCTracker(torch.randn(10, 6, generator=gen(1)), every=2, generator=gen(2))
    for step in range(5):
        tracker(step, net)
    assert tracker.steps == [0, 2, 4] and tracker.table().shape == (3, 4)
    with pytest.raises(ValueError, match="every"):
        gsc.GSCTracker(torch.randn(2, 6), every=0)


def test_rate_per_layer():
    depths = [1, 3, 5, 9]
    values = [2.0 ** (10 - d) for d in depths]        # grows by 2 per layer toward the input
    assert gsc.rate_per_layer(values, depths) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        gsc.rate_per_layer([1.0, 0.0], [1, 2])
    with pytest.raises(ValueError, match="one value per depth"):
        gsc.rate_per_layer([1.0, 2.0], [1, 2, 3])


def test_init_survey_shapes():
    s = gsc.init_survey("SELU ResNet", 2, linear_layers=10, width=12, batch=16, data=gen(1), weights=gen(2))
    assert s.gsc.shape == (2, 6) and s.depths == [1, 3, 5, 7, 9, 10]
    assert s.std.shape == (2, 8) and s.rates.shape == (2,)
    assert s.block_values("k").shape == (2, 4)
    plain = gsc.init_survey("ReLU", 1, linear_layers=6, width=8, batch=10, data=gen(1), weights=gen(2))
    assert plain.blocks == [[]] and plain.gsc.shape == (1, 6)
