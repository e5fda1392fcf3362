"""gradprobe.measure.linearize: a trained network's top layers linearized around its initial
weights (torch.func.jvp)."""
import copy
import math

import pytest
import torch

from gradprobe.measure import linearize
from gradprobe.networks.mlp import mlp


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def moved(net, eps, seed=5):
    """A copy of ``net`` with every parameter moved by eps × a fixed random direction."""
    out = copy.deepcopy(net)
    g = gen(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(eps * torch.randn(p.shape, generator=g))
    return out


def test_unmoved_network_is_its_own_linearization():
    net = mlp(5, 8, "relu", norm="batch", in_dim=5, out_dim=3, generator=gen())
    x = torch.randn(10, 5, generator=gen(1))
    init = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        for m in range(len(list(net.children())) + 1):
            assert torch.allclose(linearize.linearized_top(net, init, m)(x), net(x), atol=1e-5)


def test_m_zero_is_the_trained_network_and_a_linear_head_is_exact():
    net = mlp(5, 8, "tanh", init="lecun", residual="preact", in_dim=5, out_dim=3, generator=gen())
    init = copy.deepcopy(net.state_dict())
    trained = moved(net, 0.3)
    x = torch.randn(10, 5, generator=gen(1))
    with torch.no_grad():
        assert torch.allclose(linearize.linearized_top(trained, init, 0)(x), trained(x), atol=1e-6)
        # the head is linear in its weights: its first-order expansion is exact
        assert torch.allclose(linearize.linearized_top(trained, init, 1)(x), trained(x), atol=1e-5)


def test_linearization_error_is_second_order():
    net = mlp(4, 8, "tanh", init="lecun", in_dim=5, out_dim=3, generator=gen())
    init = copy.deepcopy(net.state_dict())
    x = torch.randn(10, 5, generator=gen(1))
    errs = []
    with torch.no_grad():
        for eps in (0.02, 0.01):
            t = moved(net, eps)
            errs.append(float((linearize.linearized_top(t, init, 3)(x) - t(x)).abs().max()))
    assert 3.0 < errs[0] / errs[1] < 5.0          # halving the step quarters the error


def test_errors_counts_and_effective_depth():
    net = mlp(7, 8, "relu", norm="batch", residual="preact", in_dim=5, out_dim=3, generator=gen())
    assert [linearize.linear_layers_in_top(net, m) for m in range(6)] == [0, 1, 3, 5, 7, 8]
    assert [linearize.children_for_layers(net, c) for c in (0, 1, 2, 3, 8)] == [0, 1, 2, 2, 5]
    with pytest.raises(ValueError, match="only 8"):
        linearize.children_for_layers(net, 9)
    init = copy.deepcopy(net.state_dict())
    x, y = torch.randn(40, 5, generator=gen(1)), torch.randint(0, 3, (40,), generator=gen(2))
    errors = linearize.linearized_errors(moved(net, 0.2), init, x, y, [0, 1, 5], batch_size=20)
    assert errors.shape == (3,) and bool(((errors >= 0) & (errors <= 1)).all())
    with torch.no_grad():
        t = moved(net, 0.2)
        full = linearize.linearized_top(t, init, 0)
        expected = sum(int((full(x[i:i + 20]).argmax(1) != y[i:i + 20]).sum()) for i in (0, 20)) / 40
    assert float(errors[0]) == pytest.approx(expected)
    assert linearize.effective_depth(50, [0, 1, 5, 20], [0.3, 0.3, 0.31, 0.5]) == 45
    assert linearize.effective_depth(50, [0, 1, 5], [0.3, 0.4, 0.3]) == 50
    with pytest.raises(ValueError, match="starting with 0"):
        linearize.effective_depth(50, [1, 5], [0.3, 0.3])
    with pytest.raises(ValueError, match="m must be"):
        linearize.linearized_top(net, init, 99)
    with pytest.raises(ValueError, match="initial_state"):
        linearize.linearized_top(net, {}, 2)


def test_effective_depth_kept_measures_against_the_improvement_over_chance():
    # improvement 0.9 − 0.3 = 0.6; kept: 1, 1, 0.95, 0.75 (at 0, 1, 2, 4 layers): 90% is crossed
    # between 2 and 4 layers, at 2 + 2·(0.95 − 0.9)/(0.95 − 0.75) = 2.5
    errors = [0.30, 0.30, 0.33, 0.45]
    assert linearize.effective_depth_kept(10, [0, 1, 2, 4], errors, chance=0.9) == pytest.approx(7.5)
    # every count keeps the improvement: the whole grid is linearizable
    assert linearize.effective_depth_kept(10, [0, 5, 10], [0.3, 0.3, 0.31], chance=0.9) == 0.0
    # a network that has not left chance has no effective depth (not "all layers")
    assert math.isnan(linearize.effective_depth_kept(50, [0, 1, 3], [0.85, 0.86, 0.9], chance=0.9))
    assert linearize.effective_depth_kept(50, [0, 1, 3], [0.85, 0.86, 0.9], chance=0.9, min_improvement=0.01) < 50
    with pytest.raises(ValueError, match="starting with 0"):
        linearize.effective_depth_kept(10, [1, 2], [0.3, 0.4], chance=0.9)
    with pytest.raises(ValueError, match="increasing"):
        linearize.effective_depth_kept(10, [0, 2, 2], [0.3, 0.4, 0.5], chance=0.9)


def test_layer_residuals_see_only_the_layers_that_moved():
    net = mlp(4, 8, "relu", norm="batch", in_dim=5, out_dim=3, generator=gen())
    init = copy.deepcopy(net.state_dict())
    x = torch.randn(16, 5, generator=gen(1))
    assert torch.allclose(linearize.layer_residuals(net, init, x), torch.zeros(5))
    with torch.no_grad():
        net[1].linear.weight.mul_(1.5)       # a rescaling that the BatchNorm after it undoes exactly:
    ratios = linearize.layer_residuals(net, init, x)
    assert float(ratios[1]) == pytest.approx(0.0, abs=1e-5)  # the layer's function has not changed
    with torch.no_grad():
        net[2].linear.weight.add_(0.3 * torch.randn(8, 8, generator=gen(3)))
    ratios = linearize.layer_residuals(net, init, x)
    # only layer 2 has a residual; the layers above see a new input but compute their initial
    # function of it
    assert float(ratios[2]) > 0.05 and torch.allclose(ratios[[0, 1, 3, 4]], torch.zeros(4), atol=1e-5)
    with pytest.raises(ValueError, match="initial_state lacks"):
        linearize.layer_residuals(net, {}, x)
