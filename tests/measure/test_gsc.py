"""gradprobe.measure.gsc, Philipp et al.'s measures: GSC exact and estimated, collapsing domain,
dilution."""
import pytest
import torch

from gradprobe.measure import gsc
from gradprobe.measure.hooks import weight_layers
from gradprobe.measure.rates import fit_rate
from gradprobe.networks.mlp import PreActBlock, mlp
from gradprobe.theory.gaussian import norm_rate


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
    net = mlp(5, 8, out_dim=4, generator=gen(), **kw)
    x = torch.randn(6, 8, generator=gen(1))
    layers = weight_layers(net)
    exact = torch.tensor([gsc.gsc_exact(net, x, m) for m in layers])
    estimate = gsc.gsc_profile(net, x, probes=1000, generator=gen(2))
    assert torch.allclose(estimate, exact, rtol=0.04)


def test_loss_gsc_is_exact():
    net = mlp(4, 6, "relu", norm="batch", out_dim=3, generator=gen())
    x = torch.randn(5, 6, generator=gen(1))
    loss = lambda out: out.pow(2).mean()
    layers = weight_layers(net)
    profile = gsc.gsc_profile(net, x, loss=loss)
    for k in (0, 2):
        assert float(profile[k]) == pytest.approx(gsc.gsc_exact(net, x, layers[k], loss=loss), rel=1e-4)


def test_gsc_to_an_inner_target():
    net = mlp(5, 6, "tanh", init="lecun", generator=gen())
    x = torch.randn(5, 6, generator=gen(1))
    layers = weight_layers(net)
    exact = gsc.gsc_exact(net, x, layers[0], target=layers[2])
    estimate = gsc.gsc_profile(net, x, [layers[0]], target=layers[2], probes=2000, generator=gen(2))
    assert float(estimate[0]) == pytest.approx(exact, rel=0.04)


def test_profile_leaves_grads_and_running_stats_alone():
    net = mlp(4, 6, "relu", norm="batch", generator=gen())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    gsc.gsc_profile(net, torch.randn(8, 6, generator=gen(1)), generator=gen(2))
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="probes"):
        gsc.gsc_profile(net, torch.randn(8, 6), probes=0)
    with pytest.raises(ValueError, match="target or loss"):
        gsc.gsc_profile(net, torch.randn(8, 6), target=net[0].linear, loss=lambda o: o.sum())


def test_batch_relu_rate_is_the_theory():
    net = mlp(49, 100, "relu", norm="batch", out_dim=100, generator=gen())
    modules, depths = gsc.gsc_points(net)
    assert depths == list(range(1, 51))
    profile = gsc.gsc_profile(net, torch.randn(100, 100, generator=gen(1)), modules, generator=gen(2))
    assert fit_rate(profile, reverse=True).rate == pytest.approx(norm_rate("relu"), rel=0.03)


def test_looks_linear_has_gsc_one():
    net = mlp(19, 20, "relu", init="looks_linear", out_dim=20, generator=gen())
    x = torch.randn(30, 20, generator=gen(1))
    modules, _ = gsc.gsc_points(net)
    for m in modules[::6]:
        assert gsc.gsc_exact(net, x, m) == pytest.approx(1.0, abs=0.03)


def test_points_of_a_resnet_are_its_residual_stream():
    net = mlp(9, 8, "tanh", residual="preact", init="lecun", in_dim=5, out_dim=3, generator=gen())
    modules, depths = gsc.gsc_points(net)
    blocks = [m for m in net.modules() if isinstance(m, PreActBlock)]
    assert modules == [net[0].linear] + blocks + [net[-1]] and depths == [1, 3, 5, 7, 9, 10]


def test_sign_diversity_and_std():
    z = torch.tensor([[1.0, 2.0, -1.0], [2.0, 3.0, -2.0], [-1.0, 4.0, -3.0], [-2.0, 5.0, -4.0]])
    assert float(gsc.sign_diversity(z)) == pytest.approx((0.5 + 0 + 0) / 3)
    assert float(gsc.preactivation_std(z)) == pytest.approx(float(z.std(0, unbiased=False).mean()))
    with pytest.raises(ValueError, match="batch"):
        gsc.preactivation_std(torch.ones(1, 3))


def test_domain_stats_see_tanh_and_relu_collapse():
    x = torch.randn(100, 50, generator=gen(1))
    tanh = gsc.domain_stats(mlp(39, 50, "tanh", init="lecun", out_dim=50, generator=gen()), x)
    assert len(tanh.std) == 39 and tanh.std[-1] < 0.3 * tanh.std[0]          # the pre-activations shrink
    relu = gsc.domain_stats(mlp(39, 50, "relu", out_dim=50, generator=gen()), x)
    assert relu.sign_diversity[0] > 0.4 and relu.sign_diversity[-1] < 0.15   # units stop switching
    bn = gsc.domain_stats(mlp(9, 50, "relu", norm="batch", out_dim=50, generator=gen()), x)
    assert torch.allclose(bn.std, torch.ones(9), atol=1e-3) and torch.allclose(bn.qm, torch.ones(9), atol=1e-3)


def test_dilution_formula_limits():
    assert gsc.dilution_prediction(0.0, 3.0) == pytest.approx(3.0)
    assert gsc.dilution_prediction(1e4, 3.0) == pytest.approx(1.0, abs=1e-6)
    assert gsc.dilution(torch.ones(4) * 3, torch.ones(4)) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="zero"):
        gsc.dilution(torch.ones(3), torch.zeros(3))


