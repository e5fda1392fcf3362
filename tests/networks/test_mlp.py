"""gradprobe.networks.mlp: plain networks, He's basic blocks, Philipp's pre-activation ResNet,
looks-linear networks and the 1/√L residual network."""
import math

import pytest
import torch
from torch import nn

from gradprobe.networks.mlp import PreActBlock, ScaledResidualBlock, mlp, scaled_residual_net


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_layer_structure_and_head():
    net = mlp(3, 16, "tanh", norm="layer", in_dim=5, out_dim=2)
    assert [tuple(l.weight.shape) for l in net.linears()] == [(16, 5), (16, 16), (16, 16)]
    assert isinstance(net[0].norm, nn.LayerNorm)
    assert net(torch.randn(4, 5)).shape == (4, 2)


def test_residual_is_he_basic_block():
    torch.manual_seed(0)
    net = mlp(4, 8, "relu", norm="batch", residual=True)
    assert len(net) == 2 and len(net.linears()) == 4
    block, x = net[0], torch.randn(6, 8)
    expected = torch.relu(block.layer2.norm(block.layer2.linear(block.layer1(x))) + x)
    assert torch.allclose(block(x), expected)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        mlp(2, 4, "swish")
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        mlp(2, 4, norm="group")
    with pytest.raises(ValueError, match="unknown init 'kaiming'"):
        mlp(2, 4, init="kaiming")
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        mlp(0, 4)
    with pytest.raises(ValueError, match="depth must be even"):
        mlp(3, 4, residual=True)
    with pytest.raises(ValueError, match="in_dim == width"):
        mlp(2, 4, residual=True, in_dim=3)


def test_looks_linear_network_is_linear_at_init():
    net = mlp(6, 10, "relu", init="looks_linear", in_dim=7, out_dim=3, generator=gen())
    a, b = torch.randn(5, 7, generator=gen(1)), torch.randn(5, 7, generator=gen(2))
    with torch.no_grad():
        assert torch.allclose(net(2 * a - 3 * b), 2 * net(a) - 3 * net(b), atol=1e-5)


def test_looks_linear_mirrors_units_and_preserves_norm():
    net = mlp(5, 8, "relu", init="looks_linear", generator=gen())
    x = torch.randn(4, 8, generator=gen(1))
    zs = []
    hooks = [lin.register_forward_hook(lambda m, i, o: zs.append(o)) for lin in net.linears()]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    for z in zs:
        assert torch.allclose(z[:, :4], -z[:, 4:], atol=1e-6)           # z = [u, -u]
    for z0, z1 in zip(zs[1:], zs[2:]):                                    # hidden layers: ‖u‖ kept exactly
        assert torch.allclose(z0.norm(dim=1), z1.norm(dim=1), rtol=1e-5)


def test_looks_linear_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="plain ReLU"):
        mlp(3, 8, "tanh", init="looks_linear")
    with pytest.raises(ValueError, match="even"):
        mlp(3, 7, "relu", init="looks_linear")
    with pytest.raises(ValueError, match="plain ReLU"):
        mlp(3, 8, "relu", init="looks_linear", residual="preact")


def test_preact_resnet_structure_and_block():
    net = mlp(7, 6, "relu", norm="batch", residual="preact", in_dim=5, out_dim=2, generator=gen())
    blocks = [m for m in net if isinstance(m, PreActBlock)]
    assert len(blocks) == 3 and len(net.linears()) == 7
    assert isinstance(net[0].act, torch.nn.Module) and net[0].linear.in_features == 5
    x = torch.randn(4, 6, generator=gen(1))
    b = blocks[0]
    assert torch.allclose(b(x), x + b.residual(x))
    # pre-activation order: norm -> act -> linear
    l1 = b.layer1
    assert torch.allclose(l1(x), l1.linear(torch.relu(l1.norm(x))))


def test_preact_errors_and_basic_blocks_stay_basic():
    with pytest.raises(ValueError, match="odd"):
        mlp(4, 6, residual="preact")
    with pytest.raises(ValueError, match="unknown residual"):
        mlp(4, 6, residual="pre-act")
    net = mlp(4, 8, "relu", norm="batch", residual=True)          # the ghost paper's basic blocks
    assert not any(isinstance(m, PreActBlock) for m in net.modules())


def test_scaled_residual_block_is_x_plus_branch_over_sqrt_L():
    net = scaled_residual_net(4, width=8, generator=gen())
    assert len(net) == 4 and all(isinstance(b, ScaledResidualBlock) and b.scale == 0.5 for b in net)
    block, x = net[0], torch.randn(16, 8, generator=gen(1))
    first, second = block.branch
    branch = second.norm(second.linear(torch.relu(first.norm(first.linear(x)))))   # BN ∘ W2 ∘ relu ∘ BN ∘ W1
    assert torch.allclose(block(x), x + branch / math.sqrt(4), atol=1e-6)
    with pytest.raises(ValueError, match="blocks must be a positive integer"):
        scaled_residual_net(0)
