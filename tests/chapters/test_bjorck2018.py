"""gradprobe.chapters.bjorck2018: Figure 5's layers, Figure 6's dominant class, Figure 3's probe."""
import pytest
import torch

from gradprobe.chapters.bjorck2018 import FIGURE5_LAYERS, dominant_class_share, probe_training_steps
from gradprobe.networks.resnet import cifar_resnet, layer, layer_stage


def gen(n=0):
    return torch.Generator().manual_seed(n)


def test_figure5_layers_span_the_resnet_110_evenly_and_end_at_the_classifier():
    net = cifar_resnet(110)
    *convs, last = FIGURE5_LAYERS
    assert layer(net, last) is net.fc
    assert all(isinstance(layer(net, k), torch.nn.Conv2d) for k in convs)
    steps = {b - a for a, b in zip(convs, convs[1:])}
    assert len(steps) == 1 and {layer_stage(k, 110) for k in convs} == {1, 2, 3}


def test_dominant_class_share():
    made = torch.zeros(10, 4)
    made[:9, 2] = 1.0
    made[9, 0] = 1.0
    assert dominant_class_share(made).cls == 2 and dominant_class_share(made).share == pytest.approx(0.9)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    found = dominant_class_share(made, labels)      # images of class 2 are not counted
    assert found.cls == 2 and found.share == pytest.approx(7 / 8) and found.probability == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="expected output gradients"):
        dominant_class_share(torch.zeros(3))


def test_probe_training_steps_scans_the_requested_batches():
    g = gen(1)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    model = cifar_resnet(8, None, generator=gen())
    w0 = layer(model, 3).weight.detach().clone()
    found, history = probe_training_steps(model, x, y, [1e-4, 1e-3], lr=1e-3, batch_size=16, batches=(1, 3),
                                          generator=gen(2))
    assert sorted(found) == [1, 3] and all(r.shape == (2,) for r in found.values())
    assert history.steps == 3 and not history.diverged
    assert not torch.equal(w0, layer(model, 3).weight)       # it trained in between
    with pytest.raises(ValueError, match="start at 1"):
        probe_training_steps(model, x, y, [1e-4], lr=1e-3, batch_size=16, batches=(0,))
