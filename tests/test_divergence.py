import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradprobe import divergence as dv
from gradprobe import train
from gradprobe.resnets import cifar_resnet, layer


def gen(n=0):
    return torch.Generator().manual_seed(n)


def batch(n=16, size=8, seed=1):
    g = gen(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def net(norm=None, depth=8, seed=0):
    return cifar_resnet(depth, norm, generator=gen(seed))


def test_channel_moments_are_per_channel_moments_of_the_layer_output():
    x, _ = batch()
    model = net("batch")
    moments = dv.channel_moments(model, x, [1, 8])
    out = layer(model, 1)(x)                       # layer 1's output: the stem conv, before its BN
    assert torch.allclose(moments[1].mean, out.mean(dim=(0, 2, 3)).double(), atol=1e-6)
    assert torch.allclose(moments[1].var, out.var(dim=(0, 2, 3), unbiased=False).double(), rtol=1e-5)
    assert moments[8].mean.shape == (10,)           # the final Linear: per class over the batch
    assert dv.FIGURE5_LAYERS == (6, 18, 30, 42, 54, 66, 78, 90, 102, 110)


def test_gradient_sums_match_eq_4_summed_by_hand():
    x, y = batch()
    model = net(None, depth=14)
    sums = dv.gradient_sums(model, x, y, [3, 7])
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
        dv.gradient_sums(net(), x, y, [8])


def test_output_gradients_are_softmax_minus_onehot():
    x, y = batch()
    g = dv.output_gradients(net(), x, y)
    assert g.shape == (16, 10)
    assert torch.allclose(g.sum(dim=1), torch.zeros(16, dtype=g.dtype), atol=1e-9)
    assert (g.argmin(dim=1) == y).all() and (g[torch.arange(16), y] <= 0).all()
    made = torch.zeros(10, 4)
    made[:9, 2] = 1.0
    made[9, 0] = 1.0
    assert dv.dominant_class_share(made).cls == 2 and dv.dominant_class_share(made).share == pytest.approx(0.9)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    found = dv.dominant_class_share(made, labels)      # images of class 2 are not counted
    assert found.cls == 2 and found.share == pytest.approx(7 / 8) and found.probability == pytest.approx(7 / 8)


def test_top_singular_share():
    assert dv.top_singular_share(torch.outer(torch.arange(1.0, 5), torch.ones(3))) == pytest.approx(1.0)
    assert dv.top_singular_share(torch.eye(4)) == pytest.approx(0.25)
    m = net(None, depth=14)
    x, y = batch()
    assert dv.channel_gradient_map(m, x, y, 7).shape == (32, 32)   # [in, out] at a stage-2 conv


def test_step_loss_ratios_restore_the_model_and_survive_overflow():
    torch.set_flush_denormal(True)
    x, y = batch()
    model = net("batch")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ratios = dv.step_loss_ratios(model, x, y, [1e-4, 1e-2, 1e30])
    assert ratios[0] < 1                                     # a tiny step along −∇ lowers the loss
    assert not np.isfinite(ratios[2]) or ratios[2] > 1       # an absurd one does not: inf/NaN is data
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the same number by hand
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        base = float(F.cross_entropy(model(x), y))
        for p in model.parameters():
            p -= 1e-2 * p.grad
        stepped = float(F.cross_entropy(model(x), y))
    assert ratios[1] == pytest.approx(stepped / base, rel=1e-4)
    with pytest.raises(ValueError, match="positive"):
        dv.step_loss_ratios(model, x, y, [0.0])


def test_largest_useful_step():
    steps = [1e-3, 1e-2, 1e-1, 1.0]
    assert dv.largest_useful_step(steps, [0.9, 0.5, 2.0, 0.1]) == 1e-2
    assert dv.largest_useful_step(steps, [0.9, 0.5, 0.4, 0.3]) == 1.0
    assert dv.largest_useful_step(steps, [0.9, np.nan, 0.4, 0.3]) == 1e-3
    assert math.isnan(dv.largest_useful_step(steps, [1.1, 0.5, 0.4, 0.3]))


def test_probe_training_steps_scans_the_requested_batches():
    x, y = batch(64)
    model = net(None)
    w0 = layer(model, 3).weight.detach().clone()
    found, history = dv.probe_training_steps(model, x, y, [1e-4, 1e-3], lr=1e-3, batch_size=16, batches=(1, 3),
                                             generator=gen(2))
    assert sorted(found) == [1, 3] and all(r.shape == (2,) for r in found.values())
    assert history.steps == 3 and not history.diverged
    assert not torch.equal(w0, layer(model, 3).weight)       # it trained in between


def test_find_diverging_update_and_sweep():
    torch.set_flush_denormal(True)
    x, y = batch(64)
    model = net(None, depth=14)
    upd = dv.find_diverging_update(model, x, y, lr=50.0, batch_size=16, max_steps=20, generator=gen(3))
    assert upd is not None
    assert not math.isfinite(upd.loss_after) or upd.loss_after > 1e3
    assert upd.loss_before <= 1e3 and len(upd.losses) == upd.step + 1
    for n, p in model.named_parameters():                     # left at the diverged weights
        assert torch.allclose(upd.params_before[n] + upd.delta[n], p, equal_nan=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    sweep = dv.interpolation_sweep(model, upd, np.linspace(0, 1, 5), [3, 9])
    assert sweep.loss[0] == pytest.approx(upd.loss_before, rel=1e-4)
    if math.isfinite(upd.loss_after):
        assert sweep.loss[-1] == pytest.approx(upd.loss_after, rel=1e-3)
    assert sweep.means[3].shape == (5, 16) and sweep.variances[9].shape == (5, 32)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_find_diverging_update_small_lr_and_diverged_start():
    x, y = batch(32)
    assert dv.find_diverging_update(net(None), x, y, lr=1e-5, batch_size=16, max_steps=2, generator=gen()) is None
    with pytest.raises(ValueError, match="already"):
        dv.find_diverging_update(net(None), x, y, lr=1e-5, batch_size=16, max_steps=2, threshold=0.01)


def test_mean_subtracted_multiplies_by_the_channel_std(monkeypatch):
    monkeypatch.setattr(train, "channel_stats", lambda root=None: ((0.5, 0.5, 0.5), (0.25, 0.5, 2.0)))
    x = torch.ones(2, 3, 4, 4)
    out = dv.mean_subtracted(x)
    assert out[:, 0].eq(0.25).all() and out[:, 1].eq(0.5).all() and out[:, 2].eq(2.0).all()
