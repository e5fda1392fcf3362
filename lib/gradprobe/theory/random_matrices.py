"""Singular values of products of Gaussian matrices (Bjorck et al. 2018, Sec. 5, Theorem 1).

For X = X_1 X_2 ⋯ X_M with iid N(0, 1/N) entries and N → ∞, the squared singular values x of X
(the eigenvalues of X Xᵀ) have the Fuss–Catalan density on (0, (M+1)^{M+1}/M^M):

    ρ_M(x) = sin φ · sin((M+1)φ) / (π x sin(Mφ)),
    x(φ)   = sin^{M+1}((M+1)φ) / (sin φ · sin^M(Mφ)),      0 < φ < π/(M+1)     (paper, Eq. 5)

x(φ) falls monotonically from x_max (φ → 0) to 0 (φ → π/(M+1)). Its moments are the Fuss–Catalan
numbers 1, M+1, (M+1)(3M+2)/2, …; M = 1 is Marchenko–Pastur, (1/2π)√((4−x)/x). Near 0 the
density blows up like x^{-M/(M+1)}. The density of the singular values s themselves is
2s ρ_M(s²) (:func:`singular_value_density`).

The cumulative distribution is integrated in φ, where the integrand
ρ(x(φ)) |dx/dφ| is bounded (:func:`fuss_catalan_cdf`). Empirical counterparts:
:func:`product_squared_singular_values` (float64, batched over repeats),
:func:`ks_distance` and :func:`condition_numbers` (the paper's Appendix K), whose growth per
factor is :func:`condition_growth` (the gap between the largest and smallest Lyapunov exponents).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..checks import int_at_least, nonnegative_int, positive_int

__all__ = ["fuss_catalan_support", "fuss_catalan_x", "fuss_catalan_density", "singular_value_density",
           "fuss_catalan_cdf", "fuss_catalan_moment", "product_squared_singular_values", "ks_distance",
           "condition_numbers", "condition_growth"]


def _check_M(M) -> int:
    return positive_int("M (the number of matrices in the product)", M)


def fuss_catalan_support(M: int) -> float:
    """The right edge of the support, x_max = (M+1)^{M+1} / M^M (4 for M = 1, 6.75 for M = 2)."""
    M = _check_M(M)
    return (M + 1) ** (M + 1) / M ** M


def fuss_catalan_x(phi, M: int) -> np.ndarray:
    """x(φ) = sin^{M+1}((M+1)φ) / (sin φ sin^M(Mφ)) for 0 < φ < π/(M+1) (Eq. 5's parametrization)."""
    M = _check_M(M)
    phi = np.asarray(phi, dtype=np.float64)
    return np.sin((M + 1) * phi) ** (M + 1) / (np.sin(phi) * np.sin(M * phi) ** M)


def _phi_of_x(x: np.ndarray, M: int) -> np.ndarray:
    """Invert the decreasing map φ ↦ x(φ) by bisection (60 halvings: to float64 precision)."""
    lo = np.zeros_like(x)
    hi = np.full_like(x, math.pi / (M + 1))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = fuss_catalan_x(mid, M) > x     # x(mid) > x: the root lies at larger φ
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return 0.5 * (lo + hi)


def fuss_catalan_density(x, M: int) -> np.ndarray:
    """ρ_M(x), Theorem 1's density of the squared singular values of a product of M Gaussian
    N × N matrices with N(0, 1/N) entries, N → ∞; zero outside (0, x_max). ``x``: a number or an
    array (returned as a float64 array of the same shape)."""
    M = _check_M(M)
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    inside = (x > 0) & (x < fuss_catalan_support(M))
    if inside.any():
        xi = x[inside]
        phi = _phi_of_x(xi, M)
        out[inside] = np.sin(phi) * np.sin((M + 1) * phi) / (math.pi * xi * np.sin(M * phi))
    return out


def singular_value_density(s, M: int) -> np.ndarray:
    """The density of the singular values s (not squared): p(s) = 2 s ρ_M(s²)."""
    s = np.asarray(s, dtype=np.float64)
    return 2 * s * fuss_catalan_density(s ** 2, M)


@functools.lru_cache(maxsize=16)
def _cdf_table(M: int, points: int = 200_001):
    """(x(φ) increasing, F(x)) on a fine φ grid: F = ∫ ρ dx = ∫ g(φ) dφ with the bounded integrand
    g = sin φ / (π sin Mφ) · |(M+1)² cos((M+1)φ) − sin((M+1)φ)(cot φ + M² cot Mφ)|."""
    end = math.pi / (M + 1)
    phi = np.linspace(end, 0.0, points)[1:-1]          # from x = 0 up to x = x_max
    s1, sM, sM1 = np.sin(phi), np.sin(M * phi), np.sin((M + 1) * phi)
    g = s1 / (math.pi * sM) * np.abs((M + 1) ** 2 * np.cos((M + 1) * phi)
                                     - sM1 * (np.cos(phi) / s1 + M ** 2 * np.cos(M * phi) / sM))
    g = np.concatenate([[g[0]], g, [g[-1]]])            # bounded at both ends: extend flat
    phi = np.concatenate([[end], phi, [0.0]])
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * -np.diff(phi))])
    x = np.concatenate([[0.0], fuss_catalan_x(phi[1:-1], M), [fuss_catalan_support(M)]])
    return x, cdf


