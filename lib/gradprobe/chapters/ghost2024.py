"""Chapter *A ghost that never leaves* (2024): every figure, table and claim of the notebook, in its order.

1. Figure 1 (left) and Figure 2: :func:`measure_figure1_left` (gradient norms of PlainNet20 and
   ResNet20 at initialization, :class:`NormsAtInit`), :func:`figure1_left`, :func:`figure2`.
2. Figure 3: :func:`measure_figure3` (other activations, with and without BatchNorm,
   :class:`Figure3`), :func:`figure3`.
3. Appendix B.1, single operators: :func:`batchnorm_z`, :func:`operator_table`, :func:`figure_b8`.
4. Propositions B.12 and B.14 on Gaussian, Laplace and uniform inputs
   (:mod:`gradprobe.theory.distributions`): :func:`relu_b14`, :func:`b12_table`, :func:`b14_table`.
5. Proposition B.17, the 1/√L residual network (:func:`gradprobe.networks.mlp.scaled_residual_net`)
   against a plain one: :func:`gradprobe.measure.stats.network_ratios`, :func:`block_ratios`, :func:`b17_sweep`, :func:`figure_b17`.
6. Figure 1 (right): :func:`train_figure1_right` (BatchNorm running σ of a trained VGG19-BN substitute
   and a ResNet-20, :class:`TrainedBN`), :func:`figure1_right`.
7. The paper against this book: :func:`check_claims`.

The drivers take the notebook's settings ``S`` (:func:`gradprobe.book.scales.settings`) and its
:class:`gradprobe.runtime.Generators`; each draws from the generators in the notebook's order, so
that a run reproduces the book's numbers exactly. Figure functions draw with the house style of
:mod:`gradprobe.book.plots`, save the figure beside the executed notebook and return it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..book import plots
from ..book.claims import Claims
from ..checks import int_at_least, positive_int
from ..data import tensors
from ..measure import batchnorm
from ..measure.rates import RateFit, fit_rate
from ..measure.repeats import repeated_gradient_norms
from ..measure.stats import network_ratios, scaling_ratios
from ..networks import vgg
from ..networks.layers import init_weights_
from ..networks.mlp import ScaledResidualBlock, mlp, scaled_residual_net
from ..networks.resnet import cifar_resnet
from ..runtime import Generators
from ..theory import gaussian
from ..theory.distributions import DISTRIBUTIONS, activation_moments, mean_abs
from ..theory.operators import batchnorm_z_moments, theory_ratios
from ..train import loop
from ..train.optim import make_optimizer

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NormsAtInit", "measure_figure1_left", "figure1_left", "figure2",
           "FIGURE3_ACTIVATIONS", "Figure3", "measure_figure3", "figure3",
           "batchnorm_z", "operator_table", "figure_b8",
           "relu_b14", "b12_table", "b14_table",
           "block_ratios", "b17_sweep", "figure_b17",
           "VGG", "RESNET", "CHECKPOINT", "TrainedBN", "train_figure1_right", "figure1_right",
           "check_claims"]

_GRAD_NORM = "‖∂ℓ/∂W_k‖_F (mean over repeats)"


def _gradient_shape(S, device) -> dict:
    """The network and batching of Figures 1–3 from the settings: depth, width, batch, chunk."""
    int_at_least("depth", S.depth, 2)  # a rate needs two layers
    positive_int("width", S.width)
    positive_int("batch", S.batch)
    return dict(depth=S.depth, width=S.width, batch=S.batch, chunk=S.chunk, device=device)


def _finish(fig: plt.Figure, ax, title: str, name: str) -> plt.Figure:
    """Title ``ax``, give it its legend, save ``fig`` as ``figures/<name>.png`` and return it."""
    ax.set_title(title)
    ax.legend()
    plots.savefig(fig, name)
    return fig


# ---------------------------------------------------------------- Figure 1 (left) and Figure 2
@dataclass(frozen=True)
class NormsAtInit:
    """Figure 1 (left): ‖∂ℓ/∂W_k‖_F per layer (columns, input to output) of ``plain`` (PlainNet20)
    and ``resnet`` (ResNet20) networks, one row per repeat with fresh weights, input and output
    gradient (float64, [repeats, depth])."""

    plain: torch.Tensor
    resnet: torch.Tensor

    @property
    def depth(self) -> int:
        return self.plain.shape[1]

    @property
    def plain_mean(self) -> torch.Tensor:
        return self.plain.mean(0)

    @property
    def resnet_mean(self) -> torch.Tensor:
        return self.resnet.mean(0)

    @property
    def plain_fit(self) -> RateFit:
        """The fitted growth of the mean norm per layer toward the input (PlainNet20)."""
        return fit_rate(self.plain_mean, reverse=True)

    @property
    def resnet_fit(self) -> RateFit:
        """The fitted growth of the mean norm per layer toward the input (ResNet20)."""
        return fit_rate(self.resnet_mean, reverse=True)

    @property
    def growth(self) -> dict[str, float]:
        """First-layer over last-layer mean norm of each network."""
        return {"PlainNet20": float(self.plain_mean[0] / self.plain_mean[-1]),
                "ResNet20": float(self.resnet_mean[0] / self.resnet_mean[-1])}

    @property
    def predicted(self) -> torch.Tensor:
        """Figure 2: norm_L · α^(L−k) for k = 1..L, α = √(π/(π−1)), anchored at the measured last
        layer of PlainNet20 (nothing fitted)."""
        alpha = gaussian.norm_rate("relu")
        return self.plain_mean[-1] * alpha ** (self.depth - torch.arange(1, self.depth + 1, dtype=torch.float64))

    @property
    def deviation(self) -> torch.Tensor:
        """|measured / predicted − 1| per layer of PlainNet20 (Figure 2)."""
        return (self.plain_mean / self.predicted - 1).abs()

    def summary(self) -> str:
        """Figure 1 (left) in two lines: first/last norm ratios and fitted rates, beside √(π/(π−1))."""
        growth, plain, resnet = self.growth, self.plain_fit.rate, self.resnet_fit.rate
        return (f"first/last layer gradient norm: PlainNet20 {growth['PlainNet20']:.4g}, "
                f"ResNet20 {growth['ResNet20']:.4g}\n"
                f"fitted growth per layer toward the input: PlainNet20 {plain:.4g}, ResNet20 {resnet:.4g}"
                f" (√(π/(π−1)) = {gaussian.norm_rate('relu'):.4g})")

    def prediction_summary(self) -> str:
        """Figure 2 in one line: α and the largest deviation of the measured curve from α^(L−k)."""
        deviation = self.deviation
        return (f"α = {gaussian.norm_rate('relu'):.4f}; largest relative deviation of the measured curve from the "
                f"prediction: {float(deviation.max()):.3%} (at layer {int(deviation.argmax()) + 1})")


def measure_figure1_left(S, gen: Generators, device) -> NormsAtInit:
    """Figure 1 (left): ``S.repeats`` fresh PlainNet20 and then as many ResNet20 networks (``S.depth``
    fully connected layers of width ``S.width``, He init, BatchNorm, ReLU; ResNet20 with He's basic
    block shortcut every two layers) on a Gaussian batch of ``S.batch`` rows with output gradient
    N(0, I/d), by :func:`gradprobe.measure.repeats.repeated_gradient_norms` from ``gen.weights``."""
    shape = _gradient_shape(S, device)
    plain = repeated_gradient_norms(S.repeats, residual=False, generator=gen.weights, **shape)
    resnet = repeated_gradient_norms(S.repeats, residual=True, generator=gen.weights, **shape)
    return NormsAtInit(plain, resnet)


def figure1_left(norms: NormsAtInit) -> plt.Figure:
    """Figure 1 (left): the mean weight-gradient norm per layer of PlainNet20 and ResNet20 on a log
    axis, each with a band of ±2 standard errors of the mean (saved as ``ghost-fig1-left``)."""
    fig, ax = plt.subplots()
    ks = np.arange(1, norms.depth + 1)
    for name, values in (("PlainNet20", norms.plain), ("ResNet20", norms.resnet)):
        mean, sem = values.mean(0).numpy(), (values.std(0) / math.sqrt(values.shape[0])).numpy()
        plots.per_layer(ax, mean, label=f"{name} (mean of {values.shape[0]})", ylabel=_GRAD_NORM)
        ax.fill_between(ks, mean - 2 * sem, mean + 2 * sem, alpha=0.25)
    return _finish(fig, ax, "Figure 1 (left): weight-gradient norm per layer at initialization", "ghost-fig1-left")


def figure2(norms: NormsAtInit) -> plt.Figure:
    """Figure 2: PlainNet20's measured mean norm per layer against the prediction norm_L · α^(L−k),
    α = √(π/(π−1)) (:attr:`NormsAtInit.predicted`; saved as ``ghost-fig2``)."""
    fig, ax = plt.subplots()
    plots.per_layer(ax, norms.plain_mean, label="PlainNet20, measured", ylabel=_GRAD_NORM)
    ax.plot(np.arange(1, norms.depth + 1), norms.predicted.numpy(), **plots.THEORY,
            label="predicted: norm_L · α^(L−k), α = √(π/(π−1))")
    return _finish(fig, ax, "Figure 2: actual against predicted gradient norm", "ghost-fig2")


# ---------------------------------------------------------------- Figure 3
# (activation, init) of Figure 3 in the order of r(σ): N(0, 1/d) for SELU, N(0, 2/d) for tanh and ReLU.
FIGURE3_ACTIVATIONS = (("selu", "lecun"), ("tanh", "he"), ("relu", "he"))


@dataclass(frozen=True)
class Figure3:
    """Figure 3: ``norms[activation, norm]`` the mean ‖∂ℓ/∂W_k‖_F per layer (norm "batch" or None),
    and ``rates`` one row per curve: the fitted growth per layer toward the input, √r(σ) of the
    corrected Eq. (1), first/last and the fit's R² (a pandas DataFrame)."""

    norms: dict[tuple[str, str | None], torch.Tensor]
    rates: pd.DataFrame


