"""Chapter *One number behind four papers*: the explosion rate r(φ) = E[φ'²]/Var[φ] and the
networks that show where it applies. Everything it measures is core
(:mod:`gradprobe.theory.gaussian`, :mod:`gradprobe.measure.repeats`, :mod:`gradprobe.measure.rates`);
this module holds the chapter's settings, drivers, figure functions and claims, in the order of the
notebook:

1. *The rate of every activation*: :func:`rate_table` (R_f, R_b, r and √r of every activation, by
   quadrature), :func:`figure_rates` (r per activation beside the ghost paper's quoted numbers,
   :data:`GHOST_EQ1`) and :func:`check_rates` (the quoted numbers and two errata as transcribed);
2. *Three measured curves*: :func:`measure_curves` (per-layer gradient norms and variances of deep
   MLPs at initialization: BatchNorm–ReLU, ReLU without BatchNorm and BatchNorm–GELU, as
   :class:`Curves`), :func:`figure_curves` and :func:`check_curves`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..book import plots
from ..book.claims import ERRATUM, MACHINERY, Estimate, all_of, at_least, at_most, between, close, ordered
from ..book.scales import settings as make_settings
from ..checks import int_at_least, one_of
from ..measure.rates import fit_rate
from ..measure.repeats import repeated_signals
from ..networks.layers import ACTIVATIONS
from ..runtime import Generators
from ..theory import gaussian

__all__ = ["settings", "cost", "GHOST_EQ1", "RATE", "RATE_TOLERANCE", "EXPLODES", "rate_table", "figure_rates",
           "check_rates", "CURVES", "Curves", "measure_curves", "figure_curves", "check_curves"]

# The ghost paper's numbers after its Equation (1) (ghost2024, App. C): r(φ) for three activations.
GHOST_EQ1 = {"selu": 1.072, "tanh": 1.178, "relu": 1.467}
RATE = "r (variance / layer)"  # the column of rate_table that figure_rates draws
RATE_TOLERANCE = 0.10  # a measured rate "is" a predicted one when its excess (rate − 1) is within 10%
EXPLODES = 0.01        # "explodes": the gradient norm grows by at least 1% per layer toward the input

# name -> (activation, norm): the curves of the chapter, all He-initialized, equal widths
CURVES = {"BatchNorm–ReLU": ("relu", "batch"), "ReLU, no BatchNorm": ("relu", None),
          "BatchNorm–GELU": ("gelu", "batch")}


def settings(scale: str):
    """The chapter's settings at ``scale`` (:func:`gradprobe.book.scales.settings`)."""
    return make_settings(
        scale,
        book=dict(depth=50, width=256, batch=128, repeats=64, chunk=16),
        smoke=dict(width=64, batch=64, repeats=8),
        paper=dict(repeats=4096, chunk=64),
        notes={"depth": "50 layers, as in Philipp et al.'s Figure 1",
               "width": "256, as in the ghost paper's Figure 1", "batch": "128, as in the ghost paper",
               "repeats": "networks per curve: fresh weights, input and output gradient each",
               "chunk": "networks per batched pass (speed and memory only)"})


FIXED_COST = 75.0  # quadrature, figures and claims: about 2 s on the book's CPU, in cost units


def cost(S) -> float:
    """The chapter's work in billions of multiply-adds: 3·B·d²·L per network (forward and backward),
    for the three curves, plus :data:`FIXED_COST`, the part that does not grow with the settings."""
    return 3 * len(CURVES) * 3.0 * S.repeats * S.depth * S.width ** 2 * S.batch / 1e9 + FIXED_COST


# ----------------------------------------------------------------- the rate of every activation
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
    """The explosion rate r(φ) of every activation of ``rates`` (a :func:`rate_table`) as
    horizontal bars, the closed form π/(π−1) of ReLU as a line, and the ghost paper's quoted values
    (:data:`GHOST_EQ1`) as crosses."""
    if RATE not in getattr(rates, "columns", ()):
        raise ValueError(f"rates must be a rate_table() with a column {RATE!r}")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.barh(rates.index[::-1], rates[RATE][::-1], color="tab:blue")
    ax.axvline(gaussian.RELU_RATE, **plots.THEORY, label="π/(π−1) (ReLU, closed form)")
    ax.plot(list(GHOST_EQ1.values()), list(GHOST_EQ1), **plots.PAPER_POINT, label="ghost 2024, quoted")
    ax.axvline(1.0, **plots.REFERENCE)
    ax.set_xlim(0.9, 1.55)
    ax.set_xlabel("explosion rate r per layer (gradient variance, dimensionless)")
    ax.set_title("E[φ'(z)²] / Var[φ(z)] for z ~ N(0, 1)")
    ax.legend(loc="lower right")
    return fig


