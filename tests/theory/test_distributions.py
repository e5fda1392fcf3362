"""gradprobe.theory.distributions: unit-variance samples and Monte-Carlo (R_f, R_b) of activations
(ghost 2024, Propositions B.12 and B.14)."""
import pytest
import torch

from gradprobe.theory.distributions import DISTRIBUTIONS, activation_moments, mean_abs, sample


def gen(n=0):
    return torch.Generator().manual_seed(n)


@pytest.mark.parametrize("act", ["relu", "tanh", "selu", "gelu"])
def test_b12_holds_for_gaussian_input(act):
    var, back = activation_moments(act, "gaussian", 200_000, gen(4))
    assert var < back


def test_b12_equality_for_affine_and_failure_off_gaussian():
    var, back = activation_moments("identity", "uniform", 100_000, gen(5))
    assert back == 1.0 and var == pytest.approx(1.0, abs=0.02)
    # Chernoff's inequality needs the Gaussian: for uniform input tanh violates it
    var, back = activation_moments("tanh", "uniform", 200_000, gen(6))
    assert var > back


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_samples_are_standardized(dist):
    x = sample(dist, (400_000,), gen(7))
    assert x.mean().item() == pytest.approx(0.0, abs=0.01)
    assert x.var().item() == pytest.approx(1.0, abs=0.01)
    assert x.abs().mean().item() == pytest.approx(mean_abs(dist), abs=0.01)


def test_distribution_and_activation_errors():
    with pytest.raises(ValueError, match="unknown distribution"):
        sample("cauchy", (3,))
    with pytest.raises(ValueError, match="unknown activation"):
        activation_moments("dropout")