def test_residual_check_identities_and_exact_block_gsc():
    net = mlp(7, 10, "relu", norm="batch", residual="preact", out_dim=10, generator=gen())
    x = torch.randn(12, 10, generator=gen(1))
    checks = gsc.residual_checks(net, x, probes=500, generator=gen(2))
    assert len(checks) == 3
    for c in checks:
        # the dilution formula is exact up to the two Pythagorean errors
        lhs = c.gsc_block ** 2 * (1 + c.forward_error)
        rhs = (c.k ** 2 + c.gsc_residual ** 2) / (c.k ** 2 + 1) * (1 + c.jacobian_error)
        assert lhs == pytest.approx(rhs, rel=0.03)
    # block 1's GSC against the exact Jacobian from block 0's output to block 1's output
    blocks = [m for m in net.modules() if isinstance(m, PreActBlock)]
    exact = gsc.gsc_exact(net, x, blocks[0], target=blocks[1])
    assert checks[1].gsc_block == pytest.approx(exact, rel=0.03)
    with pytest.raises(ValueError, match="PreActBlock"):
        gsc.residual_checks(mlp(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="shape"):
        gsc.residual_check(lambda z: z[:, :2], torch.randn(3, 4))


def test_tracker_records_every_n_steps():
    net = mlp(3, 6, "relu", out_dim=2, generator=gen())
    tracker = gsc.GSCTracker(torch.randn(10, 6, generator=gen(1)), every=2, generator=gen(2))
    for step in range(5):
        tracker(step, net)
    assert tracker.steps == [0, 2, 4] and tracker.table().shape == (3, 4)
    with pytest.raises(ValueError, match="every"):
        gsc.GSCTracker(torch.randn(2, 6), every=0)


# ----------------------------------------------------------------------------- pseudo-linearity, cosine, cross term
def test_pseudo_linearity_of_linear_relu_and_collapsed_units():
    import math

    from gradprobe.measure.gsc import pseudo_linearity
    z = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0))
    # a linear (or affine) function is exactly its own best fit
    assert float(pseudo_linearity(z, lambda t: 3 * t - 1)) == pytest.approx(0.0, abs=1e-6)
    # ReLU on N(0, 1): residual variance Var(relu) − Cov²/Var(z) = 1/2 − 1/(2π) − 1/4, over E[z²] = 1
    assert float(pseudo_linearity(z, torch.relu)) == pytest.approx(math.sqrt(0.25 - 1 / (2 * math.pi)), abs=0.005)
    # all inputs on one side of the kink (a collapsed ReLU unit), or a dead unit: linear
    assert float(pseudo_linearity(z.abs() + 1, torch.relu)) == pytest.approx(0.0, abs=1e-6)
    assert float(pseudo_linearity(-z.abs() - 1, torch.relu)) == 0.0
    # the measure is scale-free for ReLU
    assert float(pseudo_linearity(7 * z, torch.relu)) == pytest.approx(float(pseudo_linearity(z, torch.relu)), rel=1e-4)
    with pytest.raises(ValueError, match="at least 3 inputs"):
        pseudo_linearity(torch.ones(2, 4), torch.relu)


def test_input_cosine_against_every_pair():
    from gradprobe.measure.gsc import input_cosine
    z = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    u = z / z.norm(dim=1, keepdim=True)
    pairs = [float(u[i] @ u[j]) for i in range(7) for j in range(7) if i != j]
    assert float(input_cosine(z)) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)
    assert float(input_cosine(torch.ones(4, 3) * torch.tensor([[1.0], [2.0], [3.0], [0.5]]))) == pytest.approx(1.0)
    assert float(input_cosine(torch.eye(4))) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least 2 inputs"):
        input_cosine(torch.ones(1, 3))


def test_domain_stats_geometry_is_optional():
    from gradprobe.measure.gsc import domain_stats
    net = mlp(6, 16, "relu", generator=torch.Generator().manual_seed(0))
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    plain = domain_stats(net, x)
    assert plain.pseudo_linearity is None and plain.cosine is None
    full = domain_stats(net, x, geometry=True)
    assert full.pseudo_linearity.shape == full.cosine.shape == (6,) and torch.equal(full.std, plain.std)
    assert bool((full.cosine[1:] >= full.cosine[0] - 0.05).all())   # ReLU layers align the inputs


def test_pythagorean_cross_term_spread_is_one_over_effective_dimension():
    from gradprobe.measure.gsc import pythagorean_cross_term
    g = torch.Generator().manual_seed(2)
    s, h = torch.randn(12, 20, generator=g), torch.relu(torch.randn(12, 20, generator=g) + 0.5)
    w = torch.randn(20, 20, generator=g)
    cos, d_eff = pythagorean_cross_term(s, h, h @ w.T)
    r = h @ w.T
    assert cos == pytest.approx(float((s * r).sum() / (s.norm() * r.norm())), rel=1e-5)
    assert d_eff == pytest.approx(20 * float(s.pow(2).sum() * h.pow(2).sum() / (s.T @ h).pow(2).sum()), rel=1e-5)
    # every input mapped to one direction: d_eff is the width, its lower bound
    one = torch.randn(1, 20, generator=g).repeat(12, 1)
    assert pythagorean_cross_term(one, one.abs(), one @ w.T)[1] == pytest.approx(20.0, rel=1e-6)
    assert d_eff >= 20
    # over Gaussian last weights, cos·√d_eff has unit variance (mean square within sampling error)
    z = torch.tensor([pythagorean_cross_term(s, h, h @ torch.randn(20, 20, generator=g).T) for _ in range(1000)])
    standardized = z[:, 0] * z[:, 1].sqrt()
    assert abs(float(standardized.mean())) < 0.12 and 0.8 < float(standardized.pow(2).mean()) < 1.2
    with pytest.raises(ValueError, match="same shape"):
        pythagorean_cross_term(s, h, torch.ones(12, 3))
