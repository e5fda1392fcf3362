"""gradprobe.theory.gaussian: Gaussian expectations, R_f, R_b, the explosion rate and its variants."""
import math

import pytest
import torch

from gradprobe.networks.layers import ACTIVATIONS
from gradprobe.theory import gaussian as theory


def test_relu_rate_is_pi_over_pi_minus_one():
    assert theory.explosion_rate("relu") == pytest.approx(math.pi / (math.pi - 1), abs=1e-6)
    assert theory.RELU_RATE == pytest.approx(1.4669422, abs=1e-6)


def test_relu_forward_and_backward_ratios_closed_form():
    # Var[relu(z)] = 1/2 - 1/(2π); E[relu'(z)^2] = P(z > 0) = 1/2
    assert theory.forward_ratio("relu") == pytest.approx(0.5 - 1 / (2 * math.pi), abs=1e-6)
    assert theory.backward_ratio("relu") == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("name, paper", [("selu", 1.072), ("tanh", 1.178), ("relu", 1.467)])
def test_ghost_paper_equation_1_values(name, paper):
    # ghost2024 quotes these to three decimals (Eq. 1 with the square inside the expectation)
    assert round(theory.explosion_rate(name), 3) == paper


def test_identity_and_dropout_do_not_explode():
    assert theory.explosion_rate("identity") == pytest.approx(1.0, abs=1e-6)
    assert theory.explosion_rate("dropout", p=0.5) == pytest.approx(1.0, abs=1e-12)
    assert theory.forward_ratio("dropout", p=0.2) == pytest.approx(1 / 0.8)


def test_tanh_moments_against_monte_carlo():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4_000_000, generator=g, dtype=torch.float64)
    mc = (1 - torch.tanh(z) ** 2).pow(2).mean() / torch.tanh(z).var()
    assert theory.explosion_rate("tanh") == pytest.approx(float(mc), rel=2e-3)


def test_callable_matches_name():
    assert theory.explosion_rate(lambda x: torch.clamp(x, min=0)) == pytest.approx(theory.RELU_RATE, abs=1e-6)
    assert theory.explosion_rate(torch.tanh) == pytest.approx(theory.explosion_rate("tanh"), abs=1e-9)


def test_every_named_activation_has_a_rate_of_at_least_one():
    for name in ACTIVATIONS:
        assert theory.explosion_rate(name) >= 1 - 1e-9, name  # Var[φ] ≤ E[φ'²] (Poincaré)


def test_norm_rate_is_square_root():
    assert theory.norm_rate("relu") == pytest.approx(math.sqrt(theory.RELU_RATE))


def test_gaussian_expectation_moments():
    assert theory.gaussian_expectation(lambda x: x * x) == pytest.approx(1.0, abs=1e-9)
    assert theory.gaussian_expectation(lambda x: x, mean=2.0, std=3.0) == pytest.approx(2.0, abs=1e-9)
    assert theory.gaussian_expectation(lambda x: (x - 2) ** 2, mean=2.0, std=3.0) == pytest.approx(9.0, abs=1e-8)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="unknown activation 'rleu'"):
        theory.explosion_rate("rleu")
    with pytest.raises(ValueError, match="dropout probability"):
        theory.explosion_rate("dropout", p=1.0)
    with pytest.raises(ValueError, match="std must be positive"):
        theory.gaussian_expectation(lambda x: x, std=0)
    with pytest.raises(ValueError, match="or a callable"):
        theory.explosion_rate(3)


def test_predicted_rate_values():
    assert math.isclose(theory.predicted_rate("relu"), math.pi / (math.pi - 1), rel_tol=1e-9)
    assert math.isclose(theory.predicted_rate("relu", "layer"), 1.0, rel_tol=1e-9)
    assert math.isclose(theory.predicted_rate("tanh", "layer"), theory.explosion_rate("tanh"), rel_tol=1e-9)
    assert math.isclose(theory.predicted_rate("relu", width_ratio=2.0), 2 * math.pi / (math.pi - 1), rel_tol=1e-9)
    assert theory.predicted_rate("dropout", "layer") == 1.0
    with pytest.raises(ValueError, match="norm must be 'batch' or 'layer'"):
        theory.predicted_rate("relu", "group")
    with pytest.raises(ValueError, match="width_ratio"):
        theory.predicted_rate("relu", width_ratio=0)


def test_max_of_gaussians_variance():
    assert theory.max_of_gaussians_variance(4) == pytest.approx(0.4917, abs=1e-4)
    assert theory.max_of_gaussians_variance(1) == pytest.approx(1.0, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400_000, 2, generator=g, dtype=torch.float64).max(dim=1).values
    assert theory.max_of_gaussians_variance(2) == pytest.approx(float(z.var()), rel=0.01)   # 1 − 1/π
    with pytest.raises(ValueError, match="n must be a positive integer"):
        theory.max_of_gaussians_variance(0)