def _printed_rate(act: str) -> float:
    """The ghost paper's Equation (1) as transcribed: E[φ'(z)]² / Var[φ(z)]."""
    return gaussian.mean_derivative(act) ** 2 / gaussian.forward_ratio(act)


def check_rates(page, rates: pd.DataFrame) -> None:
    """Rows of the rate section: the ghost paper's three quoted rates against quadrature, and two
    errata of the papers' texts as transcribed (the ghost paper's Eq. (1), Paik & Choi's ∼1.21)."""
    claims = page.claims
    claims.section("one_number-rates", "The rate of every activation")
    for name, quoted in GHOST_EQ1.items():
        claims.add(f"r({name}) = E[φ'²]/Var[φ] by quadrature", close(quoted, float(rates.loc[name, RATE]), abs=5e-4),
                   source="ghost2024, App. C, Eq. (1)",
                   quote="The exponential rates are 1.072, 1.178, and 1.467 for SELU, Tanh, and ReLU respectively")
    printed = {name: _printed_rate(name) for name in GHOST_EQ1}
    claims.add("ghost 2024, Eq. (1) as transcribed, E[φ']²/Var[φ], does not give the quoted rates",
               all_of({n: at_least(abs(printed[n] - q), 5e-4) for n, q in GHOST_EQ1.items()}), kind=ERRATUM,
               source="ghost2024, App. C, Eq. (1)", quote="r(σ) = E[σ'(X)]² / Var[σ(X)]",
               note=f"as transcribed: with the square outside, ReLU gives {printed['relu']:.3f} < 1; "
                    "the quoted numbers are E[φ'²]/Var[φ]")
    r = gaussian.RELU_RATE
    claims.add("Paik & Choi's π/(π−1) ∼ 1.21 is √(π/(π−1)), the rate of norms",
               all_of({"π/(π−1) ≠ 1.21": at_least(abs(r - 1.21), 5e-3), "√(π/(π−1)) = 1.21": close(1.21, math.sqrt(r),
                                                                                                 abs=5e-3)}),
               kind=ERRATUM, source="paik2023, Sec. 1",
               quote="The exploding rate is approximately π/(π −1) ∼ 1.21 per effective depth",
               note="as transcribed; π/(π−1) = 1.467 is the rate of variances (their Figure 1)")
    claims.add("quadrature against closed forms: ReLU's R_f, R_b and r; identity and DropOut r = 1",
               all_of({"R_f = ½ − 1/(2π)": close(0.5 - 1 / (2 * math.pi), gaussian.forward_ratio("relu"), rel=1e-5),
                       "R_b = ½": close(0.5, gaussian.backward_ratio("relu"), rel=1e-5),
                       "r = π/(π−1)": close(r, float(rates.loc["relu", RATE]), rel=1e-5),
                       "identity": close(1.0, gaussian.explosion_rate("identity"), rel=1e-5),
                       "dropout": close(1.0, gaussian.explosion_rate("dropout"), rel=1e-5)}),
               kind=MACHINERY, source="ghost2024, Prop. B.12; paik2023, Sec. 1",
               note="the quadrature of gradprobe.theory.gaussian against exact values")
    page.glue("relu_rate", r, ".4f")
    page.glue("relu_norm_rate", math.sqrt(r), ".4f")
    page.glue("relu_printed", printed["relu"], ".3f")


