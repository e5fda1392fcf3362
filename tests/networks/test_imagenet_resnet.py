"""gradprobe.networks.imagenet_resnet: torchvision's ResNet layout (names, counts, strides, init)
and the pre-activation variant."""
import pytest
import torch
from torch import nn

from gradprobe.networks.imagenet_resnet import (RESNET_LAYERS, branch_scale_, imagenet_resnet, last_gamma_,
                                                preact_resnet, resnet50, resnet_parameter_count)


def gen(seed):
    return torch.Generator().manual_seed(seed)

# torchvision's published parameter counts (its documentation's model table)
TORCHVISION_COUNTS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


@pytest.mark.parametrize("depth", sorted(RESNET_LAYERS))
def test_parameter_counts_are_torchvisions(depth):
    with torch.device("meta"):
        model = imagenet_resnet(depth)
        preact = preact_resnet(depth)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_COUNTS[depth] == resnet_parameter_count(depth)
    assert sum(p.numel() for p in preact.parameters()) == resnet_parameter_count(depth, preact=True)


def test_resnet50_has_torchvisions_names_and_shapes():
    with torch.device("meta"):
        state = resnet50().state_dict()
    assert list(state)[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                               "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert state["layer4.2.bn3.running_var"].shape == (2048,)
    assert state["fc.weight"].shape == (1000, 2048) and list(state)[-1] == "fc.bias"
    assert len([k for k in state if k.endswith("num_batches_tracked")]) == 53


def test_forward_strides_and_initialization():
    model = resnet50(num_classes=7, generator=torch.Generator().manual_seed(0))
    seen = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(lambda m, a, out, name=name: seen.update({name: out.shape}))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    assert [seen[k][1:] for k in sorted(seen)] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)   # v1.5
    w = model.layer3[1].conv2.weight                                     # kaiming_normal, fan_out = 256·9
    assert float(w.var()) == pytest.approx(2 / (256 * 9), rel=0.05)
    assert torch.all(model.fc.weight.abs() <= 1 / 2048 ** 0.5)
    zero = imagenet_resnet(50, zero_init_residual=True)
    assert all(float(b.bn3.weight.abs().sum()) == 0 for stage in (zero.layer1, zero.layer4) for b in stage)


def test_preact_blocks_keep_an_identity_stream():
    model = preact_resnet(50, num_classes=3, generator=torch.Generator().manual_seed(0))
    block = model.layer1[1]
    x = torch.randn(2, 256, 8, 8)
    with torch.no_grad():
        block.conv3.weight.zero_()                      # branch off: the block is the identity
        assert torch.equal(block(x), x)
    assert isinstance(model.layer2[0].downsample, nn.Conv2d) and model.bn.num_features == 2048
    with pytest.raises(ValueError, match="depth must be one of"):
        preact_resnet(20)


def test_last_gamma_and_branch_scale_change_only_the_last_layer_of_each_branch():
    net = last_gamma_(imagenet_resnet(18, num_classes=10, generator=gen(0)), 0.0)
    assert all(float(b.bn2.weight.detach().abs().max()) == 0 for stage in (net.layer1, net.layer2) for b in stage)
    assert all(float(b.bn1.weight.detach().min()) == 1 for b in net.layer1)
    x = torch.relu(torch.randn(2, 64, 8, 8, generator=gen(1)))
    block = net.layer1[0].train()
    assert torch.allclose(block(x), torch.relu(x))                        # γ = 0: the block is relu(x + 0)
    plain, scaled = (preact_resnet(18, num_classes=10, generator=gen(2)) for _ in range(2))
    branch_scale_(scaled, 0.25)
    assert torch.equal(scaled.layer1[0].conv2.weight, plain.layer1[0].conv2.weight * 0.25)
    assert torch.equal(scaled.layer1[0].conv1.weight, plain.layer1[0].conv1.weight)
