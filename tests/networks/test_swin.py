"""gradprobe.networks.swin: a small Swin Transformer with windowed attention and LayerNorm."""
import pytest
import torch
from torch import nn

from gradprobe.networks.swin import SwinBlock, shift_mask, swin, window_merge, window_partition


def gen(n=0):
    return torch.Generator().manual_seed(n)


def test_output_shape_rate_layers_and_parameter_count():
    model = swin(depths=(2, 2), dim=16, heads=(2, 4), window=4, patch=2, mlp_ratio=2.0, generator=gen())
    assert model(torch.randn(3, 3, 32, 32, generator=gen(1))).shape == (3, 10)
    assert len(model.rate_layers()) == 8 and all(isinstance(m, nn.Linear) for m in model.rate_layers())
    d0, d1, w = 16, 32, 4
    block = lambda d, h: 4 * d * d + 4 * d + (2 * w - 1) ** 2 * h + 2 * d * (2 * d) + 2 * d + d + 4 * d
    want = (3 * 4 + 1) * d0 + 2 * d0 + 2 * block(d0, 2) + (8 * d0 * d0 + 8 * d0) + 2 * block(d1, 4) + 2 * d1 \
        + d1 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == want


def test_window_partition_and_merge_are_inverse_and_group_neighbours():
    x = torch.arange(2 * 8 * 8 * 1, dtype=torch.float32).view(2, 8, 8, 1)
    windows = window_partition(x, 4)
    assert windows.shape == (8, 16, 1)
    assert windows[1, :, 0].tolist() == x[0, :4, 4:8, 0].flatten().tolist()   # the second window: top right
    torch.testing.assert_close(window_merge(windows, 4, 8, 8), x)


def test_shift_mask_separates_the_regions_the_roll_brings_together():
    mask = shift_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()                     # the top-left window is one region
    last = mask[3]                                  # the bottom-right window holds 4 regions of 2×2
    assert int((last == 0).sum()) == 4 * 4 * 4


def test_attention_stays_inside_windows_without_shift_and_crosses_them_with_it():
    for shift, crosses in ((0, False), (2, True)):
        block = SwinBlock(8, 2, 4, shift, 16, "gelu")
        x = torch.randn(1, 8, 8, 8, generator=gen(2), requires_grad=True)
        block(x)[0, 2, 2].sum().backward()          # a token of the top-left window, not on the roll's seam
        outside = x.grad[0, :, 4:].abs().sum() + x.grad[0, 4:, :].abs().sum()
        assert bool(outside > 0) == crosses


def test_layer_normalized_swin_does_not_explode_at_init():
    from gradprobe.measure.rates import network_rate

    model = swin(depths=(2, 2), dim=16, heads=(2, 4), generator=gen(3))
    x = torch.randn(32, 3, 32, 32, generator=gen(4))
    y = torch.randint(0, 10, (32,), generator=gen(4))
    assert network_rate(model, x, y).rate == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("kwargs,match", [(dict(window=3), "not a multiple of window"),
                                          (dict(heads=(3, 4, 8)), "not divisible by 3 heads"),
                                          (dict(depths=(2, 2)), "one entry per stage"),
                                          (dict(activation="nope"), "activation")])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        swin(**kwargs)