# ----------------------------------------------------------------- three measured curves
@dataclass(frozen=True)
class Curves:
    """:class:`gradprobe.measure.repeats.Signals` of each network of :data:`CURVES` (``repeats``
    fresh networks of ``depth`` layers, ``width`` features, batch ``batch``, at initialization)."""

    depth: int
    width: int
    batch: int
    signals: dict

    @property
    def repeats(self) -> int:
        return next(iter(self.signals.values())).weight_norms.shape[0]

    def norm_rates(self, name: str) -> np.ndarray:
        """Growth of ‖∂ℓ/∂W_k‖ per layer toward the input, one per network."""
        return np.array([fit_rate(row, reverse=True).rate for row in self.signals[name].weight_norms])

    def var_rates(self, name: str) -> np.ndarray:
        """Growth of Var[∂ℓ/∂h_k] per layer toward the input, one per network (from layer 2: the
        first layer's input is the raw Gaussian, not an activation's output)."""
        return np.array([fit_rate(row[1:], reverse=True).rate for row in self.signals[name].backward])

    def forward_drift(self, name: str) -> np.ndarray:
        """Var[h_L] / Var[h_2] per network: 1 for a forward pass at a constant scale."""
        forward = self.signals[name].forward
        return (forward[:, -1] / forward[:, 1]).numpy()

    def predicted(self, name: str) -> np.ndarray:
        """The theory's norms, anchored at the measured mean of the last layer: √r(φ)^(L−k) with
        BatchNorm; mean-field theory (:func:`gradprobe.theory.gaussian.mean_field`) without."""
        act, norm = CURVES[name]
        last = float(self.signals[name].weight_norms[:, -1].mean())
        if norm:
            return last * gaussian.norm_rate(act) ** (self.depth - np.arange(1, self.depth + 1))
        return last * gaussian.mean_field(act, 2.0, self.depth).weight_gradient_norms()

    def table(self) -> pd.DataFrame:
        """Per curve: the measured growth per layer of the norm and of the variance (mean ± SE over
        networks) beside theory, and the forward drift."""
        rows = []
        for name, (act, norm) in CURVES.items():
            nr, vr = self.norm_rates(name), self.var_rates(name)
            theory = gaussian.norm_rate(act) if norm else gaussian.mean_field(act, 2.0, self.depth).rate
            rows.append({"network": name, "norm rate / layer": nr.mean(), "± SE": nr.std(ddof=1) / math.sqrt(len(nr)),
                         "theory √r or √χ": theory, "variance rate / layer": vr.mean(),
                         "theory r or χ": theory ** 2, "forward Var[h_L]/Var[h_2]": self.forward_drift(name).mean()})
        return pd.DataFrame(rows).set_index("network")


def measure_curves(S, gen: Generators, device="cpu") -> Curves:
    """The ghost paper's Figure 1 experiment on ``S.depth``-layer MLPs of ``S.width`` features at
    initialization (He init, BatchNorm in training mode): for each network of :data:`CURVES`,
    ``S.repeats`` fresh networks, each with a fresh input batch x ~ N(0, I) of ``S.batch`` rows and
    output gradient N(0, I/d), all drawn from ``gen.weights`` in that order
    (:func:`gradprobe.measure.repeats.repeated_signals`)."""
    int_at_least("depth", S.depth, 3)
    int_at_least("batch", S.batch, 2)
    signals = {name: repeated_signals(S.repeats, S.depth, S.width, S.batch, activation=act, norm=norm,
                                      chunk=S.chunk, generator=gen.weights, device=device)
               for name, (act, norm) in CURVES.items()}
    return Curves(S.depth, S.width, S.batch, signals)


