"""gradprobe.networks.layers: activations, initializations, looks-linear, the layer types."""
import pytest
import torch
from torch import nn

from gradprobe.networks.layers import (ACTIVATIONS, INITS, NORMS, Layer, PreActLayer, activation_fn,
                                       activation_module, init_weights_, looks_linear_)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _weights(init, n_in=400, n_out=300, activation="relu"):
    return Layer(n_in, n_out, activation=activation, init=init, generator=gen()).linear.weight.detach()


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


@pytest.mark.parametrize("init", INITS)
def test_every_init_draws_from_its_generator_and_zeroes_the_bias(init):
    a = init_weights_(nn.Conv2d(8, 16, 3), init, generator=gen(1))
    b = init_weights_(nn.Conv2d(8, 16, 3), init, generator=gen(1))
    c = init_weights_(nn.Conv2d(8, 16, 3), init, generator=gen(2))
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    assert torch.count_nonzero(a.bias) == 0 and torch.isfinite(a.weight).all()
    with pytest.raises(ValueError, match="unknown init 'kaiming'"):
        init_weights_(nn.Linear(2, 2), "kaiming")


def test_every_activation_builds_and_matches_its_function():
    x = torch.linspace(-3, 3, 13)
    for name in ACTIVATIONS:
        module = activation_module(name)
        if name != "dropout":
            assert torch.allclose(module(x), activation_fn(name)(x))
    assert activation_module("leaky_relu")(torch.tensor([-1.0])).item() == pytest.approx(-0.01)
    assert isinstance(activation_module("dropout", 0.2), nn.Dropout) and activation_module("dropout", 0.2).p == 0.2
    with pytest.raises(ValueError, match="dropout probability"):
        activation_module("dropout", 1.0)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activation_fn("swish")


@pytest.mark.parametrize("norm", NORMS)
def test_layer_is_linear_norm_activation(norm):
    layer = Layer(5, 6, activation="tanh", norm=norm, generator=gen())
    x = torch.randn(4, 5, generator=gen(1))
    assert torch.allclose(layer(x), torch.tanh(layer.norm(layer.linear(x))))
    assert (norm is None) == isinstance(layer.norm, nn.Identity)
    skip = Layer(5, 6, activation="tanh", norm=norm, generator=gen(), skip_activation=True)
    assert torch.allclose(skip(x), skip.norm(skip.linear(x)))


def test_layer_arguments_are_keywords_and_checked():
    with pytest.raises(TypeError):
        Layer(3, 4, "relu")
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        Layer(3, 4, activation="relu", norm="group")
    with pytest.raises(ValueError, match="n_out must be a positive integer"):
        Layer(3, 0, activation="relu")
    assert Layer(3, 4, activation="relu", bias=True).linear.bias is not None


def test_preact_layer_is_norm_activation_linear():
    layer = PreActLayer(6, 6, activation="relu", norm="batch", generator=gen())
    x = torch.randn(4, 6, generator=gen(1))
    assert torch.allclose(layer(x), layer.linear(torch.relu(layer.norm(x))))


def test_looks_linear_layer_mirrors_its_units():
    first = looks_linear_(nn.Linear(5, 8), first=True, generator=gen())
    assert torch.allclose(first.weight[:4], -first.weight[4:])
    hidden = looks_linear_(nn.Linear(8, 8), generator=gen())
    a = hidden.weight[:4, :4]
    assert torch.allclose(hidden.weight, torch.cat([torch.cat([a, -a], 1), torch.cat([-a, a], 1)], 0))
    assert torch.allclose(a @ a.T, torch.eye(4), atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        looks_linear_(nn.Linear(4, 5), first=True)
    assert torch.count_nonzero(looks_linear_(nn.Linear(8, 3), generator=gen()).bias) == 0
