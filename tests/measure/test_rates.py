"""gradprobe.measure.rates: the rate fitter, per-layer gradients, a network's explosion rate and
the training tracker."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe
from gradprobe.measure import rates
from gradprobe.measure.hooks import record
from gradprobe.networks.layers import Layer
from gradprobe.networks.mlp import mlp
from gradprobe.networks.vgg import vgg
from gradprobe.theory.gaussian import RELU_RATE, predicted_rate
from gradprobe.train.loop import fit


def test_fit_rate_recovers_a_known_rate():
    k = np.arange(30)
    fit_ = rates.fit_rate(3.0 * 1.2 ** k)
    assert fit_.rate == pytest.approx(1.2, rel=1e-9)
    assert fit_.intercept == pytest.approx(3.0, rel=1e-9)
    assert fit_.r2 == pytest.approx(1.0)
    assert fit_.predict([0, 2]) == pytest.approx([3.0, 3.0 * 1.44])
    back = rates.fit_rate(3.0 * 1.2 ** k, reverse=True)     # growth from the last value back to the first
    assert back.rate == pytest.approx(1 / 1.2, rel=1e-9)
    assert back.predict([0, 2]) == pytest.approx([3.0, 3.0 * 1.44])


def test_fit_rate_with_noise_reports_lower_r2():
    rng = np.random.default_rng(0)
    values = 1.1 ** np.arange(40) * np.exp(rng.normal(0, 0.3, 40))
    fit_ = rates.fit_rate(values)
    assert fit_.rate == pytest.approx(1.1, rel=0.02) and 0.5 < fit_.r2 < 1.0


def test_fit_rate_refuses_bad_values():
    with pytest.raises(ValueError, match="at least 2 values"):
        rates.fit_rate([1.0])
    with pytest.raises(ValueError, match="finite positive"):
        rates.fit_rate([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="finite positive"):
        rates.fit_rate([1.0, float("nan")])


def test_fit_rate_at_given_depths():
    depths = [1, 3, 5, 9]
    values = [2.0 ** (10 - d) for d in depths]        # grows by 2 per layer toward the input
    assert rates.fit_rate(values, depths=depths, reverse=True).rate == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        rates.fit_rate([1.0, 0.0], depths=[1, 2])
    with pytest.raises(ValueError, match="one value per depth"):
        rates.fit_rate([1.0, 2.0], depths=[1, 2, 3])
    with pytest.raises(ValueError, match="depths that differ"):
        rates.fit_rate([1.0, 2.0], depths=[4, 4])


def test_gradient_norms_match_autograd_on_a_linear_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    x, g = torch.randn(5, 4), torch.randn(5, 2)
    w1, w2 = net[0].weight, net[1].weight
    # dℓ/dW2 = gᵀ h, dℓ/dW1 = (g W2)ᵀ x for ℓ = <f(x), g>
    expected = torch.stack([((g @ w2).T @ x).norm(), (g.T @ (x @ w1.T)).norm()])
    assert torch.allclose(rates.gradient_norms(net, x, g), expected.detach(), rtol=1e-5)
    assert net[0].weight.grad is None  # .grad untouched
    with pytest.raises(ValueError, match="grad_output has shape"):
        rates.gradient_norms(nn.Linear(3, 2), torch.randn(4, 3), torch.randn(4, 3))


def test_bn_relu_mlp_explodes_at_the_theoretical_rate():
    gen = gradprobe.seed(0)
    net = mlp(30, 256, "relu", norm="batch", generator=gen.weights)
    x = torch.randn(256, 256, generator=gen.data)
    g = torch.randn(256, 256, generator=gen.data)
    with record(net) as rec:
        net(x).backward(g)
    assert rates.fit_rate(rec.variances("gradients"), reverse=True).rate == pytest.approx(RELU_RATE, rel=0.03)


def test_plain_relu_mlp_without_bn_does_not_explode():
    gen = gradprobe.seed(1)
    net = mlp(30, 256, "relu", init="he", generator=gen.weights)
    norms = rates.gradient_norms(net, torch.randn(256, 256, generator=gen.data), torch.randn(256, 256, generator=gen.data))
    assert rates.fit_rate(norms, reverse=True).rate == pytest.approx(1.0, abs=0.03)


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
        net = mlp(20, 256, act, norm=norm, out_dim=10, generator=torch.Generator().manual_seed(s))
        x, y = mlp_batch(s)
        measured.append(rates.network_rate(net, x, y).rate)
    assert abs(np.mean(measured) - predicted_rate(act, norm)) < tol * predicted_rate(act, norm)


def test_segmented_fit_recovers_rate_across_jumps():
    # Var(g) = c_s · 1.3^(−n) with a jump of ×7 and ×0.1 between segments
    n = np.arange(30)
    seg = [0] * 10 + [1] * 12 + [2] * 8
    jump = np.array([1.0] * 10 + [7.0] * 12 + [0.1] * 8)
    values = 5.0 * jump * 1.3 ** (-n)
    fit_ = rates.fit_rate(values, segments=seg, reverse=True)
    assert math.isclose(fit_.rate, 1.3, rel_tol=1e-9) and math.isclose(fit_.r2, 1.0)
    assert math.isclose(fit_.intercept, 5.0, rel_tol=1e-9)
    assert fit_.predict([0, 9]) == pytest.approx(values[[0, 9]])
    assert rates.segments_of([(4,), (4,), (8,), (8,), (4,)]) == [0, 0, 1, 1, 2]
    # with input shapes: the data-fed first layer and a layer fed through a pooling stand alone
    outs = [(8, 16, 16), (8, 16, 16), (8, 16, 16), (8, 8, 8), (8, 8, 8), (8, 8, 8)]
    ins = [(3, 16, 16), (8, 16, 16), (8, 16, 16), (8, 8, 8), (8, 8, 8), (8, 8, 8)]
    assert rates.segments_of(outs, ins) == [0, 1, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="at least 2 layers"):
        rates.fit_rate([1.0, 2.0], segments=[0, 1])
    with pytest.raises(ValueError, match="segment ids"):
        rates.fit_rate([1.0, 2.0], segments=[0])


def test_width_ratio_factor():
    # alternating widths 128, 384: each pair of consecutive layers changes Var(g) by r·n_out/n_in
    g = torch.Generator().manual_seed(0)
    widths = [128, 384] * 6
    layers = [Layer(a, b, activation="relu", norm="batch", generator=g) for a, b in zip(widths, widths[1:])]
    net = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
    ratios = []
    for s in range(4):
        x = torch.randn(512, 128, generator=g)
        v, _, _ = rates.gradient_variances(net, x, torch.randint(0, 10, (512,), generator=g),
                                        layers=[m.linear for m in layers])
        ratios.append((v[:-1] / v[1:]).numpy())
    ratio = np.mean(ratios, axis=0)
    predicted = [predicted_rate("relu", width_ratio=widths[k + 2] / widths[k + 1]) for k in range(len(ratio))]
    np.testing.assert_allclose(ratio[2:], predicted[2:], rtol=0.08)


def test_vgg_rate_and_layers():
    g = torch.Generator().manual_seed(0)
    net = vgg([8, "M", 16, 16, 16, 16, 16, 16], norm="batch", generator=g)
    layers = rates.rate_layers(net)
    assert layers == net.convs()  # the classifier is left out
    x = torch.randn(32, 3, 16, 16, generator=g)
    r = rates.network_rate(net, x, torch.randint(0, 10, (32,), generator=g))
    assert r.segments == [0, 1, 2, 2, 2, 2, 2] and r.layers == 7
    assert 1.2 < r.rate < 1.7
    assert math.isclose(r.norm_rate, math.sqrt(r.rate))


def test_gradient_variances_leave_grads_alone_and_check_arguments():
    net = mlp(4, 16, "relu", norm="batch", out_dim=3)
    x = torch.randn(8, 16)
    net(x).sum().backward()
    before = [p.grad.clone() for p in net.parameters()]
    rates.gradient_variances(net, x, grad_output=torch.randn(8, 3))
    assert all(torch.equal(a, p.grad) for a, p in zip(before, net.parameters()))
    with pytest.raises(ValueError, match="exactly one of target"):
        rates.gradient_variances(net, x)
    with pytest.raises(ValueError, match="grad_output has shape"):
        rates.gradient_variances(net, x, grad_output=torch.randn(8, 4))


def test_tracker_measures_without_side_effects():
    g = torch.Generator().manual_seed(0)
    net = mlp(6, 32, "relu", norm="batch", in_dim=20, out_dim=4, generator=g)
    x, y = torch.randn(256, 20, generator=g), torch.randint(0, 4, (256,), generator=g)
    probe = rates.RateTracker(x[:64], y[:64], steps=[0, 2, 4])
    reference = mlp(6, 32, "relu", norm="batch", in_dim=20, out_dim=4)
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