def figure_curves(curves: Curves) -> plt.Figure:
    """The mean weight-gradient norm per layer of every network of :data:`CURVES` (log axis) with
    ±2 standard errors, each beside its theory (:meth:`Curves.predicted`)."""
    if not isinstance(curves, Curves):
        raise ValueError(f"curves must be the Curves of measure_curves(), got {type(curves).__name__}")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ks = np.arange(1, curves.depth + 1)
    for (name, sig), colour in zip(curves.signals.items(), ("tab:blue", "tab:green", "tab:orange")):
        values = sig.weight_norms.numpy()
        mean = values.mean(0)
        se = values.std(0, ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0 * mean
        ax.plot(ks, mean, label=f"{name}, measured", color=colour, **plots.OURS)
        ax.fill_between(ks, mean - 2 * se, mean + 2 * se, color=colour, alpha=0.25, linewidth=0)
        ax.plot(ks, curves.predicted(name), **{**plots.THEORY, "color": colour})
    ax.plot([], [], **{**plots.THEORY, "color": "0.3"}, label="theory: √r(φ)^(L−k); no BN: mean field")
    ax.set_yscale("log")
    ax.set_xlabel("layer index k (input → output)")
    ax.set_ylabel("‖∂ℓ/∂W_k‖_F (weight-gradient norm)")
    ax.set_title(f"{curves.depth}-layer MLPs at initialization, width {curves.width}, batch {curves.batch}")
    ax.legend(loc="upper right")
    return fig


def check_curves(page, curves: Curves) -> None:
    """Rows of the curves: the BN–ReLU norm and variance rates (Paik & Choi, the ghost paper), the
    explosion with a normalized forward pass (Philipp et al.), no explosion without BatchNorm and a
    smaller one for GELU (as Paik & Choi report)."""
    claims = page.claims
    claims.section("one_number-curves", "Three measured curves")
    relu = "BatchNorm–ReLU"
    excess = lambda v: Estimate.of(np.asarray(v) - 1.0, "networks")
    norm_rates, var_rates = curves.norm_rates(relu), curves.var_rates(relu)
    claims.add("BN–ReLU: gradient norm grows by √(π/(π−1)) ∼ 1.21 per layer (excess rate)",
               close(math.sqrt(gaussian.RELU_RATE) - 1, excess(norm_rates), rel=RATE_TOLERANCE),
               source="paik2023, Sec. 1; ghost2024, App. B.1",
               quote="The exploding rate is approximately π/(π −1) ∼ 1.21 per effective depth")
    claims.add("BN–ReLU: gradient variance grows by π/(π−1) = 1.467 per layer (excess rate)",
               close(gaussian.RELU_RATE - 1, excess(var_rates), rel=RATE_TOLERANCE),
               source="paik2023, Fig. 1 caption; ghost2024, App. C",
               quote="The explosion rate is approximately π/(π −1) in vanilla networks with batch normalization")
    drift = Estimate.of(curves.forward_drift(relu), "networks")
    claims.add("BN–ReLU: the forward pass keeps its scale while the gradient explodes",
               all_of({"forward Var[h_L]/Var[h_2]": between(drift, 0.5, 2.0),
                       "gradient growth per layer − 1": at_least(excess(norm_rates), EXPLODES)}),
               source="philipp2018, abstract",
               quote="Whereas it is believed that techniques such as Adam, batch normalization and, more recently, "
                     "SeLU nonlinearities 'solve' the exploding gradient problem, we show that this is not the case")
    claims.add(f"ReLU without BatchNorm: no explosion (growth < {EXPLODES:.0%} per layer)",
               at_most(excess(curves.norm_rates("ReLU, no BatchNorm")), EXPLODES), source="paik2023, Sec. 1",
               quote="the authors [Philipp et al.] observed that gradient explosion occurs only in the case of "
                     "batch normalization",
               note="He initialization without BN is critical in mean-field theory: χ = 1")
    claims.add("GELU explodes less than ReLU (BatchNorm, excess rates)",
               ordered({"GELU": excess(curves.norm_rates("BatchNorm–GELU")), "ReLU": excess(norm_rates)}),
               source="paik2023, Fig. 1 caption",
               quote="Smoother variants of ReLU … exhibit lower exploding rates")
    table = curves.table()
    for key, name in (("relu", relu), ("nobn", "ReLU, no BatchNorm"), ("gelu", "BatchNorm–GELU")):
        page.glue(f"curve_{key}_rate", float(table.loc[name, "norm rate / layer"]), ".4f")
        page.glue(f"curve_{key}_theory", float(table.loc[name, "theory √r or √χ"]), ".4f")
    page.glue("curve_relu_var_rate", float(var_rates.mean()), ".4f")
    page.glue("curve_relu_drift", float(drift.mean), ".3f")
    page.glue("curve_nobn_drift", float(curves.forward_drift("ReLU, no BatchNorm").mean()), ".2f")
    growth = curves.signals[relu].weight_norms
    page.glue("curve_relu_growth", float((growth[:, 0] / growth[:, -1]).mean()), ".3g")
    page.glue("curve_depth", curves.depth, "d")
    page.glue("curve_repeats", curves.repeats, "d")
