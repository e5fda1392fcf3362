"""Gaussian expectations behind the explosion rate.

For a pre-activation z ~ N(0, 1) (what BatchNorm hands the activation at initialization) and an
activation φ, one normalized layer multiplies

- the forward variance by    R_f(φ) = Var[φ(z)]          (:func:`forward_ratio`)
- the backward variance by   R_b(φ) = E[φ'(z)²]          (:func:`backward_ratio`)

and BatchNorm divides the next layer's forward variance back to 1 while multiplying the gradient
variance by the same 1/Var. The gradient variance therefore grows per layer by

    r(φ) = E[φ'(z)²] / Var[φ(z)]                          (:func:`explosion_rate`)

(ghost 2024, Eq. (1) with the square inside the expectation; Paik & Choi 2023). For ReLU,
E[φ'²] = 1/2 and Var[φ] = 1/2 − 1/(2π), so r = π/(π−1) ≈ 1.467; the gradient *norm* grows by
√r ≈ 1.211. :func:`predicted_rate` adds the width ratio and LayerNorm. Expectations are computed
by adaptive quadrature (scipy.integrate.quad), split at 0 where ReLU-like activations have their
kink. :func:`max_of_gaussians_variance` is the variance of the largest of n Gaussians (a max-pool).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy import integrate, stats

from ..checks import positive, positive_int, probability
from ..networks.layers import ACTIVATIONS, activation_fn

__all__ = ["gaussian_expectation", "forward_ratio", "backward_ratio", "explosion_rate", "norm_rate",
           "RELU_RATE", "predicted_rate", "max_of_gaussians_variance", "MeanField", "mean_field",
           "mean_derivative"]

RELU_RATE = math.pi / (math.pi - 1)  # π/(π−1), the closed form the quadrature must reproduce


def _as_function(act) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """φ and φ' as float -> float functions, for a named activation or a torch callable."""
    fn = activation_fn(act) if isinstance(act, str) else act
    if not callable(fn):
        raise ValueError(f"activation must be one of {ACTIVATIONS} or a callable, got {act!r}")

    def phi(x: float) -> float:
        return float(fn(torch.tensor(x, dtype=torch.float64)))

    def dphi(x: float) -> float:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        y = fn(t)
        if not (isinstance(y, torch.Tensor) and y.requires_grad):
            # a derivative of 0 here would be silently wrong (a rate of 0): say what to fix instead
            raise ValueError(f"torch cannot differentiate the activation {act!r} at x = {x:.4g}: its output "
                             f"{type(y).__name__} carries no gradient; write it with torch operations "
                             "(e.g. torch.clamp(x, min=0), not max(x, 0), numpy or .item())")
        (g,) = torch.autograd.grad(y, t)
        return float(g)

    return phi, dphi


def gaussian_expectation(f: Callable[[float], float], mean: float = 0.0, std: float = 1.0) -> float:
    """E[f(z)] for z ~ N(mean, std²), by quadrature over (−∞, mean] and [mean, ∞)."""
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")

    def integrand(x):
        return f(x) * math.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))

    opts = dict(epsabs=1e-13, epsrel=1e-11, limit=200)
    return integrate.quad(integrand, -np.inf, mean, **opts)[0] + integrate.quad(integrand, mean, np.inf, **opts)[0]


def _dropout_ratio(p: float) -> float:
    probability("dropout probability", p)
    return 1.0 / (1.0 - p)


def _moments(act) -> tuple[float, float, float]:
    """(E[φ(z)], E[φ(z)²], E[φ'(z)²]) for z ~ N(0, 1)."""
    phi, dphi = _as_function(act)
    return (gaussian_expectation(phi), gaussian_expectation(lambda x: phi(x) ** 2),
            gaussian_expectation(lambda x: dphi(x) ** 2))


_named_moments = functools.lru_cache(maxsize=None)(_moments)  # named activations: computed once


def _cached_moments(act):
    return _named_moments(act) if isinstance(act, str) else _moments(act)


