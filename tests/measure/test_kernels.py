"""gradprobe.measure.kernels: measurements at numbered layers of a CIFAR ResNet (Bjorck et al.)."""
import math

import pytest
import torch
import torch.nn.functional as F

from gradprobe.measure import kernels
from gradprobe.networks.resnet import layer
from small_resnets import batch, net


def test_channel_moments_are_per_channel_moments_of_the_layer_output():
    x, _ = batch()
    model = net("batch")
    moments = kernels.channel_moments(model, x, [1, 8])
    out = layer(model, 1)(x)                       # layer 1's output: the stem conv, before its BN
    assert torch.allclose(moments[1].mean, out.mean(dim=(0, 2, 3)).double(), atol=1e-6)
    assert torch.allclose(moments[1].var, out.var(dim=(0, 2, 3), unbiased=False).double(), rtol=1e-5)
    assert moments[8].mean.shape == (10,)           # the final Linear: per class over the batch


def test_gradient_sums_match_eq_4_summed_by_hand():
    x, y = batch()
    model = net(None, depth=14)
    sums = kernels.gradient_sums(model, x, y, [3, 7])
    # by hand: record I and dL/dO of layer 7 and sum the summands d of Eq. (4) explicitly
    conv, store = layer(model, 7), {}

    def record(module, inputs, output):
        store["I"] = inputs[0].detach()
        output.register_hook(lambda g: store.__setitem__("g", g))

    h = conv.register_forward_hook(record)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    h.remove()
    cols = F.unfold(store["I"], 3, padding=1, stride=conv.stride)          # [B, i·9, positions]
    g = store["g"].flatten(2)                                              # [B, o, positions]
    d_abs_sum = torch.einsum("bop,bkp->ok", g.abs(), cols.abs())          # Σ_{b,x,y} |d|
    d_sum_abs = torch.einsum("bop,bkp->ok", g, cols).abs()                 # |Σ_{b,x,y} d|
    assert sums[7].a == pytest.approx(float(d_abs_sum.mean()), rel=1e-4)
    assert sums[7].b == pytest.approx(float(d_sum_abs.mean()), rel=1e-4)
    assert sums[7].b == pytest.approx(float(conv.weight.grad.abs().mean()), rel=1e-4)
    for s in sums.values():
        assert s.a >= s.b > 0 and s.ratio >= 1


def test_gradient_sums_rejects_the_linear_layer():
    x, y = batch()
    with pytest.raises(ValueError, match="not a convolution"):
        kernels.gradient_sums(net(), x, y, [8])


def test_output_gradients_are_softmax_minus_onehot():
    x, y = batch()
    g = kernels.output_gradients(net(), x, y)
    assert g.shape == (16, 10)
    assert torch.allclose(g.sum(dim=1), torch.zeros(16, dtype=g.dtype), atol=1e-9)
    assert (g.argmin(dim=1) == y).all() and (g[torch.arange(16), y] <= 0).all()


def test_top_singular_share():
    assert kernels.top_singular_share(torch.outer(torch.arange(1.0, 5), torch.ones(3))) == pytest.approx(1.0)
    assert kernels.top_singular_share(torch.eye(4)) == pytest.approx(0.25)
    m = net(None, depth=14)
    x, y = batch()
    assert kernels.channel_gradient_map(m, x, y, 7).shape == (32, 32)   # [in, out] at a stage-2 conv


@pytest.mark.parametrize("norm", [None, "batch"])
def test_one_pass_gives_the_numbers_of_the_separate_measurements(norm):
    x, y = batch()
    model = net(norm, depth=14)
    found = kernels.one_pass(model, x, y, moment_layers=[1, 7, 14], kernel_layers=[7, 9], sum_layers=[3, 7])
    for p in model.parameters():
        assert p.grad is None                                  # cleared, as the separate ones leave it
    with torch.no_grad():
        assert found.loss == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-6)
    assert torch.allclose(found.output_grads, kernels.output_gradients(model, x, y), atol=1e-6)
    moments = kernels.channel_moments(model, x, [1, 7, 14])
    for k in (1, 7, 14):
        assert torch.allclose(found.moments[k].mean, moments[k].mean, rtol=1e-5, atol=1e-7)
        assert torch.allclose(found.moments[k].var, moments[k].var, rtol=1e-5, atol=1e-7)
    for k in (7, 9):
        assert torch.allclose(found.kernel_grads[k], kernels.kernel_gradient(model, x, y, k), rtol=1e-5, atol=1e-8)
    sums = kernels.gradient_sums(model, x, y, [3, 7])
    for k in (3, 7):
        assert found.sums[k].a == pytest.approx(sums[k].a, rel=1e-5)
        assert found.sums[k].b == pytest.approx(sums[k].b, rel=1e-5)
        assert found.sums[k].summands == sums[k].summands
    # layer 3 (stage 1) sees 8×8 maps, layer 7 (stage 2, stride 2) 4×4: B·H·W summands
    assert (sums[3].summands, sums[7].summands) == (16 * 8 * 8, 16 * 4 * 4)
    assert sums[7].per_summand == pytest.approx((sums[7].a / 256, sums[7].b / 256))
    assert math.isnan(kernels.GradientSums(1.0, 0.5).per_summand[0])
    kept = kernels.one_pass(model, x, y, kernel_layers=[7], keep_grads=True)
    assert torch.equal(layer(model, 7).weight.grad, kept.kernel_grads[7])
    with pytest.raises(ValueError, match="not a convolution"):
        kernels.one_pass(model, x, y, sum_layers=[14])
