"""gradprobe.measure.batchnorm: the running statistics of BatchNorm layers as a measurement."""
import math

import pytest
import torch

from gradprobe.measure.batchnorm import batchnorm_layers, bn_running_std, calibrate_running_stats
from gradprobe.networks.resnet import cifar_resnet
from gradprobe.networks.vgg import vgg


def test_batchnorm_layers_are_listed_input_to_output():
    net = cifar_resnet(8, "batch")
    assert batchnorm_layers(net) == [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorm_layers(net)[0] is net.norm1 and batchnorm_layers(vgg([4], norm="group")) == []


def test_bn_running_std_after_training_step():
    model = vgg([4, 4], norm="batch")
    x = 3.0 * torch.randn(64, 3, 8, 8)
    model.train()
    for m in model.norms():
        m.momentum = None  # cumulative average: one batch gives exactly the batch variance
    model(x)
    first = model.features[0](x)
    expected = first.var(dim=(0, 2, 3), unbiased=True).mean().sqrt()
    assert math.isclose(bn_running_std(model)[0].item(), expected.item(), rel_tol=1e-5)


def test_bn_running_std_needs_batchnorm():
    with pytest.raises(ValueError, match="no BatchNorm"):
        bn_running_std(vgg([4], norm="layer"))


def test_calibrate_running_stats_averages_batches_and_restores_mode():
    model = vgg([4, "M", 4], norm="batch")
    model.eval()
    x = 2.0 * torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    calibrate_running_stats(model, x, batch_size=32)
    assert not model.training and model.norms()[0].momentum == 0.1
    expected = model.features[0](x).var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(model.norms()[0].running_var, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no BatchNorm"):
        calibrate_running_stats(vgg([4], norm=None), x)
