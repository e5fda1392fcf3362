"""gradprobe.diagnose: every number against theory or an independent computation, on the book's
networks, on torchvision's ResNet-50 layout and on Hugging Face's GPT-2, BERT and ViT built from
configurations with random weights; the model left exactly as it was; the command line."""
import dataclasses
import math
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe.diagnose import Diagnosis, diagnose, main
from gradprobe.measure.gsc import gsc_profile
from gradprobe.measure.hooks import preserved_state, weight_layers
from gradprobe.measure.kernels import gradient_sums
from gradprobe.networks.imagenet_resnet import imagenet_resnet, preact_resnet
from gradprobe.networks.mlp import mlp
from gradprobe.networks.resnet import cifar_resnet, conv_layers
from gradprobe.theory.gaussian import RELU_RATE


def conv_stack(depth=15, width=32, bn=True, generator=None, padding_mode="zeros"):
    """Conv3×3 (He, fan-in) -> [BN] -> ReLU, ``depth`` times, then a pooled linear head."""
    layers, c_in = [], 3
    for _ in range(depth):
        conv = nn.Conv2d(c_in, width, 3, padding=1, bias=False, padding_mode=padding_mode)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=generator)
        layers += [conv] + ([nn.BatchNorm2d(width)] if bn else []) + [nn.ReLU()]
        c_in = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def norms_by_autograd(model, loss_of_output, x):
    """‖∂ℓ/∂W‖ of every weight layer, by plain autograd in training mode (buffers restored)."""
    with preserved_state(model):
        model.train()
        layers = weight_layers(model)
        grads = torch.autograd.grad(loss_of_output(model(x)), [m.weight for m in layers], allow_unused=True)
    return {m: float(g.norm()) for m, g in zip(layers, grads) if g is not None}


def row(d: Diagnosis, name: str) -> dict:
    return next(r for r in d.layers if r["name"] == name)


# --------------------------------------------------------------------------- theory


def test_conv_bn_relu_stack_explodes_at_pi_over_pi_minus_1():
    net = conv_stack(generator=gen(0))
    d = diagnose(net, torch.randn(16, 3, 16, 16, generator=gen(1)), repeats=3, generator=gen(2))
    assert d.predicted_per_layer == pytest.approx(RELU_RATE, rel=1e-9)
    assert d.rate_per_layer == pytest.approx(RELU_RATE, rel=0.05)
    assert d.kinds == "BN–ReLU" and not d.residual and d.layers_in_fit == 14      # the first sees the data
    assert d.rate_per_depth == d.rate_per_layer and d.effective_depth == 16       # plain: depth, head included
    assert math.isfinite(d.rate_per_layer_se) and d.rate_per_layer_se < 0.05
    assert "per BN–ReLU layer toward the input" in d.verdict and "as predicted for BN–ReLU" in d.verdict
    assert all(r["pair_predicted"] == pytest.approx(RELU_RATE) for r in d.layers if r["between"])


def test_eval_mode_warns_and_is_measured_in_training_mode():
    net = conv_stack(generator=gen(0))
    x = torch.randn(16, 3, 16, 16, generator=gen(1))
    trained = diagnose(net, x, generator=gen(2))
    net.eval()
    with pytest.warns(UserWarning, match="eval mode.*training mode"):
        d = diagnose(net, x, generator=gen(2))
    assert d.rate_per_layer == pytest.approx(trained.rate_per_layer, rel=1e-6)
    assert any("eval mode" in n for n in d.notes)
    assert not any(m.training for m in net.modules())                            # modes restored
    as_is = diagnose(net, x, generator=gen(2), train=False)                      # running statistics: no explosion
    assert as_is.rate_per_layer < 1.2


