"""The small ViT: shapes, initialization, and no explosion at initialization."""
import pytest
import torch
from torch import nn

from gradprobe.measure.rates import network_rate
from gradprobe.networks import vit


def test_shapes_and_structure():
    model = vit.vit(depth=3, dim=64, heads=4, generator=torch.Generator().manual_seed(0))
    out = model(torch.randn(5, 3, 32, 32))
    assert out.shape == (5, 10)
    assert model.pos_embed.shape == (1, 64, 64)  # (32/4)² tokens
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 2 * 3 + 1
    assert model.rate_layers() == [m for b in model.blocks for m in (b.attn.proj, b.mlp.fc2)]
    assert model.blocks[0].mlp.fc1.out_features == 128  # mlp_ratio 2


def test_initialization_is_seeded_and_scaled():
    a = vit.vit(depth=2, dim=32, heads=2, generator=torch.Generator().manual_seed(3))
    b = vit.vit(depth=2, dim=32, heads=2, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    w = torch.cat([m.weight.detach().flatten() for m in a.modules() if isinstance(m, nn.Linear)])
    assert w.abs().max() <= 0.04 + 1e-7  # truncated at 2 std
    assert 0.015 < float(w.std()) < 0.02  # a normal truncated at ±2σ has std 0.88σ
    assert all(float(m.bias.detach().abs().max()) == 0 for m in a.modules() if isinstance(m, nn.Linear))


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = vit.Attention(16, 4)
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).view(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(x), expected)


def test_layer_normalized_transformer_does_not_explode():
    g = torch.Generator().manual_seed(0)
    model = vit.vit(depth=4, dim=64, heads=4, generator=g)
    x, y = torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
    r = network_rate(model, x, y)
    assert r.layers == 8 and abs(r.rate - 1.0) < 0.02


def test_argument_errors():
    with pytest.raises(ValueError, match="divisible by heads"):
        vit.vit(dim=30, heads=4)
    with pytest.raises(ValueError, match="divisible by patch"):
        vit.vit(patch=5)
    with pytest.raises(ValueError, match="unknown activation"):
        vit.vit(activation="swish")
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        vit.vit(depth=0)
