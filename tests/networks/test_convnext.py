"""gradprobe.networks.convnext: torchvision's ConvNeXt layout and count, layer scale, LayerNorm."""
import pytest
import torch

from gradprobe.networks.convnext import convnext, convnext_parameter_count


def test_convnext_tiny_has_torchvisions_parameter_count_and_names():
    with torch.device("meta"):
        model = convnext()
    assert sum(p.numel() for p in model.parameters()) == 28_589_128 == convnext_parameter_count()
    names = list(dict(model.named_parameters()))
    assert names[:4] == ["features.0.0.weight", "features.0.0.bias", "features.0.1.weight", "features.0.1.bias"]
    assert "features.1.0.layer_scale" in names and "features.1.0.block.3.weight" in names
    assert names[-2:] == ["classifier.2.weight", "classifier.2.bias"]


def test_layer_scale_switches_the_branches_off_at_initialization():
    gen = torch.Generator().manual_seed(0)
    model = convnext((1, 1), (8, 16), num_classes=5, generator=gen)
    block = model.features[1][0]
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        assert torch.allclose(block(x), x, atol=1e-4)           # x + 1e-6·branch
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert float(block.block[3].weight.detach().std()) == pytest.approx(0.02, rel=0.15)
    with pytest.raises(ValueError, match="one entry per stage"):
        convnext((1, 1), (8,))
