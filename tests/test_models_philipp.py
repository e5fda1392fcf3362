"""The options models.py gained for Philipp et al.: looks-linear init and pre-activation ResNets."""
import pytest
import torch

from gradprobe import models


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_looks_linear_network_is_linear_at_init():
    net = models.mlp(6, 10, "relu", init="looks_linear", in_dim=7, out_dim=3, generator=gen())
    a, b = torch.randn(5, 7, generator=gen(1)), torch.randn(5, 7, generator=gen(2))
    with torch.no_grad():
        assert torch.allclose(net(2 * a - 3 * b), 2 * net(a) - 3 * net(b), atol=1e-5)


def test_looks_linear_mirrors_units_and_preserves_norm():
    net = models.mlp(5, 8, "relu", init="looks_linear", generator=gen())
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
        models.mlp(3, 8, "tanh", init="looks_linear")
    with pytest.raises(ValueError, match="even"):
        models.mlp(3, 7, "relu", init="looks_linear")
    with pytest.raises(ValueError, match="plain ReLU"):
        models.mlp(3, 8, "relu", init="looks_linear", residual="preact")
    with pytest.raises(ValueError, match="even"):
        models.looks_linear_(torch.nn.Linear(4, 5), first=True)


def test_preact_resnet_structure_and_block():
    net = models.mlp(7, 6, "relu", norm="batch", residual="preact", in_dim=5, out_dim=2, generator=gen())
    blocks = [m for m in net if isinstance(m, models.PreActBlock)]
    assert len(blocks) == 3 and len(net.linears()) == 7
    assert isinstance(net[0].act, torch.nn.Module) and net[0].linear.in_features == 5
    x = torch.randn(4, 6, generator=gen(1))
    b = blocks[0]
    assert torch.allclose(b(x), x + b.residual(x))
    # pre-activation order: norm -> act -> linear
    l1 = b.layer1
    assert torch.allclose(l1(x), l1.linear(torch.relu(l1.norm(x))))


def test_preact_errors_and_existing_options_unchanged():
    with pytest.raises(ValueError, match="odd"):
        models.mlp(4, 6, residual="preact")
    with pytest.raises(ValueError, match="unknown residual"):
        models.mlp(4, 6, residual="pre-act")
    net = models.mlp(4, 8, "relu", norm="batch", residual=True)          # the ghost paper's basic blocks
    assert not any(isinstance(m, models.PreActBlock) for m in net.modules())
    assert models.INITS == ("he", "lecun", "xavier", "orthogonal")