def he_gain(net):
    """The geometric mean over the convs feeding a conv of fan_in·E[W²]/2 (1 for an exact He draw):
    a pair's predicted rate, the gain ratio B_j/A_i divided out, is A_i·E[φ'²] = fan_in·E[W_i²]/2."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)][:-1]
    return math.exp(sum(math.log(m.weight[0].numel() * float(m.weight.detach().double().pow(2).mean()) / 2)
                        for m in convs) / len(convs))


def test_without_batchnorm_hes_relu_layers_keep_the_gradient():
    """He-initialized ReLU convs (W ~ N(0, 2/fan_in)) keep the gradient's variance: the rate is
    fan_in·E[W²]·E[φ'²] = 1, up to the sampled E[W²], where the image has no border (circular
    padding). Zero padding takes no gradient back: on a 16-pixel row a 3×3 kernel's taps land in the
    image 46 times out of 48, and the predicted backward gain counts only those."""
    x = torch.randn(16, 3, 16, 16, generator=gen(1))
    net = conv_stack(bn=False, generator=gen(0), padding_mode="circular")
    d = diagnose(net, x, repeats=3, generator=gen(2))
    assert d.kinds == "ReLU"
    assert d.predicted_per_layer == pytest.approx(he_gain(net), rel=1e-9)
    assert d.predicted_per_layer == pytest.approx(1.0, rel=0.03)
    assert d.rate_per_layer == pytest.approx(d.predicted_per_layer, rel=0.05)
    zeros = conv_stack(bn=False, generator=gen(0))
    assert diagnose(zeros, x, generator=gen(2)).predicted_per_layer == pytest.approx(he_gain(zeros) * (46 / 48) ** 2,
                                                                                  rel=1e-9)


def test_bn_relu_mlp_and_mixed_widths():
    net = mlp(20, 256, "relu", norm="batch", out_dim=10, generator=gen(0))
    d = diagnose(net, torch.randn(256, 256, generator=gen(1)), generator=gen(2))
    assert d.rate_per_layer == pytest.approx(RELU_RATE, rel=0.03)
    # widths alternating 128 and 512: each pair's raw ratio carries the factor B_j/A_i ≈ n_out/n_in of
    # He (fan-in) init, ×4 or ×¼; the corrected rate is r(ReLU) again
    widths = [64] + [128, 512] * 6
    layers = []
    for a, b in zip(widths, widths[1:]):
        lin = nn.Linear(a, b, bias=False)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu", generator=gen(len(layers)))
        layers += [lin, nn.BatchNorm1d(b), nn.ReLU()]
    wide = nn.Sequential(*layers, nn.Linear(512, 10))
    d = diagnose(wide, torch.randn(512, 64, generator=gen(1)), repeats=2, generator=gen(2))
    assert d.rate_per_layer == pytest.approx(RELU_RATE, rel=0.05)
    raw = [r["grad_variance"] for r in d.layers][:-1]
    for k in range(1, len(raw) - 1):                                             # layer k feeds k+1
        n_out_over_n_in = widths[k + 2] / widths[k + 1]
        assert raw[k] / raw[k + 1] == pytest.approx(RELU_RATE * n_out_over_n_in, rel=0.25)


def test_kernel_taps_in_the_zero_padding_carry_nothing():
    """On a 1×1 map a 3×3 convolution with zero padding uses its centre tap only: its forward gain
    is C_in·E[W²], a ninth of its fan-in's. Alternating 3×3 and 1×1 BN–ReLU layers on 1×1 maps then
    grow at r(ReLU) like any BN–ReLU stack; counting the padding as image would put every
    3×3 → 1×1 pair 9× off (ImageNet ResNets fed CIFAR-size images end on such maps)."""
    layers, c_in = [], 16
    for k in [3, 1] * 6:
        conv = nn.Conv2d(c_in, 64, k, padding=k // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=gen(len(layers)))
        layers += [conv, nn.BatchNorm2d(64), nn.ReLU()]
        c_in = 64
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, 10))
    d = diagnose(net, torch.randn(512, 16, 1, 1, generator=gen(1)), repeats=3, generator=gen(2))
    assert d.predicted_per_layer == pytest.approx(RELU_RATE, rel=1e-9) and d.layers_in_fit == 12   # head too
    assert d.rate_per_layer == pytest.approx(RELU_RATE, rel=0.06)
    raw = [r["grad_variance"] for r in d.layers]
    three_to_one = [raw[k] / raw[k + 1] for k in range(2, 11, 2)]               # 3×3 (k) feeds 1×1 (k+1)
    assert all(5 < ratio < 20 for ratio in three_to_one)                         # ≈ 9·r(ReLU) = 13.2
    pairs = [r["pair_ratio"] for r in d.layers if r["between"]]                  # each pair, gains divided out
    assert len(pairs) == 11 and all(1.0 < p < 2.2 for p in pairs)                # not 9·r and r/9 in turn


def ordered_stack(order, norm, depth=12, width=64, generator=None):
    """Linear (He) with ``norm`` (BatchNorm1d, LayerNorm or none) and ReLU in ``order``
    ("norm_act": φ(norm(Wx)), "act_norm": norm(φ(Wx))), ``depth`` times, then a linear head."""
    layers, n_in = [], 32
    for _ in range(depth):
        lin = nn.Linear(n_in, width, bias=False)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu", generator=generator)
        pair = ([{"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[norm](width)] if norm else []) + [nn.ReLU()]
        layers += [lin] + (pair[::-1] if order == "act_norm" else pair)
        n_in = width
    return nn.Sequential(*layers, nn.Linear(width, 10))


@pytest.mark.parametrize("order, norm, label, rate", [
    ("norm_act", "batch", "BN–ReLU", RELU_RATE), ("act_norm", "batch", "ReLU–BN", RELU_RATE),
    ("norm_act", "layer", "LN–ReLU", 1.0), ("act_norm", "layer", "ReLU–LN", RELU_RATE)])
def test_normalization_before_or_after_the_activation(order, norm, label, rate):
    """After the activation, BatchNorm and LayerNorm both remove φ's mean and divide by Var[φ]: the
    gradient grows by r(ReLU) per layer either way. Before it, LayerNorm (a sample's features, the
    mean a random W spreads over them kept) divides by E[φ²] instead: no growth for ReLU."""
    runs = [diagnose(ordered_stack(order, norm, generator=gen(seed)), torch.randn(256, 32, generator=gen(10 + seed)),
                     generator=gen(20 + seed)) for seed in range(4)]               # fresh weights: the rate's spread
    assert {d.kinds for d in runs} == {label}
    assert all(d.predicted_per_layer == pytest.approx(rate, rel=0.02) for d in runs)
    assert sum(d.rate_per_layer for d in runs) / 4 == pytest.approx(rate, rel=0.05)


def test_batchnorm_without_an_activation_keeps_the_gradient():
    """Linear -> BatchNorm without an activation: BN's division by the variance it restores is
    undone on the way back, the predicted rate is r(identity) = 1 (Paik & Choi: no activation, no
    explosion). Measured, a deep linear BN network grows a few percent per layer (the features'
    variances spread as the random products grow ill-conditioned, and BN divides each by its own:
    a Jensen gap the mean-field theory leaves out), far below r(ReLU)."""
    rates = []
    for seed in range(4):                                                       # fresh weights: the rate's spread
        layers, n_in = [], 32
        for _ in range(12):
            lin = nn.Linear(n_in, 64, bias=False)
            nn.init.kaiming_normal_(lin.weight, generator=gen(100 * seed + len(layers)))
            layers += [lin, nn.BatchNorm1d(64)]
            n_in = 64
        d = diagnose(nn.Sequential(*layers, nn.Linear(64, 10)), torch.randn(256, 32, generator=gen(10 + seed)),
                     generator=gen(20 + seed))
        assert d.kinds == "BN" and d.layers_in_fit == 12
        assert d.predicted_per_layer == pytest.approx(1.0, rel=1e-9)
        rates.append(d.rate_per_layer)
    assert 0.98 < sum(rates) / 4 < 1 + (RELU_RATE - 1) / 4


def test_preact_resnet_branches_grow_at_the_bn_relu_rate():
    net = preact_resnet(50, num_classes=10, generator=gen(0))
    d = diagnose(net, torch.randn(8, 3, 64, 64, generator=gen(1)), generator=gen(2))
    assert d.residual and d.effective_depth == 16 and d.kinds == "BN–ReLU"
    assert d.rate_per_layer == pytest.approx(RELU_RATE, rel=0.06)
    assert d.rate_per_depth > 1.2                                                # the stream explodes too
    assert "per residual branch" in d.verdict


# --------------------------------------------------------------------------- independent computations


def test_weight_gradient_norms_equal_autograds_on_the_same_loss():
    net = mlp(6, 32, "relu", norm="batch", in_dim=8, out_dim=5, generator=gen(0))
    x, y = torch.randn(64, 8, generator=gen(1)), torch.randint(0, 5, (64,), generator=gen(2))
    d = diagnose(net, x, targets=y, generator=gen(3))
    expected = norms_by_autograd(net, lambda out: F.cross_entropy(out, y), x)
    names = {m: n for n, m in net.named_modules()}
    for m, norm in expected.items():
        assert row(d, names[m])["weight_grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert d.loss.startswith("cross-entropy of output")


def test_gsc_equals_gsc_profile_with_the_same_probe_and_the_same_loss():
    net = mlp(8, 64, "tanh", norm="batch", in_dim=16, out_dim=4, generator=gen(0))
    x = torch.randn(128, 16, generator=gen(1))
    layers = weight_layers(net)
    d = diagnose(net, x, generator=gen(5))
    probe = gen(5)
    torch.randint(0, 2**62, (1,), generator=probe)   # diagnose draws its dropout seed first, then the probe u
    net.train()
    expected = gsc_profile(net, x, modules=layers, probes=1, generator=probe)
    got = [r["gsc"] for r in d.layers]
    assert got == pytest.approx(expected.tolist(), rel=1e-4)
    loss = lambda out: out.pow(2).mean()
    exact = gsc_profile(net, x, modules=layers, loss=loss)
    assert [r["gsc"] for r in diagnose(net, x, loss=loss, generator=gen(5)).layers] == pytest.approx(
        exact.tolist(), rel=1e-4)
    # Philipp's GSC and the ghost paper's ratios are one number: GSC² ≈ (R_b/R_f)·numel(h_k)/numel(f)
    for r in d.layers[:-1]:
        assert r["gsc"] ** 2 == pytest.approx(r["R_b"] / r["R_f"] * 64 / 4, rel=0.3)


def test_bjorck_a_and_b_equal_gradient_sums():
    net = cifar_resnet(8, "batch", width=4, generator=gen(0))
    x, y = torch.randn(16, 3, 16, 16, generator=gen(1)), torch.randint(0, 10, (16,), generator=gen(2))
    d = diagnose(net, x, targets=y, generator=gen(3))
    names = {m: n for n, m in net.named_modules()}
    expected = gradient_sums(net, x, y, [1, 2, 4, 7])
    for k, sums in expected.items():
        r = row(d, names[conv_layers(net)[k - 1]])
        assert r["bjorck_a"] == pytest.approx(sums.a, rel=1e-5)
        assert r["bjorck_b"] == pytest.approx(sums.b, rel=1e-5)
        assert r["bjorck_a"] >= r["bjorck_b"]
    assert math.isnan(row(d, "fc")["bjorck_a"])                                  # not a convolution


# --------------------------------------------------------------------------- the model as it was


def test_the_model_is_left_exactly_as_it_was():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    net[1].eval()                                        # a mix of modes
    net[4].weight.requires_grad_(False)                  # a frozen layer
    net[0].weight.grad = torch.full_like(net[0].weight, 7.0)   # an existing gradient
    before_state = {k: v.clone() for k, v in net.state_dict().items()}
    before_modes = [m.training for m in net.modules()]
    before_flags = [p.requires_grad for p in net.parameters()]
    before_grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    before_hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in net.modules()]
    rng = torch.get_rng_state()
    with pytest.warns(UserWarning, match="eval mode"):
        d = diagnose(net, torch.randn(8, 3, 8, 8, generator=gen(1)), repeats=2, generator=gen(2))
    assert math.isfinite(row(d, "4")["weight_grad_norm"])                     # the frozen layer measured
    after = net.state_dict()
    assert list(after) == list(before_state)
    assert all(torch.equal(after[k], v) for k, v in before_state.items())    # incl. running stats, num_batches_tracked
    assert [m.training for m in net.modules()] == before_modes
    assert [p.requires_grad for p in net.parameters()] == before_flags
    for p, g in zip(net.parameters(), before_grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in net.modules()] == before_hooks
    assert torch.equal(torch.get_rng_state(), rng)


# --------------------------------------------------------------------------- any model


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    extra: torch.Tensor


class Wrapped(nn.Module):
    def __init__(self, net, how):
        super().__init__()
        self.net, self.how = net, how

    def forward(self, x):
        out = self.net(x)
        return {"tuple": (out, out.detach().sum()), "dict": {"logits": out},
                "dataclass": Output(out, out.detach())}[self.how]


@pytest.mark.parametrize("how, where", [("tuple", "output[0]"), ("dict", "output['logits']"),
                                        ("dataclass", "output.logits")])
def test_tuple_dict_and_dataclass_outputs(how, where):
    net = mlp(5, 32, "relu", norm="batch", in_dim=8, out_dim=4, generator=gen(0))
    x = torch.randn(64, 8, generator=gen(1))
    plain = diagnose(net, x, generator=gen(2))
    d = diagnose(Wrapped(net, how), x, generator=gen(2))
    assert where in d.loss
    assert [r["grad_variance"] for r in d.layers] == pytest.approx([r["grad_variance"] for r in plain.layers])


class Odd(nn.Module):
    """A layer never called and a layer called twice (weight sharing)."""

    def __init__(self):
        super().__init__()
        self.inp, self.shared, self.unused, self.out = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(3, 3), nn.Linear(16, 2)

    def forward(self, x):
        return self.out(torch.relu(self.shared(torch.relu(self.shared(torch.relu(self.inp(x)))))))


def test_modules_called_zero_times_or_several_times():
    net = Odd()
    x = torch.randn(32, 8, generator=gen(1))
    d = diagnose(net, x, loss=lambda out: out.pow(2).sum(), generator=gen(2))
    assert d.unused == ["unused"] and d.shared == ["shared (2 calls)"]
    assert row(d, "shared")["calls"] == 2 and row(d, "unused")["calls"] == 0
    expected = norms_by_autograd(net, lambda out: out.pow(2).sum(), x)
    assert row(d, "shared")["weight_grad_norm"] == pytest.approx(expected[net.shared], rel=1e-5)   # the total
    assert [r["name"] for r in d.layers] == ["inp", "shared", "out", "unused"]


def test_multihead_attention_measured_through_the_attention_module():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True), 2,
                                enable_nested_tensor=False)
    x = torch.randn(4, 10, 32, generator=gen(1))
    d = diagnose(enc, x, generator=gen(2))
    out_proj = row(d, "layers.0.self_attn.out_proj")
    assert out_proj["kind"] == "attention out_proj" and math.isfinite(out_proj["grad_variance"])
    assert d.functional == ["layers.0.self_attn.in_proj", "layers.1.self_attn.in_proj"]
    # its output is the attention module's output: its variance over samples and positions, per feature
    seen = {}
    attn = enc.layers[0].self_attn
    handle = attn.register_forward_hook(lambda m, a, out: seen.setdefault("y", out[0].detach()))
    with preserved_state(enc), torch.no_grad():
        enc.train()
        enc(x)
    handle.remove()
    assert out_proj["forward_variance"] == pytest.approx(float(seen["y"].reshape(-1, 32).var(0, unbiased=False).mean()),
                                                         rel=1e-5)
    expected = norms_by_autograd(enc, lambda out: out.pow(2).sum(), x)
    d2 = diagnose(enc, x, loss=lambda out: out.pow(2).sum(), generator=gen(2))
    assert row(d2, "layers.1.self_attn.out_proj")["weight_grad_norm"] == pytest.approx(
        expected[enc.layers[1].self_attn.out_proj], rel=1e-5)
    in_proj = torch.autograd.grad(enc(x).pow(2).sum(), enc.layers[0].self_attn.in_proj_weight)[0]
    assert row(d2, "layers.0.self_attn.in_proj")["weight_grad_norm"] == pytest.approx(float(in_proj.norm()), rel=1e-4)
    # the residual stream: attention and MLP of each layer, 2 branches per layer
    assert d.residual and d.effective_depth == 4
    assert [s["after"] for s in d.stream] == ["layers.0.self_attn.out_proj", "layers.0.linear2",
                                              "layers.1.self_attn.out_proj", "layers.1.linear2"]


def test_resnet50_layout_stream_and_gradients():
    net = imagenet_resnet(50, num_classes=10, generator=gen(0))
    x = torch.randn(4, 3, 32, 32, generator=gen(1))
    loss = lambda out: out.pow(2).sum()
    d = diagnose(net, x, loss=loss, generator=gen(2))
    assert d.residual and d.effective_depth == 16                               # 3 + 4 + 6 + 3 bottlenecks
    assert math.isnan(d.predicted_per_depth)                  # no theory per branch: said, not printed as nan
    line = next(t for t in d.report().splitlines() if t.startswith("rate per effective depth"))
    assert "predicted none (no theory for a residual branch's growth)" in line and "nan" not in line
    assert [s["segment"] for s in d.stream] == [0] * 3 + [1] * 4 + [2] * 6 + [3] * 3   # one chain per stage
    assert {r["name"] for r in d.layers if r["stream"]} == {
        f"layer{s}.{b}.{c}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n) for c in ("conv3",)} | {
        f"layer{s}.0.downsample.0" for s in (1, 2, 3, 4)}
    expected = norms_by_autograd(net, loss, x)
    names = {m: n for n, m in net.named_modules()}
    for m, norm in expected.items():
        assert row(d, names[m])["weight_grad_norm"] == pytest.approx(norm, rel=1e-4)


def test_repeats_cost_one_forward_each_and_draw_fresh_inputs():
    net = mlp(6, 32, "relu", norm="batch", in_dim=8, out_dim=4, generator=gen(0))
    forwards, draws = [], []
    handle = net.register_forward_hook(lambda *a: forwards.append(1))
    data = gen(1)

    def inputs():
        draws.append(1)
        return torch.randn(64, 8, generator=data)

    d = diagnose(net, inputs, repeats=4, generator=gen(2))
    handle.remove()
    assert len(forwards) == 4 and len(draws) == 4 and d.repeats == 4
    assert math.isfinite(d.rate_per_layer_se) and d.rate_per_layer_se > 0
    batches = iter([torch.randn(64, 8, generator=data) for _ in range(2)])
    with pytest.raises(ValueError, match="ran out after 2"):
        diagnose(net, batches, repeats=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_numbers():
    net = conv_stack(depth=8, generator=gen(0))
    x = torch.randn(16, 3, 16, 16, generator=gen(1))
    cpu = diagnose(net, x, generator=gen(2))
    d = diagnose(net.cuda(), x, generator=gen(2))
    assert d.device.startswith("cuda")
    assert d.rate_per_layer == pytest.approx(cpu.rate_per_layer, rel=1e-3)
    assert [r["weight_grad_norm"] for r in d.layers] == pytest.approx([r["weight_grad_norm"] for r in cpu.layers],
                                                                      rel=1e-3)


def test_arguments_are_checked():
    net = mlp(3, 8, "relu", in_dim=4, out_dim=2)
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        diagnose(lambda t: t, x)
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        diagnose(net, x, repeats=0)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        diagnose(net, x, generator=3)
    with pytest.raises(ValueError, match="loss must be a callable"):
        diagnose(net, x, loss="mse")
    with pytest.raises(ValueError, match="inputs must be"):
        diagnose(net, 3.0)
    with pytest.raises(ValueError, match="not a submodule"):
        diagnose(net, x, layers=[nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="not a weight layer"):
        diagnose(mlp(3, 8, "relu", norm="batch", in_dim=4), x, layers=["0.norm"])
    with pytest.raises(ValueError, match="scalar"):
        diagnose(net, x, loss=lambda out: out)
    with pytest.raises(ValueError, match="train must be"):
        diagnose(net, x, train="yes")


# --------------------------------------------------------------------------- the result


def test_report_frame_plot_html_and_json_round_trip(tmp_path):
    d = diagnose(conv_stack(depth=6, generator=gen(0)), torch.randn(8, 3, 8, 8, generator=gen(1)), generator=gen(2))
    frame = d.to_frame()
    assert len(frame) == 7 and {"weight_grad_norm", "grad_variance", "forward_variance", "R_f", "R_b", "gsc",
                                "bjorck_a", "bjorck_b"} <= set(frame.columns)
    assert d.verdict in d.report() and d.verdict in d._repr_html_()
    fig = d.plot()
    assert all(ax.get_ylabel() for ax in fig.axes) and fig.axes[2].get_xlabel().startswith("weight layer k")
    back = Diagnosis.load(d.save(tmp_path / "d.json"))
    assert back.verdict == d.verdict and back.rate_per_layer == d.rate_per_layer
    assert back.to_frame().equals(frame)
    import matplotlib.pyplot as plt
    plt.close(fig)


# --------------------------------------------------------------------------- the command line


FACTORIES = """
import torch
from torch import nn

