"""One test over every network builder of gradprobe.networks: weights come from the builder's
``generator`` (same seed, same network; another seed, another one), weight layers are listed in
the order the data meets them, and the parameter count is the one the builder's docstring states."""
import pytest
import torch

from gradprobe.measure.hooks import hooks, weight_layers
from gradprobe.networks.convnext import convnext, convnext_parameter_count
from gradprobe.networks.imagenet_resnet import imagenet_resnet, preact_resnet, resnet_parameter_count
from gradprobe.networks.mlp import mlp, scaled_residual_net
from gradprobe.networks.resnet import cifar_resnet
from gradprobe.networks.vgg import vgg
from gradprobe.networks.vit import vit


def resnet_params(depth, norm, w, classes=10):
    n = (depth - 2) // 6
    bn = {"batch": 2 * w * (14 * n + 1), "final": 8 * w, None: 0}[norm]
    return 9 * (3 * w + (42 * n - 10) * w * w) + bn + 4 * w * classes + classes


def vgg_params(cfg, norm, in_channels=3, classes=10):
    total, c_in = 0, in_channels
    for c in cfg:
        if c != "M":
            total += 9 * c_in * c + c + (2 * c if norm else 0)
            c_in = c
    return total + c_in * classes + classes


def vit_params(depth, d, hidden, patch, tokens, in_channels=3, classes=10):
    return ((in_channels * patch * patch + 1) * d + tokens * d + depth * (4 * d * d + 2 * d * hidden + 9 * d + hidden)
            + 2 * d + d * classes + classes)


# name: (build from a generator, an input batch, the documented parameter count)
BUILDERS = {
    "mlp plain": (lambda g: mlp(4, 12, "relu", norm="batch", in_dim=7, out_dim=3, bias=True, generator=g),
                  (8, 7), 7 * 12 + 3 * 144 + 4 * 12 + 4 * 24 + 12 * 3 + 3),
    "mlp basic blocks": (lambda g: mlp(4, 12, "tanh", norm="layer", residual=True, out_dim=3, generator=g),
                         (8, 12), 4 * 144 + 4 * 24 + 12 * 3 + 3),
    "mlp pre-activation": (lambda g: mlp(5, 12, "selu", norm="batch", residual="preact", init="lecun", in_dim=7,
                                         out_dim=3, generator=g), (8, 7), 7 * 12 + 4 * 144 + 4 * 24 + 12 * 3 + 3),
    "mlp looks-linear": (lambda g: mlp(4, 12, "relu", init="looks_linear", in_dim=7, out_dim=3, generator=g),
                         (8, 7), 7 * 12 + 3 * 144 + 12 * 3 + 3),
    "scaled residual net": (lambda g: scaled_residual_net(3, width=8, generator=g), (8, 8), 3 * (2 * 64 + 4 * 8)),
    "cifar_resnet batch": (lambda g: cifar_resnet(14, "batch", width=4, generator=g), (4, 3, 16, 16),
                           resnet_params(14, "batch", 4)),
    "cifar_resnet final": (lambda g: cifar_resnet(8, "final", width=4, init="he", generator=g), (4, 3, 16, 16),
                           resnet_params(8, "final", 4)),
    "cifar_resnet none": (lambda g: cifar_resnet(8, None, width=4, num_classes=7, generator=g), (4, 3, 16, 16),
                          resnet_params(8, None, 4, classes=7)),
    "vgg batch": (lambda g: vgg([8, "M", 16, 16], norm="batch", generator=g), (4, 3, 16, 16),
                  vgg_params([8, "M", 16, 16], "batch")),
    "vgg group": (lambda g: vgg([8, "M", 12], norm="group", activation="tanh", generator=g), (4, 3, 16, 16),
                  vgg_params([8, "M", 12], "group")),
    "vgg plain": (lambda g: vgg([8, 8, "M"], norm=None, generator=g), (4, 3, 16, 16), vgg_params([8, 8, "M"], None)),
    "vit": (lambda g: vit(depth=2, dim=16, heads=2, mlp_ratio=2.0, patch=8, generator=g), (4, 3, 32, 32),
            vit_params(2, 16, 32, 8, tokens=16)),
    "imagenet_resnet 18": (lambda g: imagenet_resnet(18, num_classes=5, generator=g), (2, 3, 32, 32),
                           resnet_parameter_count(18, num_classes=5)),
    "preact_resnet 18": (lambda g: preact_resnet(18, num_classes=5, generator=g), (2, 3, 32, 32),
                         resnet_parameter_count(18, num_classes=5, preact=True)),
    "convnext": (lambda g: convnext((1, 2), (8, 16), num_classes=5, generator=g), (2, 3, 32, 32),
                 convnext_parameter_count((1, 2), (8, 16), num_classes=5)),
}


@pytest.fixture(params=sorted(BUILDERS), ids=str)
def builder(request):
    return BUILDERS[request.param]


def test_weights_come_from_the_generator(builder):
    build, _, _ = builder
    a, b = build(torch.Generator().manual_seed(0)), build(torch.Generator().manual_seed(0))
    other = build(torch.Generator().manual_seed(1))
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b) and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert all(not torch.equal(x.weight, y.weight) for x, y in zip(weight_layers(a), weight_layers(other)))


def test_weight_layers_are_listed_input_to_output(builder):
    build, shape, _ = builder
    model = build(torch.Generator().manual_seed(0))
    layers = weight_layers(model)
    called = []
    with hooks(layers, lambda i, inputs, output: called.append(i)), torch.no_grad():
        model(torch.randn(*shape, generator=torch.Generator().manual_seed(1)))
    assert called == list(range(len(layers)))


def test_parameter_count_is_the_documented_formula(builder):
    build, _, expected = builder
    model = build(torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in model.parameters()) == expected
