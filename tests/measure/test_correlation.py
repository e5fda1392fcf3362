"""gradprobe.measure.correlation: ρ = 1 for inputs independent of the weights, large when aligned."""
import pytest
import torch
from torch import nn

from gradprobe.measure.correlation import correlation, uncorrelated_variance


def test_correlation_is_one_for_independent_inputs_and_large_when_aligned():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 32, bias=True)
    nn.init.normal_(lin.weight, generator=g)
    x = torch.randn(4096, 64, generator=g) * torch.linspace(0.5, 2.0, 64)  # independent, unequal variances
    assert abs(float(correlation(lin, x, [lin])[0]) - 1.0) < 0.05
    # inputs along one direction u = (±1, ..., ±1), and weights whose rows are u:
    # Var[y] = ‖u‖⁴ Var[a] while Σ_j u_j⁴ Var[a] = 64 Var[a], so ρ = 64
    u = torch.randn(64, generator=g).sign()
    with torch.no_grad():
        lin.weight.copy_(u.expand(32, 64))
    aligned = torch.randn(4096, 1, generator=g) * u
    assert abs(float(correlation(lin, aligned, [lin])[0]) - 64) < 64 * 0.05


def test_correlation_handles_conv_padding():
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    nn.init.normal_(conv.weight, generator=g)
    x = torch.randn(512, 8, 6, 6, generator=g)  # 6×6: a third of the taps fall on padding at the border
    assert abs(float(correlation(conv, x, [conv])[0]) - 1.0) < 0.05
    with pytest.raises(ValueError, match="Linear, Conv1d and Conv2d"):
        uncorrelated_variance(nn.Conv3d(1, 1, 1), torch.ones(1, 1, 1, 1))