def forward_ratio(act, p: float = 0.5) -> float:
    """R_f(φ) = Var[φ(z)] / Var[z] = Var[φ(z)] for z ~ N(0, 1). ReLU: (π−1)/(2π) ≈ 0.3408.

    ``"dropout"`` (mask m ~ Bernoulli(1−p), output m z/(1−p)) gives 1/(1−p).
    """
    if act == "dropout":
        return _dropout_ratio(p)
    m1, m2, _ = _cached_moments(act)
    return m2 - m1 ** 2


def backward_ratio(act, p: float = 0.5) -> float:
    """R_b(φ) = E[φ'(z)²] for z ~ N(0, 1): the factor by which a zero-mean gradient's variance is
    multiplied when passing back through φ. ReLU: 1/2. ``"dropout"``: 1/(1−p)."""
    if act == "dropout":
        return _dropout_ratio(p)
    return _cached_moments(act)[2]


def explosion_rate(act, p: float = 0.5) -> float:
    """r(φ) = E[φ'(z)²] / Var[φ(z)], z ~ N(0, 1): the per-layer growth of the gradient variance in
    a BatchNorm–φ–linear network of equal widths at initialization (ReLU: π/(π−1) ≈ 1.467).

    ``act`` is a name from :data:`gradprobe.networks.layers.ACTIVATIONS` or a torch callable.
    DropOut in place of the activation gives exactly 1: its mask is independent of the input.
    (The rate measured on a network is :func:`gradprobe.measure.rates.network_rate`.)
    """
    return backward_ratio(act, p) / forward_ratio(act, p)


def mean_derivative(act) -> float:
    """E[φ'(z)] for z ~ N(0, 1) (ReLU: ½). The ghost paper's Equation (1) as transcribed,
    E[σ'(X)]²/Var[σ(X)], is ``mean_derivative(act) ** 2 / forward_ratio(act)``; the rates it quotes
    are :func:`explosion_rate`, with the square inside the expectation."""
    return gaussian_expectation(_as_function(act)[1])


def norm_rate(act, p: float = 0.5) -> float:
    """√r(φ): the per-layer growth of the gradient *norm* (ReLU: ≈ 1.211)."""
    return math.sqrt(explosion_rate(act, p))


def predicted_rate(act, norm: str = "batch", width_ratio: float = 1.0, p: float = 0.5,
                   group_size: int | None = None) -> float:
    """The per-layer growth of the gradient variance of a ``linear -> norm -> φ`` network at
    initialization, z ~ N(0, 1) the normalized pre-activation and n_out/n_in = ``width_ratio`` the
    width ratio of the linear map the gradient passes back through:

    - ``norm="batch"``: r(φ)·n_out/n_in with r = E[φ'(z)²]/Var[φ(z)]. BatchNorm's batch mean removes
      the mean E[φ] that every sample shares, so it divides by the *variance* of φ.
    - ``norm="layer"``: E[φ'(z)²]/E[φ(z)²]·n_out/n_in. LayerNorm's mean is over the features of one
      sample; the shared mean E[φ], spread over features by a random W, is not removed, so it divides
      by the *second moment*: ReLU gives exactly 1, He's assumption; odd φ (tanh) gain nothing.

    - ``norm="group"`` with ``group_size`` g channels per group (GroupNorm over those channels and
      all pixels): E[φ'²]/(Var[φ] + (1 − 1/g)·E[φ]²)·n_out/n_in. The shared mean E[φ] becomes a
      per-channel offset E[φ]·Σ_j W_cj; the group's mean removes its average over the g channels,
      leaving (1 − 1/g) of its spread in the group's variance. g = 1 (InstanceNorm) is BatchNorm's
      rate, g → ∞ LayerNorm's.

    ``"dropout"`` (p) gives 1 for all. ``act`` is a name of
    :data:`gradprobe.networks.layers.ACTIVATIONS` (Paik & Choi 2023).
    """
    if norm not in ("batch", "layer", "group"):
        raise ValueError(f"norm must be 'batch', 'layer' or 'group', got {norm!r}")
    if (norm == "group") != (group_size is not None):
        raise ValueError(f"group_size (channels per group) goes with norm='group' and only with it, "
                         f"got norm={norm!r}, group_size={group_size!r}")
    positive("width_ratio", width_ratio)
    if act == "dropout" or norm == "batch":
        return explosion_rate(act, p) * width_ratio
    if norm == "group":
        positive_int("group_size", group_size)
        m1, m2, d2 = _cached_moments(act)
        return d2 / (m2 - m1 ** 2 + (1 - 1 / group_size) * m1 ** 2) * width_ratio
    return backward_ratio(act) / _cached_moments(act)[1] * width_ratio


