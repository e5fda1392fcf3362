"""Monte-Carlo scaling ratios of activations on non-Gaussian inputs (ghost 2024, Propositions
B.12 and B.14): samples of mean 0 and variance 1 from a symmetric distribution, and the measured
(R_f, R_b) = (Var[g(x)]/Var[x], E[g'(x)²]) of an activation g on them. For Gaussian x,
Proposition B.12 says R_f ≤ R_b (Chernoff 1981), with equality only for affine g.
"""
from __future__ import annotations

import math

import torch

from ..checks import int_at_least, one_of
from ..networks.layers import ACTIVATIONS, activation_fn

__all__ = ["DISTRIBUTIONS", "sample", "mean_abs", "activation_moments"]

DISTRIBUTIONS = ("gaussian", "laplace", "uniform")


def sample(distribution: str, shape, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """Samples with mean 0 and variance 1 from a symmetric ``distribution``: ``gaussian``,
    ``laplace`` (scale 1/√2) or ``uniform`` (on [−√3, √3])."""
    one_of("distribution", distribution, DISTRIBUTIONS)
    if distribution == "gaussian":
        return torch.randn(shape, generator=generator, dtype=dtype)
    u = torch.rand(shape, generator=generator, dtype=dtype)
    if distribution == "uniform":
        return (2 * u - 1) * math.sqrt(3.0)
    # Laplace by inversion: sign(u − ½) · b · (−log(1 − 2|u − ½|)), b = 1/√2
    c = u - 0.5
    return -torch.sign(c) * torch.log1p(-2 * c.abs()) / math.sqrt(2.0)


def mean_abs(distribution: str) -> float:
    """E|x| for the unit-variance ``distribution``: Gaussian √(2/π), Laplace 1/√2, uniform √3/2."""
    one_of("distribution", distribution, DISTRIBUTIONS)
    values = {"gaussian": math.sqrt(2 / math.pi), "laplace": 1 / math.sqrt(2.0), "uniform": math.sqrt(3.0) / 2}
    return values[distribution]


def activation_moments(act: str, distribution: str = "gaussian", n: int = 1_000_000,
                       generator: torch.Generator | None = None) -> tuple[float, float]:
    """(R_f, R_b) = (Var[g(x)]/Var[x], E[g'(x)²]) of the activation ``act`` for n samples x of a
    unit-variance ``distribution`` (Var[x] is the samples' variance, ≈ 1), g' by autograd. For
    Gaussian x Proposition B.12 says the first is at most the second (Chernoff 1981), with
    equality only for affine g."""
    one_of("activation", act, tuple(a for a in ACTIVATIONS if a != "dropout"))
    int_at_least("n", n, 2)
    x = sample(distribution, (n,), generator).requires_grad_(True)
    y = activation_fn(act)(x)
    (dy,) = torch.autograd.grad(y.sum(), x) if y.requires_grad else (torch.zeros_like(x),)
    r_f = y.detach().var(unbiased=False) / x.detach().var(unbiased=False)  # R_f = Var[g(x)]/Var[x]
    return float(r_f), float(dy.square().mean())
