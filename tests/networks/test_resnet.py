import math

import pytest
import torch
from torch import nn

from gradprobe.networks.layers import init_weights_
from gradprobe.networks.resnet import (blocks_per_stage, cifar_resnet, conv_layers, layer, layer_map, layer_stage,
                                       numbered_layers, paper_layer)


def gen(n=0):
    return torch.Generator().manual_seed(n)


@pytest.mark.parametrize("depth,n", [(8, 1), (20, 3), (32, 5), (56, 9), (110, 18)])
def test_depth_is_6n_plus_2_weight_layers(depth, n):
    assert blocks_per_stage(depth) == n
    net = cifar_resnet(depth, generator=gen())
    assert len(conv_layers(net)) == depth - 1
    assert len(numbered_layers(net)) == depth
    assert layer(net, depth) is net.fc
    assert layer_map(net, [depth, 1]) == {depth: net.fc, 1: net.conv1} and layer_map(net, 2) == {2: layer(net, 2)}


@pytest.mark.parametrize("depth", [7, 21, 0, 2, 111, 20.0, True])
def test_bad_depth_is_a_clear_error(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(depth)


def test_bad_choices_name_the_allowed_values():
    with pytest.raises(ValueError, match="'batch'"):
        cifar_resnet(20, norm="layer")
    with pytest.raises(ValueError, match="'relu'"):
        cifar_resnet(20, activation="swish")
    with pytest.raises(ValueError, match="'xavier'"):
        cifar_resnet(20, init="kaiming")
    with pytest.raises(ValueError, match="width"):
        cifar_resnet(20, width=0)
    net = cifar_resnet(20)
    with pytest.raises(ValueError, match="1 … 20"):
        layer(net, 21)
    with pytest.raises(ValueError, match="CifarResNet"):
        conv_layers(nn.Linear(2, 2))


def test_paper_layer_numbers_have_the_papers_channel_counts():
    net = cifar_resnet(110)
    # Figure 4: layers 8, 44, 80 have 16, 32, 64 channels; Figure 2: layer 55 is a 32→32 kernel
    assert [layer(net, k).out_channels for k in (8, 44, 80)] == [16, 32, 64]
    assert [layer(net, k).out_channels for k in (18, 54, 90)] == [16, 32, 64]
    assert tuple(layer(net, 55).weight.shape) == (32, 32, 3, 3)
    assert tuple(layer(net, 45).weight.shape) == (32, 32, 3, 3)
    assert tuple(layer(net, 1).weight.shape) == (16, 3, 3, 3)
    # the stride-2 convs open stages 2 and 3: layers 38 and 74
    assert [k for k in range(1, 110) if layer(net, k).stride == (2, 2)] == [38, 74]
    assert [layer_stage(k, 110) for k in (1, 2, 37, 38, 73, 74, 109, 110)] == [0, 1, 1, 2, 2, 3, 3, 4]


def test_paper_layer_maps_to_the_same_place():
    assert [paper_layer(k, 110) for k in (1, 8, 44, 55, 80, 110)] == [1, 8, 44, 55, 80, 110]
    assert [paper_layer(k, 56) for k in (8, 44, 55, 80, 110)] == [4, 22, 29, 40, 56]
    for depth in (20, 32, 56):
        for k in (8, 18, 44, 45, 54, 55, 80, 90):
            mapped = paper_layer(k, depth)
            assert layer_stage(mapped, depth) == layer_stage(k, 110)
            assert mapped % 2 == k % 2  # first or second conv of a block, as in ResNet-110


def test_norm_variants_place_batchnorm_as_described():
    def bns(net):
        return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    batch = cifar_resnet(20, "batch")
    assert len(bns(batch)) == len(conv_layers(batch))                   # one BatchNorm after every conv
    assert len(bns(cifar_resnet(20, None))) == 0
    final = cifar_resnet(20, "final")
    assert bns(final) == [final.final_norm] and final.final_norm.num_features == 64


def test_option_a_shortcut_has_no_parameters_and_pads_zeros():
    net = cifar_resnet(20, None, activation="identity")
    n_params = sum(p.numel() for p in net.parameters())
    convs = sum(c.weight.numel() for c in conv_layers(net))
    assert n_params == convs + 64 * 10 + 10
    block = net.stage2[0]
    x = torch.randn(2, 16, 8, 8, generator=gen())
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


def test_xavier_init_variance_and_generator_reproducibility():
    net = cifar_resnet(110, None, generator=gen(1))
    w = layer(net, 55).weight
    assert w.var().item() == pytest.approx(2 / (2 * 32 * 9), rel=0.1)
    assert layer(net, 110).weight.var().item() == pytest.approx(2 / 74, rel=0.3)
    again = cifar_resnet(110, None, generator=gen(1))
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters()))
    w = init_weights_(nn.Conv2d(32, 64, 3, bias=False), "he", generator=gen()).weight.detach()
    assert w.var().item() == pytest.approx(2 / (32 * 9), rel=0.1)