def fuss_catalan_cdf(x, M: int) -> np.ndarray:
    """F_M(x) = ∫_0^x ρ_M, integrated in φ on a fine grid (error below 1e-8) and interpolated."""
    M = _check_M(M)
    grid, cdf = _cdf_table(M)
    return np.interp(np.asarray(x, dtype=np.float64), grid, cdf / cdf[-1], left=0.0, right=1.0)


def fuss_catalan_moment(k: int, M: int) -> float:
    """E[x^k] under ρ_M by quadrature in φ; the k-th Fuss–Catalan number C(k(M+1), k)/(kM+1)."""
    M = _check_M(M)
    nonnegative_int("moment order k", k)
    grid, cdf = _cdf_table(M)
    mass = np.diff(cdf)
    mid = 0.5 * (grid[1:] + grid[:-1])
    return float(np.sum(mid ** k * mass))


def product_squared_singular_values(N: int, M: int, repeats: int = 1, generator: torch.Generator | None = None,
                                    dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Squared singular values of ``repeats`` independent products X_1⋯X_M of N × N matrices with
    iid N(0, 1/N) entries: the eigenvalues of X Xᵀ, shape [repeats, N], ascending, as float64.
    Repeats are computed as one batched product. Keep the default float64 for a KS distance: near 0
    the distribution function rises like x^{1/(M+1)}, so float32's ~1e-6 absolute error in the
    smallest x moves F by several percent at M = 5 (histograms do not see it)."""
    M = _check_M(M)
    positive_int("N", N)
    positive_int("repeats", repeats)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    X = torch.randn(repeats, N, N, generator=generator, dtype=dtype) / math.sqrt(N)
    for _ in range(M - 1):
        X = X @ (torch.randn(repeats, N, N, generator=generator, dtype=dtype) / math.sqrt(N))
    eig = torch.linalg.eigvalsh(X @ X.transpose(1, 2))
    return eig.clamp_min(0.0).double().numpy()


def ks_distance(samples, M: int) -> float:
    """Kolmogorov–Smirnov distance sup_x |F_empirical(x) − F_M(x)| between squared singular values
    ``samples`` (any shape, pooled) and Theorem 1's distribution."""
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"ks_distance needs a non-empty array of finite samples, got {x.size} values")
    F = fuss_catalan_cdf(x, M)
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n)))


def condition_numbers(Ms, N: int, repeats: int = 1, generator: torch.Generator | None = None,
                      nested: bool = False) -> np.ndarray:
    """κ = s_max / s_min of products X_1⋯X_M (N × N, N(0, 1/N) entries, float64) for each M in
    ``Ms``: array [len(Ms), repeats]. The product is formed explicitly, so κ saturates near
    1/ε ≈ 10^16 (M ≳ 8 at N of a few hundred): values there are lower bounds.

    ``nested=True``: each repeat is one chain X_1, X_1X_2, X_1X_2X_3, … (the products of a deeper
    network contain those of the shallower), so a repeat's κ against M is one network's growth
    with depth and its slope one sample of the growth per factor; else every product is drawn
    afresh."""
    Ms = [_check_M(M) for M in Ms]
    positive_int("N", N)
    positive_int("repeats", repeats)
    out = np.empty((len(Ms), repeats))
    if nested:
        if list(Ms) != sorted(set(Ms)):
            raise ValueError(f"nested products need increasing numbers of factors, got Ms={Ms!r}")
        for r in range(repeats):
            X, have = torch.eye(N, dtype=torch.float64), 0
            for i, M in enumerate(Ms):
                for _ in range(M - have):
                    X = X @ (torch.randn(N, N, generator=generator, dtype=torch.float64) / math.sqrt(N))
                have = M
                s = torch.linalg.svdvals(X)
                out[i, r] = float(s[0] / s[-1])
        return out
    for i, M in enumerate(Ms):
        for r in range(repeats):
            X = torch.randn(N, N, generator=generator, dtype=torch.float64) / math.sqrt(N)
            for _ in range(M - 1):
                X = X @ (torch.randn(N, N, generator=generator, dtype=torch.float64) / math.sqrt(N))
            s = torch.linalg.svdvals(X)
            out[i, r] = float(s[0] / s[-1])
    return out


def condition_growth(N: int) -> float:
    """The factor by which the condition number of X_1⋯X_M (N × N real Gaussian factors) grows per
    added factor, for many factors: exp(λ_1 − λ_N) with the Lyapunov exponents
    λ_j = ½ (ln 2 + ψ((N − j + 1)/2)) (− ½ ln N for N(0, 1/N) entries) of products of real
    Gaussian matrices (Newman 1986), i.e. exp(½ (ψ(N/2) − ψ(1/2))); ≈ e^{0.63}·√N for large N
    (26.6 at N = 200, 42.2 at N = 500). ψ is the digamma function."""
    from scipy.special import digamma

    N = int_at_least("N", N, 2)
    return math.exp(0.5 * (digamma(N / 2) - digamma(0.5)))