def measure_figure3(S, gen: Generators, device) -> Figure3:
    """Figure 3: the plain network of Figure 1 with SELU, tanh and ReLU (:data:`FIGURE3_ACTIVATIONS`),
    each with and then without BatchNorm, ``S.repeats_fig3`` repeats per curve from ``gen.weights``."""
    import pandas as pd

    shape = _gradient_shape(S, device)
    norms, rows = {}, []
    for act, init in FIGURE3_ACTIVATIONS:
        for norm in ("batch", None):
            mean = repeated_gradient_norms(S.repeats_fig3, activation=act, norm=norm, init=init,
                                           generator=gen.weights, **shape).mean(0)
            norms[act, norm] = mean
            fit = fit_rate(mean, reverse=True)
            rows.append({"activation": act, "BatchNorm": norm is not None, "init": init,
                         "fitted rate / layer": fit.rate, "√r(σ), corrected Eq. (1)": gaussian.norm_rate(act),
                         "first/last": float(mean[0] / mean[-1]), "fit R²": fit.r2})
    return Figure3(norms, pd.DataFrame(rows))


def figure3(fig3: Figure3) -> plt.Figure:
    """Figure 3: norms relative to the last layer, with BatchNorm (left, beside √r(σ)^(L−k) of
    Eq. (1)) and without (right); saved as ``ghost-fig3``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    depth = len(next(iter(fig3.norms.values())))
    ks = np.arange(1, depth + 1)
    for ax, norm, title in zip(axes, ("batch", None), ("with BatchNorm", "without BatchNorm")):
        for (act, n), curve in fig3.norms.items():
            if n == norm:
                plots.per_layer(ax, curve / curve[-1], label=act, ylabel="‖∂ℓ/∂W_k‖ / ‖∂ℓ/∂W_L‖")
        if norm == "batch":
            for act in ("selu", "tanh", "relu"):
                ax.plot(ks, gaussian.norm_rate(act) ** (depth - ks), **{**plots.THEORY, "linewidth": 1})
            ax.plot([], [], **plots.THEORY, label="√r(σ)^(L−k), Eq. (1)")
        ax.set_title(f"Figure 3: {title}")
        ax.legend()
    plots.savefig(fig, "ghost-fig3")
    return fig


# ---------------------------------------------------------------- Appendix B.1: single operators
def batchnorm_z(batch: int, features: int = 4096, sigma: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-feature z = B (1 − σ_x² · R_b) of a BatchNorm layer (Prop. B.8: R_b = (1/σ_x²)(1 − z/B),
    E z = 1, Var z ≈ 2), for x ~ N(0, σ²) and ∂ℓ/∂y ~ N(0, 1) of ``batch`` rows and ``features``
    independent features; σ_x² is each feature's batch variance. Shape [features]."""
    int_at_least("batch", batch, 2)
    x = (sigma * torch.randn(batch, features, generator=generator, dtype=torch.float64)).requires_grad_(True)
    g = torch.randn(batch, features, generator=generator, dtype=torch.float64)
    y = (x - x.mean(dim=0)) / x.var(dim=0, unbiased=False).sqrt()  # BatchNorm as in the paper, no ε
    (gx,) = torch.autograd.grad(y, x, g)
    r_b = gx.var(dim=0, unbiased=False) / g.var(dim=0, unbiased=False)
    return batch * (1 - x.detach().var(dim=0, unbiased=False) * r_b)


