"""gradprobe.measure.discs, Philipp et al.'s Figure 2: the sphere grid, shared products against one
network per pixel, colours, roughness."""
import math

import pytest
import torch

from gradprobe.measure import discs
from gradprobe.networks.mlp import mlp

KINDS = {"ReLU": dict(activation="relu"), "batch-ReLU": dict(activation="relu", norm="batch"),
         "layer-tanh": dict(activation="tanh", norm="layer", init="lecun"),
         "batch-tanh ResNet": dict(activation="tanh", norm="batch", init="lecun", residual="preact"),
         "looks-linear ReLU": dict(activation="relu", init="looks_linear")}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def network(kind, hidden, in_dim=12):
    """A network of Philipp et al.'s kind with ``hidden`` hidden layers of width 10 and a 3-output head."""
    return lambda g: mlp(hidden, 10, in_dim=in_dim, out_dim=3, generator=g, **KINDS[kind])


def test_sphere_grid():
    c, mask = discs.sphere_grid(41)
    assert torch.allclose(c.norm(dim=1), torch.ones(len(c)), atol=1e-6)
    assert len(c) == int(mask.sum()) and abs(len(c) / 41 ** 2 - math.pi / 4) < 0.02
    centre = c[int(mask[:20].sum()) + int(mask[20, :20].sum())]            # pixel (20, 20)
    assert torch.allclose(centre, torch.tensor([1.0, 0, 0]), atol=1e-6)
    assert float(c[:, 0].min()) < -0.99                                   # the rim is the antipode
    with pytest.raises(ValueError, match="resolution"):
        discs.sphere_grid(1)


@pytest.mark.parametrize("name,batch", [("ReLU", 1), ("batch-ReLU", 4), ("layer-tanh", 1), ("batch-tanh ResNet", 4),
                                        ("looks-linear ReLU", 2)])
@pytest.mark.parametrize("layer", [0, 3])
def test_shared_products_equal_one_network_per_pixel(name, batch, layer):
    build = network(name, 7)
    weights = discs.layer_weight_samples(build, layer, [gen(1), gen(2), gen(3)])
    net = build(gen(1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(batch, 12, generator=gen(4))
    c, _ = discs.sphere_grid(9)
    shared = discs.disc_outputs(net, x, layer, weights, c, chunk=16)
    naive = discs.disc_outputs_naive(net, x, layer, weights, c)
    assert shared.shape == (len(c), 3)
    assert torch.allclose(shared, naive, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # model untouched


def test_looks_linear_disc_is_linear_in_c():
    build = network("looks-linear ReLU", 9)
    weights = discs.layer_weight_samples(build, 0, [gen(1), gen(2), gen(3)])
    x = torch.randn(1, 12, generator=gen(4))
    c, _ = discs.sphere_grid(7)
    out = discs.disc_outputs(build(gen(1)), x, 0, weights, c)
    basis = discs.disc_outputs(build(gen(1)), x, 0, weights, torch.eye(3))
    assert torch.allclose(out, c @ basis, atol=1e-4)


def test_argument_errors():
    net = mlp(3, 6, "relu", in_dim=5, out_dim=3, generator=gen())
    with pytest.raises(ValueError, match="weights must be"):
        discs.disc_outputs(net, torch.randn(1, 5), 0, torch.randn(3, 6, 6), torch.eye(3))
    with pytest.raises(ValueError, match="out of range"):
        discs.disc_outputs(net, torch.randn(1, 5), 9, torch.randn(3, 6, 5), torch.eye(3))
    with pytest.raises(ValueError, match="coefficients"):
        discs.disc_outputs(net, torch.randn(1, 5), 0, torch.randn(3, 6, 5), torch.ones(4, 2))


def test_colours_and_roughness():
    rgb = discs.colours(torch.tensor([[5.0, 0, 0], [0, 0, -2.0]]))
    assert torch.allclose(rgb, torch.tensor([[1.0, 0.5, 0.5], [0.5, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="3-dimensional"):
        discs.colours(torch.ones(2, 4))
    mask = torch.ones(20, 20, dtype=torch.bool)
    assert discs.roughness(torch.full((20, 20, 3), 0.3), mask) == 0.0
    noise = torch.rand(200, 200, 3, generator=gen())
    assert discs.roughness(noise, torch.ones(200, 200, dtype=torch.bool)) == pytest.approx(0.66, abs=0.03)
    with pytest.raises(ValueError, match="differ"):
        discs.roughness(noise, mask)
    image, m = discs.legend_disc(16)
    assert image.shape == (16, 16, 3) and torch.all(image[~m] == 1.0)
