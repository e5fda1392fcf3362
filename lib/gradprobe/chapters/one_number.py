"""Chapter *One number behind four papers*: the explosion rate r(φ) = E[φ'²]/Var[φ] and the
BN–ReLU network that shows it. Everything it measures is core (:mod:`gradprobe.theory.gaussian`,
:mod:`gradprobe.measure.hooks`, :mod:`gradprobe.measure.rates`); this module holds the chapter's
drivers and figure functions, in the order of the notebook:

1. *The rate of every activation*: :func:`rate_table` (R_f, R_b, r and √r of every activation, by
   quadrature) and :func:`figure_rates` (figure ``one_number-rates``: r per activation beside the
   ghost paper's quoted numbers, :data:`GHOST_EQ1`);
2. *One measured curve*: :func:`bn_relu_mlp` (per-layer gradient norms and variances of a deep
   linear → BatchNorm → ReLU MLP at initialization, as a :class:`MLPGradients`) and
   :func:`figure_bn_relu_mlp` (figure ``one_number-bn-relu-mlp``: measured norms beside
   √(π/(π−1))^(L−k));
3. *Paper vs this book*: :func:`check_claims`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..book import plots
from ..book.claims import Claims
from ..checks import int_at_least, one_of, positive_int
from ..measure.hooks import record
from ..measure.rates import RateFit, fit_rate, gradient_norms
from ..networks.layers import ACTIVATIONS
from ..networks.mlp import mlp
from ..runtime import Generators, progress
from ..theory import gaussian

__all__ = ["GHOST_EQ1", "RATE", "rate_table", "figure_rates", "MLPGradients", "bn_relu_mlp",
           "figure_bn_relu_mlp", "check_claims"]

# ----------------------------------------------------------------- the rate of every activation

# The ghost paper's numbers after its Equation (1) (ghost2024): r(φ) for three activations.
GHOST_EQ1 = {"selu": 1.072, "tanh": 1.178, "relu": 1.467}

RATE = "r (variance / layer)"  # the column of rate_table that figure_rates draws


def rate_table(activations=ACTIVATIONS) -> pd.DataFrame:
    """For each activation φ (names of :data:`gradprobe.networks.layers.ACTIVATIONS`), fed
    z ~ N(0, 1): R_f = Var[φ(z)], R_b = E[φ'(z)²], the explosion rate r = R_b/R_f per layer
    (in gradient variance) and √r (in gradient norm), by quadrature
    (:mod:`gradprobe.theory.gaussian`). Indexed by activation, largest r first."""
    activations = list(activations)
    if not activations:
        raise ValueError("activations must name at least one activation")
    for name in activations:
        one_of("activation", name, ACTIVATIONS)
    rows = [(name, gaussian.forward_ratio(name), gaussian.backward_ratio(name),
             gaussian.explosion_rate(name), gaussian.norm_rate(name)) for name in activations]
    table = pd.DataFrame(rows, columns=["activation", "R_f = Var[φ(z)]", "R_b = E[φ'(z)²]", RATE,
                                        "√r (norm / layer)"])
    return table.set_index("activation").sort_values(RATE, ascending=False)


def figure_rates(rates: pd.DataFrame) -> plt.Figure:
    """Figure ``one_number-rates``: the explosion rate r(φ) of every activation of ``rates`` (a
    :func:`rate_table`) as horizontal bars, the closed form π/(π−1) of ReLU as a line, and the
    ghost paper's quoted values (:data:`GHOST_EQ1`) as crosses."""
    if RATE not in getattr(rates, "columns", ()):
        raise ValueError(f"rates must be a rate_table() with a column {RATE!r}")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.barh(rates.index[::-1], rates[RATE][::-1], color="tab:blue")
    ax.axvline(gaussian.RELU_RATE, **plots.THEORY, label="π/(π−1) (ReLU, closed form)")
    ax.plot(list(GHOST_EQ1.values()), list(GHOST_EQ1), "kx", markersize=9, label="ghost 2024, quoted")
    ax.axvline(1.0, color="0.5", linewidth=1)
    ax.set_xlim(0.9, 1.55)
    ax.set_xlabel("explosion rate r per layer (gradient variance, dimensionless)")
    ax.set_title("E[φ'(z)²] / Var[φ(z)] for z ~ N(0, 1)")
    ax.legend(loc="lower right")
    return fig


# ----------------------------------------------------------------- one measured curve

@dataclass(frozen=True)
class MLPGradients:
    """What :func:`bn_relu_mlp` measured, per linear layer k = 1..depth (input to output), each the
    mean over ``repeats`` (CPU tensors of shape [depth]): ``norms`` ‖∂ℓ/∂W_k‖_F, ``variances``
    Var[∂ℓ/∂h_k] and ``forward`` Var[h_k], h_k the linear layer's output."""

    depth: int
    width: int
    batch: int
    repeats: int
    norms: torch.Tensor
    variances: torch.Tensor
    forward: torch.Tensor

    @property
    def norm_fit(self) -> RateFit:
        """The growth of the gradient norm per layer toward the input (:func:`fit_rate`)."""
        return fit_rate(self.norms, reverse=True)

    @property
    def var_fit(self) -> RateFit:
        """The growth of the gradient variance per layer toward the input (:func:`fit_rate`)."""
        return fit_rate(self.variances, reverse=True)

    @property
    def forward_drift(self) -> float:
        """Var[h_L] / Var[h_2]: how far the forward variance drifts (1 for a normalized pass)."""
        return float(self.forward[-1] / self.forward[1])

    @property
    def gradient_growth(self) -> float:
        """‖∂ℓ/∂W_1‖ / ‖∂ℓ/∂W_L‖: the first layer's gradient norm over the last one's."""
        return float(self.norms[0] / self.norms[-1])

    def predicted_norms(self) -> np.ndarray:
        """The theory's norms: the last layer's measured norm × √(π/(π−1))^(L−k), k = 1..L."""
        k = np.arange(1, self.depth + 1)
        return float(self.norms[-1]) * gaussian.norm_rate("relu") ** (self.depth - k)

    def summary(self) -> str:
        """The measured rates and ratios beside the theory's, one line each."""
        norm_fit, var_fit = self.norm_fit, self.var_fit
        return "\n".join([
            f"gradient norm grows by     {norm_fit.rate:.4f} per layer toward the input"
            f" (R² = {norm_fit.r2:.4f}); theory √(π/(π−1)) = {gaussian.norm_rate('relu'):.4f}",
            f"gradient variance grows by {var_fit.rate:.4f} per layer (R² = {var_fit.r2:.4f});"
            f" theory π/(π−1) = {gaussian.RELU_RATE:.4f}",
            f"forward variance, last layer / second layer: {self.forward_drift:.4f}",
            f"first-layer / last-layer gradient norm: {self.gradient_growth:.4g}"
            f" (theory {gaussian.norm_rate('relu') ** (self.depth - 1):.4g})",
        ])


def bn_relu_mlp(depth: int, width: int, batch: int, repeats: int, gen: Generators,
                device: torch.device | str = "cpu") -> MLPGradients:
    """The ghost paper's Figure 1 experiment on a ``depth``-layer MLP of layers linear → BatchNorm →
    ReLU (He init, training mode) of ``width`` features: per repeat a fresh network (weights from
    ``gen.weights``), a fresh input batch x ~ N(0, I) of ``batch`` rows and a fresh output gradient
    ∂ℓ/∂f ~ N(0, I/width) (both from ``gen.data``, in that order); one backward pass, and per
    linear layer ‖∂ℓ/∂W_k‖_F (:func:`gradprobe.measure.rates.gradient_norms`), Var[∂ℓ/∂h_k] and
    Var[h_k] (:func:`gradprobe.measure.hooks.record`), averaged over ``repeats``."""
    depth = int_at_least("depth", depth, 2)
    width = positive_int("width", width)
    batch = int_at_least("batch", batch, 2)
    repeats = positive_int("repeats", repeats)
    norms, variances, forward = [], [], []
    for _ in progress(range(repeats), desc="repeats"):
        net = mlp(depth, width, "relu", norm="batch", init="he", generator=gen.weights).to(device)
        x = torch.randn(batch, width, generator=gen.data).to(device)
        grad_out = (torch.randn(batch, width, generator=gen.data) / math.sqrt(width)).to(device)
        with record(net) as rec:
            norms.append(gradient_norms(net, x, grad_out, layers=net.linears()))
        variances.append(rec.variances("gradients"))
        forward.append(rec.variances("activations"))
    means = [torch.stack(values).mean(0).cpu() for values in (norms, variances, forward)]  # over repeats
    return MLPGradients(depth, width, batch, repeats, *means)


def figure_bn_relu_mlp(result: MLPGradients) -> plt.Figure:
    """Figure ``one_number-bn-relu-mlp``: the measured weight-gradient norm of every layer of
    :func:`bn_relu_mlp` on a log scale, beside the theory's straight line
    (:meth:`MLPGradients.predicted_norms`)."""
    if not isinstance(result, MLPGradients):
        raise ValueError(f"result must be the MLPGradients of bn_relu_mlp(), got {type(result).__name__}")
    fig, ax = plt.subplots()
    plots.per_layer(ax, result.norms, f"measured (mean of {result.repeats} repeats)",
                    ylabel="‖∂ℓ/∂W_k‖_F (weight-gradient norm)")
    ax.plot(np.arange(1, result.depth + 1), result.predicted_norms(), **plots.THEORY,
            label="predicted: last layer × √(π/(π−1))^(L−k)")
    ax.set_title(f"{result.depth}-layer BN–ReLU MLP at initialization, width {result.width}, "
                 f"batch {result.batch}")
    ax.legend()
    return fig


# ----------------------------------------------------------------- paper vs this book

def check_claims(result: MLPGradients) -> Claims:
    """The chapter's claims: the ghost paper's three quoted rates (Eq. (1), corrected) against
    quadrature, Paik & Choi's per-layer growth of the gradient norm (√r ≈ 1.21) and variance
    (π/(π−1)) against the fits of ``result``, and Philipp et al.'s "gradients explode despite
    normalized activations" (forward variance ratio within (0.5, 2), gradient growth > 100)."""
    if not isinstance(result, MLPGradients):
        raise ValueError(f"result must be the MLPGradients of bn_relu_mlp(), got {type(result).__name__}")
    claims = Claims("one_number")
    for name, paper in GHOST_EQ1.items():
        claims.close(f"r({name}) = E[φ'²]/Var[φ] by quadrature", paper, gaussian.explosion_rate(name),
                     abs=5e-4, source="ghost2024, Eq. (1) (corrected)")
    claims.close("BN–ReLU gradient norm grows ∼1.21 per layer", 1.21, result.norm_fit.rate, rel=0.03,
                 source="paik2023, Sec. 1")
    claims.close("BN–ReLU gradient variance grows π/(π−1) per layer", GHOST_EQ1["relu"],
                 result.var_fit.rate, rel=0.03, source="paik2023, abstract; ghost2024, Sec. 2")
    forward_drift, gradient_growth = result.forward_drift, result.gradient_growth
    claims.holds("the forward pass stays normalized while the gradient explodes",
                 "gradients explode despite normalized activations",
                 f"forward ×{forward_drift:.3g}, gradient ×{gradient_growth:.3g}",
                 bool(0.5 < forward_drift < 2 and gradient_growth > 100),
                 criterion="forward var ratio in (0.5, 2), first/last gradient norm > 100",
                 source="philipp2018, abstract")
    return claims
