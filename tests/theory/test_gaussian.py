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
    with pytest.raises(ValueError, match="norm must be 'batch', 'layer' or 'group'"):
        theory.predicted_rate("relu", "instance")
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


def test_group_norm_rate_lies_between_batch_and_layer_norm():
    import math as _m

    from gradprobe.theory.gaussian import predicted_rate

    # ReLU: E[φ]² = 1/(2π), Var[φ] = 1/2 − 1/(2π), E[φ'²] = 1/2
    for g in (1, 2, 4, 16):
        want = 0.5 / (0.5 - 1 / (2 * _m.pi) + (1 - 1 / g) / (2 * _m.pi))
        assert predicted_rate("relu", "group", group_size=g) == pytest.approx(want, rel=1e-9)
    assert predicted_rate("relu", "group", group_size=1) == pytest.approx(predicted_rate("relu", "batch"), rel=1e-9)
    assert predicted_rate("tanh", "group", group_size=4) == pytest.approx(predicted_rate("tanh", "batch"), rel=1e-6)
    assert predicted_rate("relu", "group", group_size=10**6) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="group_size"):
        predicted_rate("relu", "group")
    with pytest.raises(ValueError, match="group_size"):
        predicted_rate("relu", "batch", group_size=4)


def test_a_callable_torch_cannot_differentiate_raises_instead_of_a_rate_of_zero():
    detached = lambda x: torch.tensor(max(float(x.detach()), 0.0))  # through Python floats: no gradient
    with pytest.raises(ValueError, match="torch cannot differentiate"):
        theory.explosion_rate(detached)
    with pytest.raises(ValueError, match="torch cannot differentiate"):
        theory.backward_ratio(lambda x: x.detach() ** 2)
    assert theory.explosion_rate(lambda x: torch.clamp(x, min=0)) == pytest.approx(theory.RELU_RATE, abs=1e-6)


def test_mean_derivative_and_the_transcribed_equation_1():
    assert theory.mean_derivative("relu") == pytest.approx(0.5, abs=1e-9)
    assert theory.mean_derivative("identity") == pytest.approx(1.0, abs=1e-9)
    printed = theory.mean_derivative("relu") ** 2 / theory.forward_ratio("relu")
    assert printed == pytest.approx(0.25 / (0.5 - 1 / (2 * math.pi)), rel=1e-9) and printed < 1


def test_mean_field_relu_he_is_critical():
    mf = theory.mean_field("relu", 2.0, 10, q0=3.0)
    assert mf.q == pytest.approx([6.0] * 10, rel=1e-9)             # q_k = 2·E[x²] = 2·q0, kept
    assert mf.chi == pytest.approx([1.0] * 10, rel=1e-9)           # 2·P(z > 0) = 1
    assert mf.weight_gradient_norms() == pytest.approx([1.0] * 10, rel=1e-9)
    assert mf.rate == pytest.approx(1.0)


def test_mean_field_selu_and_tanh_against_monte_carlo():
    selu = theory.mean_field("selu", 1.0, 5)                       # SELU's fixed point: q = 1
    assert selu.q == pytest.approx([1.0] * 5, abs=1e-4)
    assert selu.chi[-1] == pytest.approx(theory.backward_ratio("selu"), rel=1e-4)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2_000_000, generator=g, dtype=torch.float64)
    q, moments, chis = 2.0, [1.0], []                               # tanh, σ_w² = 2, by sampling
    for _ in range(6):
        chis.append(2.0 * float((1 - torch.tanh(q ** 0.5 * z) ** 2).square().mean()))
        moments.append(float(torch.tanh(q ** 0.5 * z).square().mean()))
        q = 2.0 * moments[-1]
    tanh = theory.mean_field("tanh", 2.0, 6)
    assert tanh.chi == pytest.approx(chis, rel=2e-3)
    assert tanh.second_moment[1:] == pytest.approx(moments[1:], rel=2e-3)
    tail = [math.prod(chis[k:5]) * moments[k] / moments[5] for k in range(6)]
    assert tanh.weight_gradient_norms() == pytest.approx([t ** 0.5 for t in tail], rel=3e-3)
    assert theory.mean_field("tanh", 2.0, 40).rate == pytest.approx(1.0514, abs=1e-4)
    with pytest.raises(ValueError, match="weight_var must be > 0"):
        theory.mean_field("tanh", 0.0, 3)

