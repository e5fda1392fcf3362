"""Explosion rates at initialization, the correlation measure and the training tracker."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from gradprobe import models, rates, theory, vgg


def mlp_batch(seed, width=256, n=256):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=g), torch.randint(0, 10, (n,), generator=g)


# finite width and batch lower the measured BN rate by a few percent (the spec measured 1.454 for ReLU
# at width 512); 5% covers width 256 with a batch of 256
@pytest.mark.parametrize("act, norm", [("relu", "batch"), ("tanh", "batch"), ("relu", "layer"), ("dropout", "batch")])
def test_mlp_rate_matches_prediction(act, norm, tol=0.05):
    torch.manual_seed(0)
    measured = []
    for s in range(2):
        net = models.mlp(20, 256, act, norm=norm, out_dim=10, generator=torch.Generator().manual_seed(s))
        x, y = mlp_batch(s)
        measured.append(rates.explosion_rate(net, x, y).rate)
    assert abs(np.mean(measured) - rates.predicted_rate(act, norm)) < tol * rates.predicted_rate(act, norm)


def test_mlp_rates_are_seeded():
    import gradprobe
    a = rates.mlp_rates("tanh", "batch", depth=6, width=32, batch=64, repeats=2, generators=gradprobe.seed(1))
    b = rates.mlp_rates("tanh", "batch", depth=6, width=32, batch=64, repeats=2, generators=gradprobe.seed(1))
    assert a.shape == (2,) and np.array_equal(a, b) and a[0] != a[1]


def test_predicted_rate_values():
    assert math.isclose(rates.predicted_rate("relu"), math.pi / (math.pi - 1), rel_tol=1e-9)
    assert math.isclose(rates.predicted_rate("relu", "layer"), 1.0, rel_tol=1e-9)
    assert math.isclose(rates.predicted_rate("tanh", "layer"), theory.explosion_rate("tanh"), rel_tol=1e-9)
    assert math.isclose(rates.predicted_rate("relu", width_ratio=2.0), 2 * math.pi / (math.pi - 1), rel_tol=1e-9)
    assert rates.predicted_rate("dropout", "layer") == 1.0
    with pytest.raises(ValueError, match="norm must be 'batch' or 'layer'"):
        rates.predicted_rate("relu", "group")
    with pytest.raises(ValueError, match="width_ratio"):
        rates.predicted_rate("relu", width_ratio=0)


def test_segmented_fit_recovers_rate_across_jumps():
    # Var(g) = c_s · 1.3^(−n) with a jump of ×7 and ×0.1 between segments
    n = np.arange(30)
    seg = [0] * 10 + [1] * 12 + [2] * 8
    jump = np.array([1.0] * 10 + [7.0] * 12 + [0.1] * 8)
    values = 5.0 * jump * 1.3 ** (-n)
    fit = rates.fit_segmented_rate(values, seg)
    assert math.isclose(fit.rate, 1.3, rel_tol=1e-9) and math.isclose(fit.r2, 1.0)
    assert math.isclose(fit.intercept, 5.0, rel_tol=1e-9)
    assert rates.segments_of([(4,), (4,), (8,), (8,), (4,)]) == [0, 0, 1, 1, 2]
    # with input shapes: the data-fed first layer and a layer fed through a pooling stand alone
    outs = [(8, 16, 16), (8, 16, 16), (8, 16, 16), (8, 8, 8), (8, 8, 8), (8, 8, 8)]
    ins = [(3, 16, 16), (8, 16, 16), (8, 16, 16), (8, 8, 8), (8, 8, 8), (8, 8, 8)]
    assert rates.segments_of(outs, ins) == [0, 1, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="at least 2 layers"):
        rates.fit_segmented_rate([1.0, 2.0], [0, 1])
    with pytest.raises(ValueError, match="finite positive"):
        rates.fit_segmented_rate([1.0, 0.0, 2.0])


def test_width_ratio_factor():
    # alternating widths 128, 384: each pair of consecutive layers changes Var(g) by r·n_out/n_in
    g = torch.Generator().manual_seed(0)
    widths = [128, 384] * 6
    layers = [models.Layer(a, b, "relu", "batch", "he", False, 0.5, g) for a, b in zip(widths, widths[1:])]
    net = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
    ratios = []
    for s in range(4):
        x = torch.randn(512, 128, generator=g)
        v, _, _ = rates.gradient_variances(net, x, torch.randint(0, 10, (512,), generator=g),
                                        layers=[m.linear for m in layers])
        ratios.append((v[:-1] / v[1:]).numpy())
    ratio = np.mean(ratios, axis=0)
    predicted = [rates.predicted_rate("relu", width_ratio=widths[k + 2] / widths[k + 1]) for k in range(len(ratio))]
    np.testing.assert_allclose(ratio[2:], predicted[2:], rtol=0.08)


def test_vgg_rate_and_layers():
    g = torch.Generator().manual_seed(0)
    net = vgg.vgg([8, "M", 16, 16, 16, 16, 16, 16], norm="batch", generator=g)
    layers = rates.rate_layers(net)
    assert layers == net.convs()  # the classifier is left out
    x = torch.randn(32, 3, 16, 16, generator=g)
    r = rates.explosion_rate(net, x, torch.randint(0, 10, (32,), generator=g))
    assert r.segments == [0, 1, 2, 2, 2, 2, 2] and r.layers == 7
    assert 1.2 < r.rate < 1.7
    assert math.isclose(r.norm_rate, math.sqrt(r.rate))


def test_gradient_variances_leave_grads_alone_and_check_arguments():
    net = models.mlp(4, 16, "relu", norm="batch", out_dim=3)
    x = torch.randn(8, 16)
    net(x).sum().backward()
    before = [p.grad.clone() for p in net.parameters()]
    rates.gradient_variances(net, x, grad_output=torch.randn(8, 3))
    assert all(torch.equal(a, p.grad) for a, p in zip(before, net.parameters()))
    with pytest.raises(ValueError, match="exactly one of target"):
        rates.gradient_variances(net, x)
    with pytest.raises(ValueError, match="grad_output has shape"):
        rates.gradient_variances(net, x, grad_output=torch.randn(8, 4))


def test_correlation_is_one_for_independent_inputs_and_large_when_aligned():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 32, bias=True)
    nn.init.normal_(lin.weight, generator=g)
    x = torch.randn(4096, 64, generator=g) * torch.linspace(0.5, 2.0, 64)  # independent, unequal variances
    assert abs(float(rates.correlation(lin, x, [lin])[0]) - 1.0) < 0.05
    # inputs along one direction u = (±1, ..., ±1), and weights whose rows are u:
    # Var[y] = ‖u‖⁴ Var[a] while Σ_j u_j⁴ Var[a] = 64 Var[a], so ρ = 64
    u = torch.randn(64, generator=g).sign()
    with torch.no_grad():
        lin.weight.copy_(u.expand(32, 64))
    aligned = torch.randn(4096, 1, generator=g) * u
    assert abs(float(rates.correlation(lin, aligned, [lin])[0]) - 64) < 64 * 0.05


def test_correlation_handles_conv_padding():
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    nn.init.normal_(conv.weight, generator=g)
    x = torch.randn(512, 8, 6, 6, generator=g)  # 6×6: a third of the taps fall on padding at the border
    assert abs(float(rates.correlation(conv, x, [conv])[0]) - 1.0) < 0.05
    with pytest.raises(ValueError, match="Linear, Conv1d and Conv2d"):
        rates._uncorrelated_variance(nn.Conv3d(1, 1, 1), torch.ones(1, 1, 1, 1))


def test_tracker_measures_without_side_effects():
    from gradprobe.train import fit

    g = torch.Generator().manual_seed(0)
    net = models.mlp(6, 32, "relu", norm="batch", in_dim=20, out_dim=4, generator=g)
    x, y = torch.randn(256, 20, generator=g), torch.randint(0, 4, (256,), generator=g)
    probe = rates.RateTracker(x[:64], y[:64], steps=[0, 2, 4])
    reference = models.mlp(6, 32, "relu", norm="batch", in_dim=20, out_dim=4)
    reference.load_state_dict(net.state_dict())
    opt_a = torch.optim.SGD(net.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(reference.parameters(), lr=0.1)
    fit(net, x, y, steps=5, batch_size=32, optimizer=opt_a, generator=torch.Generator().manual_seed(3), callback=probe)
    fit(reference, x, y, steps=5, batch_size=32, optimizer=opt_b, generator=torch.Generator().manual_seed(3))
    for (name, a), b in zip(net.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name  # the probes changed neither the update nor BN statistics
    assert probe.measured_steps == [0, 2, 4] and len(probe.rates) == 3
    assert probe.rates[0] > 1.2 and probe.correlations[0].shape == (6,)
    assert probe.mean_correlation().shape == (3,)


def test_rate_layers_errors_and_model_hook():
    with pytest.raises(ValueError, match="too few"):
        rates.rate_layers(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)))

    class WithHook(nn.Sequential):
        def rate_layers(self):
            return [self[1]]

    net = WithHook(nn.Linear(3, 3), nn.Linear(3, 2))
    assert rates.rate_layers(net) == [net[1]]
