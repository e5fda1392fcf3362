"""gradprobe.theory.random_matrices: Theorem 1's Fuss–Catalan distribution and products of Gaussian matrices."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from gradprobe.theory.random_matrices import (condition_numbers, fuss_catalan_cdf, fuss_catalan_density,
                                              fuss_catalan_moment, fuss_catalan_support, fuss_catalan_x, ks_distance,
                                              product_squared_singular_values, singular_value_density)


def _integral(f, M):
    """∫_0^{x_max} f(x) ρ_M(x) dx with x = u^{M+1}, which removes the x^{-M/(M+1)} singularity."""
    top = fuss_catalan_support(M) ** (1 / (M + 1))
    g = lambda u: f(u ** (M + 1)) * fuss_catalan_density(u ** (M + 1), M) * (M + 1) * u ** M
    return integrate.quad(g, 0, top, limit=200, epsabs=1e-13)[0]


@pytest.mark.parametrize("M", [1, 2, 3, 5])
def test_density_integrates_to_one_with_moments_1_and_M_plus_1(M):
    assert _integral(lambda x: 1.0, M) == pytest.approx(1.0, abs=1e-6)
    assert _integral(lambda x: x, M) == pytest.approx(1.0, abs=1e-6)
    assert _integral(lambda x: x * x, M) == pytest.approx(M + 1, abs=1e-5)


@pytest.mark.parametrize("M", [1, 3, 5])
def test_moments_are_fuss_catalan_numbers(M):
    for k in range(4):
        number = math.comb(k * (M + 1), k) / (k * M + 1)
        assert fuss_catalan_moment(k, M) == pytest.approx(number, rel=1e-6)


def test_M1_is_marchenko_pastur():
    x = np.linspace(0.001, 3.999, 101)
    mp = np.sqrt((4 - x) / x) / (2 * np.pi)
    np.testing.assert_allclose(fuss_catalan_density(x, 1), mp, rtol=1e-9, atol=1e-12)


def test_support_edges_and_outside_is_zero():
    assert fuss_catalan_support(1) == 4 and fuss_catalan_support(2) == pytest.approx(6.75)
    assert fuss_catalan_x(1e-9, 3) == pytest.approx(fuss_catalan_support(3), rel=1e-9)
    assert fuss_catalan_x(math.pi / 4 - 1e-9, 3) < 1e-20
    np.testing.assert_array_equal(fuss_catalan_density([-1.0, 0.0, 9.49, 100.0], 3), 0.0)
    assert fuss_catalan_density(0.5, 3).shape == ()
    # blows up like x^{-M/(M+1)} at the origin
    ratio = fuss_catalan_density(1e-8, 3) / fuss_catalan_density(1e-10, 3)
    assert ratio == pytest.approx(100 ** (-3 / 4), rel=0.01)


def test_cdf_and_singular_value_density_are_consistent():
    M = 3
    for x in (0.1, 1.0, 5.0):
        direct = integrate.quad(lambda u: fuss_catalan_density(u ** 4, M) * 4 * u ** 3, 0, x ** 0.25)[0]
        assert fuss_catalan_cdf(x, M) == pytest.approx(direct, abs=1e-7)
    top = math.sqrt(fuss_catalan_support(M))
    assert integrate.quad(lambda s: singular_value_density(s, M), 0, top, limit=200)[0] == pytest.approx(1, abs=1e-5)


def test_bad_M_is_a_clear_error():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            fuss_catalan_density(1.0, bad)
    with pytest.raises(ValueError, match="N must be"):
        product_squared_singular_values(0, 1)
    with pytest.raises(ValueError, match="finite"):
        ks_distance([np.nan], 1)


@pytest.mark.parametrize("M", [1, 3])
def test_empirical_products_match_theorem_1(M):
    x = product_squared_singular_values(300, M, repeats=2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 300) and (np.diff(x, axis=1) >= 0).all()
    assert x.mean() == pytest.approx(1.0, rel=0.05)               # E[x] = 1
    assert (x ** 2).mean() == pytest.approx(M + 1, rel=0.1)        # E[x²] = M + 1
    assert ks_distance(x, M) < 0.03
    assert ks_distance(x, M + 2) > 0.05                            # and not the wrong M


def test_ks_distance_of_the_exact_quantiles_is_tiny():
    q = (np.arange(2000) + 0.5) / 2000
    grid = np.linspace(0, fuss_catalan_support(2) ** (1 / 3), 200_001) ** 3   # fine where F is steep
    samples = np.interp(q, fuss_catalan_cdf(grid, 2), grid)
    assert ks_distance(samples, 2) < 1e-3


def test_condition_number_grows_with_depth():
    kappa = condition_numbers([1, 2, 4], N=100, repeats=3, generator=torch.Generator().manual_seed(1))
    med = np.median(kappa, axis=1)
    assert kappa.shape == (3, 3) and (kappa >= 1).all()
    assert med[0] < med[1] < med[2]
    assert med[2] / med[0] > 100


def test_condition_growth_is_the_lyapunov_gap_and_matches_nested_products():
    from gradprobe.theory.random_matrices import condition_growth
    # N = 2: ψ(1) − ψ(1/2) = 2 ln 2, so the growth per factor is exactly 2
    assert condition_growth(2) == pytest.approx(2.0, rel=1e-12)
    assert condition_growth(200) == pytest.approx(26.62, rel=1e-3)
    assert condition_growth(500) / math.sqrt(500) == pytest.approx(math.exp(0.5 * (math.log(0.5) + 1.9635)), rel=2e-3)
    # 2 × 2 products: the log condition number of a chain grows by ln 2 per factor on average
    kappa = condition_numbers(list(range(1, 21)), N=2, repeats=200, generator=torch.Generator().manual_seed(3),
                              nested=True)
    assert np.isfinite(kappa).all() and (np.diff(np.log(kappa), axis=0).mean(axis=1) > 0).mean() > 0.8
    slopes = np.polyfit(np.arange(1, 21), np.log(kappa), 1)[0]
    assert slopes.mean() == pytest.approx(math.log(2), abs=4 * slopes.std() / math.sqrt(200))
    with pytest.raises(ValueError, match="increasing"):
        condition_numbers([3, 1], N=10, nested=True)