def operator_table(batches=(8, 32, 128, 512), samples: int = 65536, features: int = 4096, sigma: float = 2.0,
                   generator: torch.Generator | None = None):
    """The table of single-operator ratios, theory (:func:`gradprobe.theory.operators.theory_ratios`)
    beside measurement (:func:`gradprobe.measure.stats.scaling_ratios`), a pandas DataFrame.

    Inputs are standard Gaussian with ``samples`` rows: a linear map W (512×256, He init), ReLU
    on 64 features, a 2×2 max-pool on 16×8×8 feature maps (``samples``/16 images). BatchNorm is
    measured per feature, as Prop. B.8 states it, on x ~ N(0, σ²) in batches of B (``batches``)
    with ``features`` features: R_f = 1/σ_x² and R_b = (1/σ_x²)(1 − z/B) with σ_x² each feature's
    batch variance; the table lists σ_x²·R_f and σ_x²·R_b (the paper's 1 and 1 − E z/B with
    E z = 1) and the measured moments of z beside the exact ones (:func:`batchnorm_z_moments`).
    """
    import pandas as pd

    positive_int("samples", samples)
    positive_int("features", features)
    rows = []

    def row(operator, setting, theory, measured, extra=""):
        rows.append({"operator": operator, "setting": setting, "R_f theory": theory[0], "R_f measured": measured[0],
                     "R_b theory": theory[1], "R_b measured": measured[1], "note": extra})

    weight = init_weights_(nn.Linear(256, 512, bias=False), "he", generator=generator).weight.detach()
    x = torch.randn(samples, 256, generator=generator)
    row("linear", "W 512×256, He init", theory_ratios("linear", weight=weight),
        scaling_ratios(lambda t: t @ weight.T, x, torch.randn(samples, 512, generator=generator)),
        "‖W‖²/D, ‖W‖²/d")
    x = torch.randn(samples, 64, generator=generator)
    row("relu", "x ~ N(0, 1)", theory_ratios("relu"),
        scaling_ratios(torch.relu, x, torch.randn(samples, 64, generator=generator)), "½(1 − 1/π), ½")
    n_img = max(2, samples // 16)
    x = torch.randn(n_img, 16, 8, 8, generator=generator)
    row("maxpool2x2", "4 iid N(0, 1) per window", theory_ratios("maxpool2x2"),
        scaling_ratios(nn.MaxPool2d(2), x, torch.randn(n_img, 16, 4, 4, generator=generator)),
        "R_f by quadrature (paper: 0.492 by simulation)")
    for b in batches:
        z = batchnorm_z(b, features, sigma, generator)
        row("batchnorm", f"B = {b}, σ² = {sigma ** 2:g}, ×σ_x²", (1.0, 1 - 1 / b),
            (1.0, float(1 - z.mean() / b)),
            "E z = {:.3f} (exact {:.3f}), Var z = {:.3f} (exact {:.3f})".format(
                float(z.mean()), batchnorm_z_moments(b)[0], float(z.var()), batchnorm_z_moments(b)[1]))
    return pd.DataFrame(rows)



def _batchnorm_rows(op_table):
    """The BatchNorm rows of :func:`operator_table` and their batch sizes B (read off "B = …")."""
    rows = op_table[op_table.operator == "batchnorm"]
    return rows, np.array([int(s.split("B = ")[1].split(",")[0]) for s in rows.setting])


def figure_b8(op_table) -> plt.Figure:
    """Proposition B.8: BatchNorm's σ_x²·R_b = 1 − z/B against the batch size B, measured (the
    BatchNorm rows of :func:`operator_table`) beside the paper's E z = 1 and the exact
    E z = B/(B−1) (:func:`gradprobe.theory.operators.batchnorm_z_moments`); saved as ``ghost-batchnorm``."""
    bn_rows, bs = _batchnorm_rows(op_table)
    if len(bs) == 0:
        raise ValueError("op_table has no batchnorm rows; make it with operator_table(batches=...)")
    fig, ax = plt.subplots()
    ax.plot(bs, bn_rows["R_b measured"], **plots.OURS, label="measured σ_x²·R_b (mean over features)")
    ax.plot(bs, 1 - 1 / bs, **plots.PAPER, label="paper: 1 − E z/B with E z = 1")
    ax.plot(bs, [1 - batchnorm_z_moments(int(b))[0] / b for b in bs], **plots.THEORY,
            label="exact: E z = B/(B−1)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("σ_x² · R_b(BatchNorm) (dimensionless)")
    return _finish(fig, ax, "BatchNorm: backward ratio relative to forward, 1 − z/B", "ghost-batchnorm")


# ---------------------------------------------------------------- Propositions B.12 and B.14
def relu_b14(distribution: str, n: int = 1_000_000, generator: torch.Generator | None = None) -> dict:
    """Proposition B.14 for ReLU σ and unit-variance symmetric x: Var[σ(x)] ≤ E[σ'(x)²] − (E|x|)²/8.

    Returns the measured Var[σ(x)] and E[σ'(x)²] (n samples), the exact Var[σ(x)] = ½ − (E|x|)²/4
    (the proof's identity) and the bound ½ − (E|x|)²/8.
    """
    var, back = activation_moments("relu", distribution, n, generator)
    m = mean_abs(distribution)
    return {"var": var, "backward": back, "exact_var": 0.5 - m * m / 4, "bound": 0.5 - m * m / 8}


def b12_table(activations=("relu", "tanh", "selu", "gelu", "identity"), distributions=DISTRIBUTIONS,
              n: int = 1_000_000, generator: torch.Generator | None = None, tolerance: float = 0.005):
    """Proposition B.12 measured: Var[g(x)] (= R_f, per unit input variance) and E[g'(x)²] (= R_b)
    for unit-variance x of each distribution and each activation, and whether
    Var ≤ E[g'²]·(1 + ``tolerance``) (``holds``; the tolerance absorbs sampling noise in the case
    of equality). A pandas DataFrame. The proposition is stated for Gaussian x only; the other
    rows show what happens without it."""
    import pandas as pd

    rows = []
    for dist in distributions:
        for act in activations:
            var, back = activation_moments(act, dist, n, generator)
            rows.append({"input": dist, "activation": act, "Var[g(x)]": var, "E[g'(x)²]": back,
                         "R_b/R_f": back / var, "holds": bool(var <= back * (1 + tolerance))})
    return pd.DataFrame(rows)


def b14_table(n: int = 1_000_000, generator: torch.Generator | None = None):
    """Proposition B.14 for ReLU on Gaussian, Laplace and uniform unit-variance inputs: measured
    Var[σ(x)] and E[σ'(x)²], the exact Var = ½ − (E|x|)²/4 and the bound ½ − (E|x|)²/8 (DataFrame)."""
    import pandas as pd

    rows = []
    for dist in DISTRIBUTIONS:
        out = relu_b14(dist, n, generator)
        rows.append({"input": dist, "E|x|": mean_abs(dist), "Var[σ(x)] measured": out["var"],
                     "Var[σ(x)] exact": out["exact_var"], "bound E[σ'²] − (E|x|)²/8": out["bound"],
                     "E[σ'(x)²] measured": out["backward"], "holds": bool(out["var"] <= out["bound"])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Proposition B.17
def block_ratios(block: ScaledResidualBlock, x: torch.Tensor, grad_y: torch.Tensor) -> dict:
    """Proposition B.17 on one block y = x + F(x)/√L: the measured (R_f, R_b) of the block and of
    its branch F on the same x and ∂ℓ/∂y, and the proposition's prediction 1 + R(F)/L
    (L = 1/scale²; it assumes x and F(x), and the two backward paths, uncorrelated)."""
    if not isinstance(block, ScaledResidualBlock):
        raise ValueError(f"block_ratios needs a ScaledResidualBlock, got {type(block).__name__}")
    blocks = 1 / block.scale ** 2
    whole = scaling_ratios(block, x, grad_y)
    branch = scaling_ratios(block.branch, x, grad_y)
    return {"block": whole, "branch": branch,
            "predicted": (1 + branch[0] / blocks, 1 + branch[1] / blocks)}


def b17_sweep(blocks=(4, 8, 16, 32, 64), width: int = 128, repeats: int = 4, batch: int = 128,
              act: str = "relu", generator: torch.Generator | None = None):
    """Proposition B.17 across depth (a pandas DataFrame, one row per L in ``blocks``): whole-network
    (R_f, R_b) and R_b/R_f of L residual blocks y = x + F(x)/√L
    (:func:`gradprobe.networks.mlp.scaled_residual_net`) and of a plain BatchNorm network of the same
    2L weight layers (:func:`gradprobe.networks.mlp.mlp`), and, for the first residual block, the
    measured (R_f, R_b) beside the proposition's 1 + R(F)/L (:func:`block_ratios`). Fresh weights
    for every L."""
    import pandas as pd

    rows = []
    for L in blocks:
        positive_int("blocks", L)
        res = scaled_residual_net(L, width, act, generator)
        plain = mlp(2 * L, width, act, norm="batch", generator=generator)
        rf, rb = network_ratios(res, repeats, batch, generator)
        prf, prb = network_ratios(plain, repeats, batch, generator)
        x = torch.randn(batch, width, generator=generator)
        g = torch.randn(batch, width, generator=generator) / math.sqrt(width)
        block = block_ratios(res[0], x, g)
        rows.append({"L blocks": L, "layers": 2 * L, "resnet R_f": rf, "resnet R_b": rb, "resnet R_b/R_f": rb / rf,
                     "plain R_f": prf, "plain R_b": prb, "plain R_b/R_f": prb / prf,
                     "block R_f": block["block"][0], "block R_f = 1 + R_f(F)/L": block["predicted"][0],
                     "block R_b": block["block"][1], "block R_b = 1 + R_b(F)/L": block["predicted"][1]})
    return pd.DataFrame(rows)


def figure_b17(b17) -> plt.Figure:
    """Proposition B.17: whole-network R_b/R_f against depth (2L weight layers) of the 1/√L residual
    network and of the plain one (:func:`b17_sweep`), beside (π/(π−1))^layers through the plain
    network's first point; saved as ``ghost-b17``."""
    fig, ax = plt.subplots()
    ax.plot(b17["layers"], b17["plain R_b/R_f"], **plots.OURS, label="plain network (2L layers)")
    ax.plot(b17["layers"], b17["resnet R_b/R_f"], **plots.OURS, label="L residual blocks x + F(x)/√L")
    first = b17.iloc[0]
    ax.plot(b17["layers"], first["plain R_b/R_f"] * gaussian.RELU_RATE ** (b17["layers"] - first["layers"]),
            **plots.THEORY, label="∝ (π/(π−1))^layers")
    ax.set_yscale("log")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("weight layers (2L)")
    ax.set_ylabel("whole-network R_b / R_f (dimensionless)")
    return _finish(fig, ax, "Proposition B.17: the 1/√L residual network stays bounded", "ghost-b17")


# ---------------------------------------------------------------- Figure 1 (right)
VGG, RESNET = "VGG19-BN (plain)", "ResNet-20 (contrast)"  # the two networks of Figure 1 (right)
CHECKPOINT = "vgg19_bn-c79401a0.pth"  # torchvision's ImageNet VGG19-BN, looked for in $GRADPROBE_DATA


@dataclass
class TrainedBN:
    """Figure 1 (right): σ = √(mean running variance) per BatchNorm layer (input to output) of each
    network (:data:`VGG`, :data:`RESNET`) at initialization (running statistics recomputed from
    training images) and after training, the test accuracy and divergence of each network trained
    here (``steps`` SGD steps), the VGG's max-pool positions among its BN layers, and whether the
    VGG's trained σ comes from torchvision's ImageNet checkpoint (``checkpoint``)."""

    names: list[str]
    pools: list[int]
    sigma_init: dict[str, torch.Tensor]
    sigma_trained: dict[str, torch.Tensor]
    accuracy: dict[str, float]
    diverged: dict[str, bool]
    steps: int
    checkpoint: bool = False

    def fit(self, name: str, relative: bool = False) -> RateFit:
        """The fitted growth of σ per BN layer toward the input of network ``name``, trained (or
        ``relative``: of σ_trained/σ_init, the part of the profile that training changed)."""
        sigma = self.sigma_trained[name]
        return fit_rate(sigma / self.sigma_init[name] if relative else sigma, reverse=True)

    def summary(self) -> str:
        """One line per network trained here, and a line when the checkpoint was loaded."""
        lines = [f"{name}: {self.steps} steps, diverged: {self.diverged[name]}, test accuracy {acc:.3f}"
                 for name, acc in self.accuracy.items()]
        return "\n".join(lines + (["loaded torchvision's ImageNet vgg19_bn checkpoint"] if self.checkpoint else []))

    def rates_summary(self) -> str:
        """The fitted growth of σ toward the input: VGG trained, at initialization, trained/initial;
        ResNet-20 trained."""
        init_fit = fit_rate(self.sigma_init[VGG], reverse=True)
        return (f"growth of σ per BN layer toward the input: VGG trained {self.fit(VGG).rate:.4g}, at initialization "
                f"{init_fit.rate:.4g}, trained/initial {self.fit(VGG, relative=True).rate:.4g}; "
                f"ResNet-20 trained {self.fit(RESNET).rate:.4g}")


def _cifar(S, device, generator):
    """``S.train_images`` and ``S.test_images`` CIFAR-10 images, average-pooled to ``S.image_size``."""
    data = tensors.cifar10_tensors(S.train_images, S.test_images, device, generator)
    if S.image_size != 32:
        data = tensors.CifarTensors(*(F.adaptive_avg_pool2d(t, S.image_size) if t.dim() == 4 else t
                                      for t in data))
    return data


def train_figure1_right(S, gen: Generators, device, imagenet: bool = False) -> TrainedBN:
    """Figure 1 (right): the BatchNorm running σ of a plain VGG19-BN substitute (VGG19's layout,
    channels divided by ``S.vgg_divisor``; without the fifth max-pool on 16×16 images) and of a
    ResNet-20 (``S.resnet_width`` channels, He init), each measured at initialization (statistics
    recomputed from ``S.calib_images`` training images) and after ``S.train_steps`` steps of SGD
    (momentum 0.9, lr 0.05, weight decay 5·10⁻⁴, batch ``S.train_batch``) on ``S.train_images``
    CIFAR-10 images pooled to ``S.image_size``. With ``imagenet`` and the file :data:`CHECKPOINT`
    in ``$GRADPROBE_DATA``, the VGG's trained σ is torchvision's ImageNet checkpoint's instead.
    Draws: images from ``gen.data``, then both networks from ``gen.weights``, then training batches."""
    for name in ("train_steps", "train_batch", "calib_images", "vgg_divisor"):
        positive_int(name, getattr(S, name))
    if S.image_size not in (16, 32):
        raise ValueError(f"image_size must be 16 or 32 (VGG19's five max-pools), got {S.image_size!r}")
    checkpoint = Path(os.environ.get("GRADPROBE_DATA", "data")) / CHECKPOINT
    use_checkpoint = imagenet and checkpoint.is_file()
    cfg = [c if c == "M" else c // S.vgg_divisor for c in vgg.CONFIGS["vgg19"]]
    if S.image_size == 16:
        cfg = cfg[:-1]  # the fifth max-pool would act on a 1×1 map; no BatchNorm follows it
    data = _cifar(S, device, gen.data)
    nets = {VGG: vgg.vgg(cfg, norm="batch", generator=gen.weights),
            RESNET: cifar_resnet(20, norm="batch", width=S.resnet_width, init="he", generator=gen.weights)}
    sigma_init, sigma_trained, accuracy, diverged = {}, {}, {}, {}
    for name, net in nets.items():
        net.to(device)
        batchnorm.calibrate_running_stats(net, data.train_x[:S.calib_images])
        sigma_init[name] = batchnorm.bn_running_std(net)
        if use_checkpoint and name == VGG:
            continue
        opt = make_optimizer("sgd", net.parameters(), 0.05, momentum=0.9, weight_decay=5e-4)
        hist = loop.fit(net, data.train_x, data.train_y, steps=S.train_steps, batch_size=S.train_batch,
                        optimizer=opt, generator=gen.data)
        sigma_trained[name] = batchnorm.bn_running_std(net)
        accuracy[name] = loop.evaluate(net, data.test_x, data.test_y)[1]
        diverged[name] = hist.diverged
    if use_checkpoint:
        sigma_trained[VGG] = batchnorm.bn_running_std(vgg.load_checkpoint(checkpoint))
    return TrainedBN(list(nets), vgg.pool_positions(nets[VGG]), sigma_init, sigma_trained, accuracy, diverged,
                     S.train_steps, use_checkpoint)


def figure1_right(trained: TrainedBN) -> plt.Figure:
    """Figure 1 (right): σ per BatchNorm layer, trained and at initialization, of the VGG19-BN
    substitute (max-pools marked) and of the contrast ResNet-20; saved as ``ghost-fig1-right``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, name in zip(axes, trained.names):
        plots.per_layer(ax, trained.sigma_trained[name], label="trained", ylabel="σ = √(mean running variance)")
        plots.per_layer(ax, trained.sigma_init[name], label="at initialization",
                        ylabel="σ = √(mean running variance)", marker="s", linestyle="--")
        ax.set_xlabel("BatchNorm layer index (input → output)")
        if ax is axes[1]:
            ax.set_ylabel("")
        if name == VGG:
            for p in trained.pools:
                ax.axvline(p + 0.5, color="0.6", linewidth=1)
            ax.plot([], [], color="0.6", linewidth=1, label="max-pool")
        ax.set_title(f"Figure 1 (right): {name}")
        ax.legend()
    plots.savefig(fig, "ghost-fig1-right")
    return fig


# ---------------------------------------------------------------- The paper against this book
def check_claims(norms: NormsAtInit, fig3: Figure3, op_table, b12, b14, b17, trained: TrainedBN) -> Claims:
    """Every claim of the paper that the chapter measures, each with its source: r(σ) of the
    corrected Eq. (1), the growth rates of Figures 1–3, Figure 2's prediction, the single-operator
    ratios of Appendix B.1 (Props. B.4, B.8, B.12), Props. B.12, B.14 and B.17 with Cor. B.15, and
    Figure 1 (right). The arguments are the results of this module's drivers and tables."""
    claims = Claims("ghost2024")
    src = "ghost2024, App. C, Eq. (1)"
    for act, paper_r in (("relu", 1.467), ("tanh", 1.178), ("selu", 1.072)):
        claims.close(f"r({act}) by quadrature, corrected Eq. (1)", paper_r, gaussian.explosion_rate(act), abs=5e-4,
                     source=src)
    plain_fit, resnet_fit = norms.plain_fit, norms.resnet_fit
    claims.close("PlainNet20 (BN, ReLU) norm growth per layer", round(math.sqrt(1.467), 3), plain_fit.rate, rel=0.03,
                 source="ghost2024, App. B (α = √(π/(π−1)))")
    _figure3_claims(claims, fig3)
    deviation, growth = norms.deviation, norms.growth
    claims.holds("Figure 2: α^(L−k) predicts the PlainNet curve", "matches quite well",
                 f"max dev {float(deviation.max()):.2%}", bool(deviation.max() < 0.10),
                 criterion="every layer within 10%", source="ghost2024, Fig. 2")
    claims.holds("ResNet20 first/last ratio orders of magnitude below PlainNet20's", "plain exponential, ResNet slow",
                 f"{growth['PlainNet20']:.3g} vs {growth['ResNet20']:.3g}",
                 bool(growth["PlainNet20"] / growth["ResNet20"] >= 100), criterion="plain/ResNet ≥ 100",
                 source="ghost2024, Fig. 1 (left)",
                 note="at 20 layers the plain net itself only grows ≈ 1.211^19 ≈ 38×; "
                      "no ratio can be 100× below that")
    claims.holds("ResNet20 grows more slowly than PlainNet20", "ResNets grow slowly",
                 f"{resnet_fit.rate:.4g} vs {plain_fit.rate:.4g} per layer",
                 bool(resnet_fit.rate - 1 < 0.6 * (plain_fit.rate - 1)),
                 criterion="ResNet excess rate < 60% of plain's", source="ghost2024, App. B.2")
    _operator_claims(claims, op_table)
    _proposition_claims(claims, b12, b14, b17)
    _figure1_right_claims(claims, trained)
    return claims


def _figure3_claims(claims: Claims, fig3: Figure3) -> None:
    """Figure 3: the BN rates against √r, their order, and "explode regardless of BN"."""
    rate = fig3.rates.set_index(["activation", "BatchNorm"])["fitted rate / layer"]
    for act, paper_r in (("tanh", 1.178), ("selu", 1.072)):
        claims.close(f"{act} + BN norm growth per layer ≈ √r", round(math.sqrt(paper_r), 4), rate[act, True],
                     rel=0.05, source="ghost2024, Fig. 3 and Eq. (1)")
    claims.holds("BN rates ordered SELU < tanh < ReLU", "SELU smallest, ReLU largest",
                 " < ".join(f"{rate[a, True]:.4g}" for a in ("selu", "tanh", "relu")),
                 bool(rate["selu", True] < rate["tanh", True] < rate["relu", True]), criterion="strict order",
                 source="ghost2024, App. C")
    no_bn = {a: rate[a, False] for a in ("selu", "tanh", "relu")}
    claims.holds("without BN all three explode too", "explode regardless of BN",
                 ", ".join(f"{a} {r:.4g}" for a, r in no_bn.items()), bool(min(no_bn.values()) > 1.02),
                 criterion="every fitted rate > 1.02", source="ghost2024, App. C, Fig. 3",
                 note="He-initialized ReLU without BN is critical (χ = 1): mean-field theory predicts no growth")


def _operator_claims(claims: Claims, op_table) -> None:
    """Appendix B.1: ReLU, max-pool, linear (Prop. B.4) and BatchNorm (Prop. B.8) ratios."""
    ops = op_table.set_index("operator")
    claims.close("ReLU R_f", 0.3408, ops.loc["relu", "R_f measured"], rel=0.02, source="ghost2024, Prop. B.12")
    claims.close("ReLU R_b", 0.5, ops.loc["relu", "R_b measured"], rel=0.02, source="ghost2024, Prop. B.12")
    claims.close("max-pool 2×2 R_f", 0.492, ops.loc["maxpool2x2", "R_f measured"], rel=0.02,
                 source="ghost2024, App. B.1")
    claims.close("max-pool 2×2 R_b", 0.25, ops.loc["maxpool2x2", "R_b measured"], rel=0.02,
                 source="ghost2024, App. B.1")
    lin = ops.loc["linear"]
    claims.holds("linear R_f = ‖W‖²/D, R_b = ‖W‖²/d", "Prop. B.4",
                 f"{lin['R_f measured']:.4g}/{lin['R_f theory']:.4g}, "
                 f"{lin['R_b measured']:.4g}/{lin['R_b theory']:.4g}",
                 bool(abs(lin["R_f measured"] / lin["R_f theory"] - 1) < 0.02
                      and abs(lin["R_b measured"] / lin["R_b theory"] - 1) < 0.02),
                 criterion="both within 2%", source="ghost2024, Prop. B.4")
    bn_rows, bs = _batchnorm_rows(op_table)
    large_b = bn_rows[bs >= 32]
    bn_dev = float((large_b["R_b measured"] - large_b["R_b theory"]).abs().max())
    claims.holds("BatchNorm σ²R_b = 1 − z/B, E z = 1 (B = 32…512)", "Prop. B.8", f"max |Δ| {bn_dev:.2g}",
                 bool(bn_dev < 0.01), criterion="|measured − (1 − 1/B)| < 0.01", source="ghost2024, Prop. B.8",
                 note="for B = 8, 16 the exact E z = B/(B−1) is needed (figure above)")


def _proposition_claims(claims: Claims, b12, b14, b17) -> None:
    """Propositions B.12 (Gaussian rows), B.14 and B.17 with Corollary B.15."""
    gauss = b12[b12.input == "gaussian"]
    claims.holds("B.12: Var[g] ≤ E[g'²] on Gaussian input", "holds, equality iff affine",
                 f"{int(gauss['holds'].sum())}/{len(gauss)} activations", bool(gauss["holds"].all()),
                 criterion="all tested activations", source="ghost2024, Prop. B.12")
    claims.holds("B.14 (ReLU) on Gaussian, Laplace, uniform", "holds for symmetric inputs",
                 f"{int(b14['holds'].sum())}/{len(b14)} distributions", bool(b14["holds"].all()),
                 criterion="all three", source="ghost2024, Prop. B.14")
    res_ratio = b17["resnet R_b/R_f"]
    claims.holds("B.17: 1/√L ResNet R_b/R_f bounded in depth", "O((1+1/L)^L), depth-independent",
                 f"{res_ratio.min():.3g} … {res_ratio.max():.3g}", bool(res_ratio.max() / res_ratio.min() < 2),
                 criterion="max/min over L < 2", source="ghost2024, Prop. B.17")
    claims.holds("B.17: plain network of equal depth grows exponentially", "Ω(c^L), Cor. B.15",
                 f"{b17['plain R_b/R_f'].iloc[-1]:.3g} at {int(b17['layers'].iloc[-1])} layers",
                 bool(b17["plain R_b/R_f"].iloc[-1] > 100 * b17["plain R_b/R_f"].iloc[0]),
                 criterion="≥ 100× growth over the sweep", source="ghost2024, Cor. B.15")


def _figure1_right_claims(claims: Claims, trained: TrainedBN) -> None:
    """Figure 1 (right): σ grows toward the input, and the growth comes from training."""
    vgg_fit, change_fit = trained.fit(VGG), trained.fit(VGG, relative=True)
    claims.holds("trained plain VGG: σ grows toward the input", "exponential growth (ImageNet VGG19-BN)",
                 f"{vgg_fit.rate:.4g} per BN layer", bool(vgg_fit.rate > 1.02),
                 criterion="fitted growth > 1.02 per layer", source="ghost2024, App. A, Fig. 1 (right)",
                 note="CIFAR-10 substitute, not the ImageNet checkpoint" if not trained.checkpoint else "")
    claims.holds("the growth comes from training (σ trained / σ at init)", "larger updates in shallow layers",
                 f"{change_fit.rate:.4g} per BN layer", bool(change_fit.rate > 1.02),
                 criterion="fitted growth of the ratio > 1.02 per layer", source="ghost2024, App. A",
                 note="substitute trained for a few epochs only")