def test_forward_shapes_and_batchnorm_normalizes_each_conv():
    net = cifar_resnet(20, "batch", generator=gen())
    x = torch.randn(8, 3, 32, 32, generator=gen(2))
    assert net(x).shape == (8, 10)
    out = {}
    net.stage3[2].norm2.register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    net(x)
    assert out["o"].mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert out["o"].var(dim=(0, 2, 3), unbiased=False).sub(1).abs().max() < 1e-3


def test_unnormalized_output_grows_with_depth():
    # the paper's Figure 5: without BN the Xavier-initialized ResNet's output scale grows with depth
    x = torch.randn(16, 3, 32, 32, generator=gen(3))
    with torch.no_grad():
        shallow = cifar_resnet(8, None, generator=gen(4))(x).std().item()
        deep = cifar_resnet(56, None, generator=gen(4))(x).std().item()
    assert deep > 10 * shallow
    assert math.isfinite(deep)


def test_init_options_keep_the_default_network_and_change_only_what_they_name():
    default = cifar_resnet(20, None, generator=gen(5))
    same = cifar_resnet(20, None, generator=gen(5), classifier_init="xavier", conv_bias=None)
    assert all(torch.equal(a, b) for a, b in zip(default.parameters(), same.parameters()))
    # PyTorch's default classifier: the convs are unchanged, the Linear is U(±1/√64) with a drawn bias
    torch_fc = cifar_resnet(20, None, generator=gen(5), classifier_init="torch")
    assert all(torch.equal(layer(torch_fc, k).weight, layer(default, k).weight) for k in range(1, 20))
    bound = 1 / math.sqrt(64)
    assert torch_fc.fc.weight.abs().max() <= bound and torch_fc.fc.weight.abs().max() > 0.9 * bound
    assert torch_fc.fc.weight.var().item() == pytest.approx(bound ** 2 / 3, rel=0.3)
    assert torch_fc.fc.bias.abs().max() <= bound and torch_fc.fc.bias.abs().sum() > 0
    # conv biases: zero ones leave the function unchanged, PyTorch's shift it; weights stay the same
    zero_b = cifar_resnet(20, None, generator=gen(5), conv_bias="zero")
    torch_b = cifar_resnet(20, None, generator=gen(5), conv_bias="torch")
    for net in (zero_b, torch_b):
        assert all(torch.equal(layer(net, k).weight, layer(default, k).weight) for k in range(1, 21))
    assert all(layer(zero_b, k).bias.abs().sum() == 0 for k in range(1, 20))
    b = layer(torch_b, 5).bias                   # a 16 → 16 conv of stage 1
    assert b.shape == (16,) and b.abs().max() <= 1 / math.sqrt(16 * 9) and b.abs().sum() > 0
    x = torch.randn(4, 3, 32, 32, generator=gen(6))
    with torch.no_grad():
        assert torch.equal(zero_b(x), default(x))
        assert not torch.allclose(torch_b(x), default(x))
    # init="torch": every conv U(±1/√fan_in), variance 1/(3 fan_in)
    torch_all = cifar_resnet(110, None, init="torch", generator=gen(7))
    assert layer(torch_all, 55).weight.var().item() == pytest.approx(1 / (3 * 32 * 9), rel=0.1)
    with pytest.raises(ValueError, match="'zero'"):
        cifar_resnet(20, conv_bias="uniform")
    with pytest.raises(ValueError, match="'torch'"):
        cifar_resnet(20, classifier_init="default")