def max_of_gaussians_variance(n: int = 4) -> float:
    """Var[max(z_1, …, z_n)] for iid z_i ~ N(0, 1), by quadrature of the density n φ(x) Φ(x)^(n−1)
    (n = 4: 0.4917, the paper's "0.492 by numerical simulation" for a 2×2 max-pool)."""
    positive_int("n", n)
    density = lambda x: n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)
    m1 = integrate.quad(lambda x: x * density(x), -np.inf, np.inf, epsabs=1e-13)[0]
    m2 = integrate.quad(lambda x: x * x * density(x), -np.inf, np.inf, epsabs=1e-13)[0]
    return m2 - m1 ** 2


@dataclass(frozen=True)
class MeanField:
    """Mean-field theory of a plain ``linear -> φ`` network without normalization (weights
    N(0, σ_w²/d), no bias), layer k = 1..L, input x^(0) ~ N(0, q0·I):

    - ``q[k-1]``: the pre-activation variance q_k = σ_w² E[x_{k−1}²] of layer k;
    - ``second_moment[k]``: E[x_k²] = E[φ(√q_k z)²] of layer k's output (``second_moment[0]`` = q0);
    - ``chi[k-1]``: χ_k = σ_w² E[φ'(√q_k z)²], the factor by which the gradient's variance grows
      from layer k's output back to its input (Schoenholz et al. 2017).

    ``weight_gradient_norms()``: ‖∂ℓ/∂W_k‖_F relative to the last layer's,
    √(Π_{j=k}^{L−1} χ_j · E[x_{k−1}²] / E[x_{L−1}²]) (the weight gradient Σ_b δ_b x_bᵀ has
    E‖·‖² = B·d·Var[δ_k]·d·E[x_{k−1}²] when output gradients are independent of the inputs).
    """

    q: np.ndarray
    second_moment: np.ndarray
    chi: np.ndarray

    @property
    def rate(self) -> float:
        """√χ of the last layer: the per-layer growth of the gradient norm once q has settled."""
        return math.sqrt(float(self.chi[-1]))

    def weight_gradient_norms(self) -> np.ndarray:
        """‖∂ℓ/∂W_k‖ / ‖∂ℓ/∂W_L‖ for k = 1..L (input to output)."""
        tail = np.concatenate([np.cumprod(self.chi[:-1][::-1])[::-1], [1.0]])  # Π_{j=k}^{L−1} χ_j
        return np.sqrt(tail * self.second_moment[:-1] / self.second_moment[-2])


def mean_field(act, weight_var: float, depth: int, q0: float = 1.0) -> MeanField:
    """:class:`MeanField` of a ``depth``-layer plain network of activation ``act`` (a name of
    :data:`gradprobe.networks.layers.ACTIVATIONS` or a torch callable) with weights
    N(0, ``weight_var``/d) and input variance ``q0``, by quadrature layer by layer. He
    initialization of ReLU (σ_w² = 2) is critical, χ = 1 in every layer; tanh with σ_w² = 2 and
    SELU with σ_w² = 1 have χ > 1 (their gradients grow without any normalization)."""
    positive("weight_var", weight_var)
    positive("q0", q0)
    positive_int("depth", depth)
    phi, dphi = _as_function(act)
    q, moments, chi = [], [float(q0)], []
    for _ in range(depth):
        qk = weight_var * moments[-1]
        std = math.sqrt(qk)
        q.append(qk)
        moments.append(gaussian_expectation(lambda x: phi(x) ** 2, std=std))
        chi.append(weight_var * gaussian_expectation(lambda x: dphi(x) ** 2, std=std))
    return MeanField(np.array(q), np.array(moments), np.array(chi))

