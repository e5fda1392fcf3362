"""gradprobe.measure.correlation: ρ = 1 for inputs independent of the weights, large when aligned."""
import pytest
import torch
from torch import nn

from gradprobe.measure.correlation import correlation, uncorrelated_variance


def test_correlation_is_one_for_independent_inputs_and_large_when_aligned():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 32, bias=True)
    nn.init.normal_(lin.weight, generator=g)
    x = torch.randn(4096, 64, generator=g) * torch.linspace(0.5, 2.0, 64)  # independent, unequal variances
    assert abs(float(correlation(lin, x, [lin])[0]) - 1.0) < 0.05
    # inputs along one direction u = (±1, ..., ±1), and weights whose rows are u:
    # Var[y] = ‖u‖⁴ Var[a] while Σ_j u_j⁴ Var[a] = 64 Var[a], so ρ = 64
    u = torch.randn(64, generator=g).sign()
    with torch.no_grad():
        lin.weight.copy_(u.expand(32, 64))
    aligned = torch.randn(4096, 1, generator=g) * u
    assert abs(float(correlation(lin, aligned, [lin])[0]) - 64) < 64 * 0.05


def test_correlation_handles_conv_padding():
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    nn.init.normal_(conv.weight, generator=g)
    x = torch.randn(512, 8, 6, 6, generator=g)  # 6×6: a third of the taps fall on padding at the border
    assert abs(float(correlation(conv, x, [conv])[0]) - 1.0) < 0.05
    with pytest.raises(ValueError, match="Linear, Conv1d and Conv2d"):
        uncorrelated_variance(nn.Conv3d(1, 1, 1), torch.ones(1, 1, 1, 1))


def test_backward_correlation_is_one_for_independent_gradients_and_large_when_aligned():
    from gradprobe.measure.correlation import backward_correlation

    g = torch.Generator().manual_seed(2)
    lin = nn.Linear(32, 64, bias=False)
    nn.init.normal_(lin.weight, generator=g)
    grad_out = torch.randn(4096, 64, generator=g) * torch.linspace(0.5, 2.0, 64)
    assert backward_correlation(lin, grad_out, grad_out @ lin.weight.detach()) == pytest.approx(1.0, abs=0.05)
    # output gradients along one column direction c of W = c uᵀ: Wᵀg = u (cᵀg), κ = ‖c‖⁴/Σc⁴ = 64
    c = torch.randn(64, generator=g).sign()
    with torch.no_grad():
        lin.weight.copy_(torch.outer(c, torch.ones(32)))
    aligned = torch.randn(4096, 1, generator=g) * c
    assert backward_correlation(lin, aligned, aligned @ lin.weight.detach()) == pytest.approx(64, rel=0.05)


def test_backward_uncorrelated_variance_of_a_conv_is_the_transposed_conv_with_squared_weights():
    from gradprobe.measure.correlation import backward_uncorrelated_variance

    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    nn.init.normal_(conv.weight, generator=g)
    v = torch.rand(6, 5, 5, generator=g)
    got = backward_uncorrelated_variance(conv, v)[0]
    # independent computation: Σ over outputs (c, p) and taps of W² · v at the positions fed by (j, q)
    w2 = conv.weight.detach().double() ** 2
    want = torch.zeros(4, 5, 5, dtype=torch.float64)
    for c in range(6):
        for y in range(5):
            for x in range(5):
                for dy in range(3):
                    for dx in range(3):
                        yy, xx = y + dy - 1, x + dx - 1
                        if 0 <= yy < 5 and 0 <= xx < 5:
                            want[:, yy, xx] += w2[c, :, dy, dx] * v[c, y, x]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_rate_factors_multiply_to_the_measured_ratio_and_match_theory_at_init():
    import math

    from gradprobe.measure.correlation import rate_factors
    from gradprobe.networks.mlp import mlp

    g = torch.Generator().manual_seed(4)
    net = mlp(8, 256, "relu", norm="batch", generator=g)
    x = torch.randn(1024, 256, generator=g)
    u = torch.randn(1024, 256, generator=g)
    f = rate_factors(net, x, grad_output=u)
    assert f.ratio.shape == (7,) and f.grad_var.shape == (8,)
    np_ratio = f.grad_var[:-1] / f.grad_var[1:]
    assert f.product() == pytest.approx(np_ratio, rel=1e-9)       # an identity, not an approximation
    hidden = slice(1, None)                                          # layer 1 is fed by the data
    var_relu = (math.pi - 1) / (2 * math.pi)
    assert f.rho[hidden] == pytest.approx(1.0, abs=0.08)
    assert f.kappa[hidden] == pytest.approx(1.0, abs=0.08)
    assert f.act[hidden] == pytest.approx(0.5, abs=0.03)
    assert f.input_var[hidden] == pytest.approx(var_relu, rel=0.05)
    assert f.forward_gain == pytest.approx(2.0, rel=0.05) and f.gain == pytest.approx(2.0, rel=0.05)
    assert f.bn[hidden] == pytest.approx(1.0, abs=0.05)
    assert float(f.ratio[hidden].mean()) == pytest.approx(math.pi / (math.pi - 1), rel=0.05)
    assert all(not p.requires_grad or p.grad is None for p in net.parameters())
    with pytest.raises(ValueError, match="exactly one of target"):
        rate_factors(net, x)


def test_rate_factors_split_the_normalization_factor_into_gamma_and_spread():
    from gradprobe.measure.correlation import rate_factors
    from gradprobe.networks.mlp import mlp

    g = torch.Generator().manual_seed(5)
    net = mlp(4, 64, "relu", norm="batch", generator=g)
    x = torch.randn(512, 64, generator=g)
    u = torch.randn(512, 64, generator=g)
    before = rate_factors(net, x, grad_output=u)
    assert before.bn_gamma == pytest.approx(1.0) and before.bn_spread == pytest.approx(1.0, abs=0.1)
    with torch.no_grad():
        net[1].norm.weight.fill_(3.0)          # γ = 3 in layer 2: Var(g_2)/Var(g_3) grows 9-fold
    after = rate_factors(net, x, grad_output=u)
    assert after.bn_gamma[1] == pytest.approx(9.0)
    assert after.ratio[1] / before.ratio[1] == pytest.approx(9.0, rel=1e-6)
    assert after.bn[1] / before.bn[1] == pytest.approx(9.0, rel=1e-6)