def stack():
    layers = []
    for c_in in (3, 8, 8, 8):
        layers += [nn.Conv2d(c_in, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

def not_a_model():
    return 42

class Picky(nn.Module):
    def forward(self, x):
        raise ValueError("expects 5 channels, got " + str(x.shape[1]))

def picky():
    return Picky()
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "zoo_factories_for_tests.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("zoo_factories_for_tests", None)


def test_command_line_prints_the_report_and_writes_the_figure(factories, capsys):
    out = factories / "out"
    assert main(["zoo_factories_for_tests:stack", "--input-shape", "8,3,8,8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "per BN–ReLU layer" in printed and "weight_grad_norm" in printed
    assert (out / "diagnosis-stack.png").stat().st_size > 0
    assert Diagnosis.load(out / "diagnosis-stack.json").kinds == "BN–ReLU"


@pytest.mark.parametrize("args, message", [
    (["no_such_module_xyz:f", "--input-shape", "2,3"], "cannot import 'no_such_module_xyz'"),
    (["zoo_factories_for_tests:nothing", "--input-shape", "2,3"], "has no 'nothing'"),
    (["zoo_factories_for_tests:not_a_model", "--input-shape", "2,3"], "returned a int, not a torch.nn.Module"),
    (["zoo_factories_for_tests:stack", "--input-shape", "8,3,x"], "--input-shape must be positive integers"),
    (["zoo_factories_for_tests:picky", "--input-shape", "2,3,4,4"], "ValueError: expects 5 channels, got 3"),
])
def test_command_line_errors_are_one_line_and_exit_2(factories, capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_runs_the_command_line(factories):
    """``python -m gradprobe.diagnose`` (the package's ``__main__``) in a fresh interpreter: the
    report on stdout and exit 0; a one-line error and exit 2 for a factory that cannot be imported."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(factories), *sys.path]), "MPLBACKEND": "Agg"}
    ok = subprocess.run([sys.executable, "-m", "gradprobe.diagnose", "zoo_factories_for_tests:stack",
                         "--input-shape", "8,3,8,8", "--out", str(factories / "out")],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0 and "per BN–ReLU layer" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "gradprobe.diagnose", "no_such_module_xyz:f", "--input-shape", "2,3"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "cannot import 'no_such_module_xyz'" in bad.stderr


@pytest.mark.parametrize("first", ["import gradprobe", "from gradprobe.diagnose import Diagnosis"])
def test_gradprobe_diagnose_is_callable_in_either_import_order(first):
    """``gradprobe.diagnose(model, x)`` calls the function and ``gradprobe.diagnose.Diagnosis`` is the
    class, whichever is imported first, in a fresh interpreter."""
    import subprocess

    code = textwrap.dedent(f"""
        {first}
        import gradprobe, torch
        from torch import nn
        net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8),
                            nn.ReLU(), nn.Linear(8, 2))
        d = gradprobe.diagnose(net, torch.randn(64, 4), generator=torch.Generator().manual_seed(0))
        assert isinstance(d, gradprobe.diagnose.Diagnosis) and d.kinds == "BN–ReLU", d
        assert gradprobe.diagnose.diagnose(net, torch.randn(64, 4)).layers_in_fit == 2
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


# --------------------------------------------------------------------------- Hugging Face models


def stream_gradient_variances(model, inputs, labels, hidden_at):
    """Var of ∂ℓ/∂(hidden state) per feature over samples and positions, by autograd on the
    model's own ``hidden_states`` (cross-entropy of the logits against ``labels``)."""
    with preserved_state(model):
        model.train()
        out = model(**inputs, output_hidden_states=True)
        loss = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), labels.reshape(-1))
        hidden = [out.hidden_states[i] for i in hidden_at]
        grads = torch.autograd.grad(loss, hidden)
    return [float(g.reshape(-1, g.shape[-1]).var(0, unbiased=False).mean()) for g in grads]


def test_hf_gpt2_stream_and_weight_gradients():
    pytest.importorskip("transformers")   # a test-only dependency (requirements.lock)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=97, n_positions=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    ids, labels = torch.randint(0, 97, (4, 16), generator=gen(1)), torch.randint(0, 97, (4, 16), generator=gen(2))
    d = diagnose(model, {"input_ids": ids}, targets=labels, generator=gen(3))
    assert "cross-entropy of output['logits']" in d.loss
    assert d.residual and d.effective_depth == 8
    assert [s["after"].split(".", 3)[-1] for s in d.stream] == ["attn.c_proj", "mlp.c_proj"] * 4
    # the stream's gradient after block b's MLP is the gradient of Hugging Face's hidden_states[b + 1]
    expected = stream_gradient_variances(model, {"input_ids": ids}, labels, [1, 2, 3])
    assert [d.stream[i]["grad_variance"] for i in (1, 3, 5)] == pytest.approx(expected, rel=1e-4)
    # Conv1D layers and the tied lm_head: weight-gradient norms as autograd gives them
    with preserved_state(model):
        model.train()
        logits = model(input_ids=ids).logits
        params = [model.transformer.h[0].attn.c_attn.weight, model.lm_head.weight]
        grads = torch.autograd.grad(F.cross_entropy(logits.reshape(-1, 97), labels.reshape(-1)), params)
    assert row(d, "transformer.h.0.attn.c_attn")["weight_grad_norm"] == pytest.approx(float(grads[0].norm()), rel=1e-4)
    assert row(d, "lm_head")["weight_grad_norm"] == pytest.approx(float(grads[1].norm()), rel=1e-4)
    assert row(d, "transformer.wte")["weight_grad_norm"] == row(d, "lm_head")["weight_grad_norm"]
    assert d.kinds == "GELU" and d.rate_per_layer == pytest.approx(d.predicted_per_layer, rel=0.1)


def test_hf_bert_post_ln_stream_and_gsc():
    pytest.importorskip("transformers")   # a test-only dependency (requirements.lock)
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=3, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                        vocab_size=97, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertModel(config)
    ids = torch.randint(0, 97, (4, 16), generator=gen(1))
    loss = lambda out: out.last_hidden_state.pow(2).mean()
    d = diagnose(model, ids, loss=loss, generator=gen(2))
    assert d.residual and d.effective_depth == 6
    assert [s["after"].split(".", 3)[-1] for s in d.stream] == ["attention.output.dense", "output.dense"] * 3
    assert math.isnan(row(d, "pooler.dense")["weight_grad_norm"])               # not in this loss
    layers = [m for m in weight_layers(model) if m is not model.pooler.dense]
    names = {m: n for n, m in model.named_modules()}
    model.train()
    exact = gsc_profile(model, ids, modules=layers, loss=loss)
    model.eval()
    assert [row(d, names[m])["gsc"] for m in layers] == pytest.approx(exact.tolist(), rel=1e-4)


def test_hf_vit_stream_and_patch_convolution():
    pytest.importorskip("transformers")   # a test-only dependency (requirements.lock)
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(num_hidden_layers=3, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                       image_size=32, patch_size=8, num_labels=10, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    model = ViTForImageClassification(config)
    x, y = torch.randn(8, 3, 32, 32, generator=gen(1)), torch.randint(0, 10, (8,), generator=gen(2))
    d = diagnose(model, {"pixel_values": x}, targets=y, generator=gen(3))
    assert d.residual and d.effective_depth == 6
    patch = row(d, "vit.embeddings.patch_embeddings.projection")
    assert patch["kind"] == "conv2d" and patch["bjorck_a"] >= patch["bjorck_b"] > 0
    with preserved_state(model):
        model.train()
        out = model(pixel_values=x, output_hidden_states=True)
        loss = F.cross_entropy(out.logits, y)
        conv = model.vit.embeddings.patch_embeddings.projection
        grads = torch.autograd.grad(loss, [conv.weight, out.hidden_states[1], out.hidden_states[2]])
    assert patch["bjorck_b"] == pytest.approx(float(grads[0].abs().mean()), rel=1e-4)
    assert [d.stream[i]["grad_variance"] for i in (1, 3)] == pytest.approx(
        [float(g.reshape(-1, 64).var(0, unbiased=False).mean()) for g in grads[1:]], rel=1e-4)
