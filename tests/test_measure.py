import math

import numpy as np
import pytest
import torch
from torch import nn

import gradprobe
from gradprobe import measure, models, theory


def test_fit_rate_recovers_a_known_rate():
    k = np.arange(30)
    fit = measure.fit_rate(3.0 * 1.2 ** k)
    assert fit.rate == pytest.approx(1.2, rel=1e-9)
    assert fit.intercept == pytest.approx(3.0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    assert measure.fit_rate(3.0 * 1.2 ** k, reverse=True).rate == pytest.approx(1 / 1.2, rel=1e-9)
    assert fit.predict([0, 2]) == pytest.approx([3.0, 3.0 * 1.44])


def test_fit_rate_with_noise_reports_lower_r2():
    rng = np.random.default_rng(0)
    values = 1.1 ** np.arange(40) * np.exp(rng.normal(0, 0.3, 40))
    fit = measure.fit_rate(values)
    assert fit.rate == pytest.approx(1.1, rel=0.02) and 0.5 < fit.r2 < 1.0


def test_fit_rate_refuses_bad_values():
    with pytest.raises(ValueError, match="at least 2 values"):
        measure.fit_rate([1.0])
    with pytest.raises(ValueError, match="finite positive"):
        measure.fit_rate([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="finite positive"):
        measure.fit_rate([1.0, float("nan")])


def test_gradient_norms_match_autograd_on_a_linear_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    x, g = torch.randn(5, 4), torch.randn(5, 2)
    w1, w2 = net[0].weight, net[1].weight
    # dℓ/dW2 = gᵀ h, dℓ/dW1 = (g W2)ᵀ x for ℓ = <f(x), g>
    expected = torch.stack([((g @ w2).T @ x).norm(), (g.T @ (x @ w1.T)).norm()])
    assert torch.allclose(measure.gradient_norms(net, x, g), expected.detach(), rtol=1e-5)
    assert net[0].weight.grad is None  # .grad untouched


def test_gradient_norms_checks_shapes():
    with pytest.raises(ValueError, match="grad_output has shape"):
        measure.gradient_norms(nn.Linear(3, 2), torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="no Linear or Conv"):
        measure.weight_layers(nn.ReLU())


def test_record_captures_outputs_and_gradients_and_removes_hooks():
    torch.manual_seed(0)
    net = models.mlp(3, 8)
    x, g = torch.randn(16, 8), torch.randn(16, 8)
    with measure.record(net) as rec:
        net(x).backward(g)
    assert len(rec.activations) == 3 and all(a.shape == (16, 8) for a in rec.activations)
    assert torch.allclose(rec.gradients[-1], g * (rec.activations[-1] > 0))  # through the last ReLU
    assert all(not m._forward_hooks for m in rec.modules)
    with pytest.raises(ValueError, match="which must be"):
        rec.variances("weights")


def test_record_without_backward_says_so():
    net = models.mlp(2, 4)
    with measure.record(net) as rec:
        net(torch.randn(3, 4))
    with pytest.raises(ValueError, match="no gradients recorded"):
        rec.variances("gradients")


def test_bn_relu_mlp_explodes_at_the_theoretical_rate():
    gen = gradprobe.seed(0)
    net = models.mlp(30, 256, "relu", norm="batch", generator=gen.weights)
    x = torch.randn(256, 256, generator=gen.data)
    g = torch.randn(256, 256, generator=gen.data)
    with measure.record(net) as rec:
        net(x).backward(g)
    fit = measure.fit_rate(rec.variances("gradients"), reverse=True)
    assert fit.rate == pytest.approx(theory.RELU_RATE, rel=0.03)


def test_plain_relu_mlp_without_bn_does_not_explode():
    gen = gradprobe.seed(1)
    net = models.mlp(30, 256, "relu", init="he", generator=gen.weights)
    norms = measure.gradient_norms(net, torch.randn(256, 256, generator=gen.data), torch.randn(256, 256, generator=gen.data))
    assert measure.fit_rate(norms, reverse=True).rate == pytest.approx(1.0, abs=0.03)
