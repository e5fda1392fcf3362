import math

import pytest
import torch
from torch import nn

from gradprobe import models


def _weights(init, n_in=400, n_out=300, activation="relu"):
    net = models.mlp(1, n_out, activation, init=init, in_dim=n_in, generator=torch.Generator().manual_seed(0))
    return net.linears()[0].weight.detach()


@pytest.mark.parametrize("init, expected", [("he", lambda i, o: 2 / i), ("lecun", lambda i, o: 1 / i),
                                            ("xavier", lambda i, o: 2 / (i + o))])
def test_init_variances(init, expected):
    w = _weights(init)
    assert w.var().item() == pytest.approx(expected(400, 300), rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=3e-3)


def test_orthogonal_init_is_orthogonal_with_relu_gain():
    w = _weights("orthogonal", n_in=200, n_out=200)
    assert torch.allclose(w @ w.T, 2.0 * torch.eye(200), atol=1e-4)
    w = _weights("orthogonal", n_in=200, n_out=200, activation="tanh")
    assert torch.allclose(w @ w.T, torch.eye(200), atol=1e-4)


def test_layer_structure_and_head():
    net = models.mlp(3, 16, "tanh", norm="layer", in_dim=5, out_dim=2)
    assert [tuple(l.weight.shape) for l in net.linears()] == [(16, 5), (16, 16), (16, 16)]
    assert isinstance(net[0].norm, nn.LayerNorm)
    assert net(torch.randn(4, 5)).shape == (4, 2)


def test_residual_is_he_basic_block():
    torch.manual_seed(0)
    net = models.mlp(4, 8, "relu", norm="batch", residual=True)
    assert len(net) == 2 and len(net.linears()) == 4
    block, x = net[0], torch.randn(6, 8)
    expected = torch.relu(block.layer2.norm(block.layer2.linear(block.layer1(x))) + x)
    assert torch.allclose(block(x), expected)


def test_same_generator_seed_same_weights():
    a = models.mlp(3, 10, generator=torch.Generator().manual_seed(5))
    b = models.mlp(3, 10, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_every_activation_builds_and_matches_its_function():
    x = torch.linspace(-3, 3, 13)
    for name in models.ACTIVATIONS:
        module = models.activation(name)
        if name != "dropout":
            assert torch.allclose(module(x), models.activation_fn(name)(x))
    assert models.activation("leaky_relu")(torch.tensor([-1.0])).item() == pytest.approx(-0.01)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        models.mlp(2, 4, "swish")
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        models.mlp(2, 4, norm="group")
    with pytest.raises(ValueError, match="unknown init 'kaiming'"):
        models.mlp(2, 4, init="kaiming")
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        models.mlp(0, 4)
    with pytest.raises(ValueError, match="depth must be even"):
        models.mlp(3, 4, residual=True)
    with pytest.raises(ValueError, match="in_dim == width"):
        models.mlp(2, 4, residual=True, in_dim=3)
