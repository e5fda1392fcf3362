"""gradprobe.chapters.philipp2018: the architectures of Figure 1 and their survey at initialization."""
import pytest
import torch
from torch import nn

from gradprobe.chapters.philipp2018 import ARCHITECTURES, architecture, init_survey
from gradprobe.measure.gsc import activation_modules
from gradprobe.networks.mlp import PreActBlock


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_is_what_its_name_says(name):
    net = architecture(name, 10, 8, in_dim=5, out_dim=3, generator=gen())
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 10 and linears[0].in_features == 5 and linears[-1].out_features == 3
    assert any(isinstance(m, PreActBlock) for m in net.modules()) == name.endswith(" ResNet")
    norms = {type(m) for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm))}
    expected = {"batch-": {nn.BatchNorm1d}, "layer-": {nn.LayerNorm}}.get(name[:6], set())
    assert norms == expected
    nonlinearity = name.removeprefix("batch-").removeprefix("layer-").removeprefix("looks-linear ").split()[0]
    assert {m.name for m in activation_modules(net)} == {nonlinearity.lower()}
    # every plain architecture comes with its ResNet, except looks-linear (a plain ReLU network)
    assert name.endswith(" ResNet") or name.startswith("looks-linear") or f"{name} ResNet" in ARCHITECTURES


def test_architecture_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        architecture("gelu", 10, 8)
    with pytest.raises(ValueError, match="linear_layers"):
        architecture("ReLU", 1, 8)


def test_init_survey_shapes():
    s = init_survey("SELU ResNet", 2, linear_layers=10, width=12, batch=16, data=gen(1), weights=gen(2))
    assert s.gsc.shape == (2, 6) and s.depths == [1, 3, 5, 7, 9, 10]
    assert s.std.shape == (2, 8) and s.rates.shape == (2,)
    assert s.block_values("k").shape == (2, 4)
    plain = init_survey("ReLU", 1, linear_layers=6, width=8, batch=10, data=gen(1), weights=gen(2))
    assert plain.blocks == [[]] and plain.gsc.shape == (1, 6)
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        init_survey("ReLU", 0)


def test_batch_relu_explodes_and_looks_linear_does_not():
    bn = init_survey("batch-ReLU", 1, linear_layers=30, width=64, batch=64, data=gen(1), weights=gen(2))
    ll = init_survey("looks-linear ReLU", 1, linear_layers=30, width=64, batch=64, data=gen(1), weights=gen(2))
    assert float(bn.rates[0]) == pytest.approx((torch.pi / (torch.pi - 1)) ** 0.5, rel=0.05)
    assert float(ll.rates[0]) == pytest.approx(1.0, abs=0.01)
