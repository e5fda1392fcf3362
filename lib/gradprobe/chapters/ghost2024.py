"""Chapter *A ghost that never leaves* (ghost 2024): every figure, table and claim of the notebook,
in its order. Each section has a driver (``measure_*``), figure functions (``figure*``) and a
``check_*`` that adds the section's rows to the page's claims and glues the numbers its prose uses.

1. Figure 1 (left) and Figure 2: :func:`measure_figure1_left`, :func:`figure1_left`, :func:`figure2`.
2. Depth, Appendix B.2: :func:`measure_depth` (plain, He's ResNet, 1/√L and zero-γ ResNets at
   20, 56 and 110 layers), :func:`figure_depth`.
3. Figure 3 and Equation (1), Appendix C: :func:`eq1_table`, :func:`measure_figure3` (with and
   without BatchNorm, beside √r and mean-field theory), :func:`figure3`; the finite-size deviation:
   :func:`measure_deviation`, :func:`figure_deviation`.
4. Appendix B.1, single operators: :func:`measure_operators`, :func:`figure_b8`.
5. Assumption B.6, Remark B.9, Corollary B.7: :func:`measure_independence`, :func:`figure_independence`.
6. Propositions B.12 and B.14: :func:`b12_table`, :func:`b14_table`.
7. Proposition B.17: :func:`b17_closed_form`, :func:`measure_b17`, :func:`figure_b17`.
8. Figure 1 (right), Appendix A and Remark B.16: :func:`train_vgg` (one sweep trial),
   :func:`measure_figure1_right`, :func:`figure1_right`, :func:`figure1_right_change`.

Drivers take the settings ``S`` (:func:`settings`) and the page's generators; the random
experiments return one value per repeat (or seed), so that every verdict is decided on a mean and
its standard error (:mod:`gradprobe.book.claims`). Figure functions return a matplotlib Figure; the
notebook shows and saves it with :func:`gradprobe.book.plots.show`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import sweep
from ..book import plots
from ..book.claims import ERRATUM, MACHINERY, Estimate, all_of, at_least, at_most, close, ordered
from ..book.scales import settings as make_settings
from ..checks import int_at_least, positive_int
from ..data import tensors
from ..measure import batchnorm
from ..measure.rates import fit_rate
from ..measure.repeats import repeated_gradient_norms, repeated_signals
from ..measure.stats import scaling_ratios
from ..networks import vgg
from ..networks.layers import init_weights_
from ..networks.mlp import ScaledResidualBlock, mlp, scaled_residual_net
from ..runtime import Generators
from ..theory import gaussian
from ..theory.distributions import DISTRIBUTIONS, activation_moments, mean_abs
from ..theory.operators import batchnorm_z_moments, theory_ratios
from ..train import loop
from ..train.optim import make_optimizer

__all__ = ["settings", "cost", "RATE_TOLERANCE", "EXPLODES", "rates_per_repeat",
           "NormsAtInit", "measure_figure1_left", "figure1_left", "figure2", "check_figure1_left", "check_figure2",
           "DEPTH_NETWORKS", "DepthSweep", "measure_depth", "figure_depth", "check_depth",
           "QUOTED_RATES", "FIGURE3_ACTIVATIONS", "eq1_table", "Figure3", "measure_figure3", "figure3",
           "check_figure3", "Deviation", "measure_deviation", "figure_deviation", "glue_deviation",
           "batchnorm_z", "Operators", "measure_operators", "figure_b8", "check_operators",
           "Independence", "measure_independence", "figure_independence", "check_independence",
           "relu_b14", "b12_table", "b14_table", "b14_samples", "check_b12_b14",
           "b17_closed_form", "block_ratios", "B17", "measure_b17", "figure_b17", "check_b17",
           "CHECKPOINT", "TrainConfig", "train_vgg", "TrainedBN", "measure_figure1_right", "figure1_right",
           "figure1_right_change", "check_figure1_right"]

SOURCE = "ghost2024"
RATE_TOLERANCE = 0.10   # "the rate is √r(σ)": the measured excess rate (rate − 1) within 10% of √r(σ) − 1
EXPLODES = 0.01         # "explodes": the gradient norm grows by at least 1% per layer toward the input
_GRAD_NORM = "‖∂ℓ/∂W_k‖_F"


# ---------------------------------------------------------------- settings and cost
def settings(scale: str):
    """The chapter's settings at ``scale`` (:func:`gradprobe.book.scales.settings`)."""
    return make_settings(
        scale,
        book=dict(depth=20, width=256, batch=128, repeats=256, repeats_fig3=128, chunk=32,
                  depths=(20, 56, 110), repeats_depth=16, sweep_widths=(64, 128, 256, 512),
                  sweep_batches=(32, 128, 512), repeats_sweep=16, repeats_b6=32, op_samples=65536,
                  op_repeats=8, op_features=16384, b17_blocks=(4, 8, 16, 32, 64), b17_width=128, b17_repeats=16,
                  vgg_divisor=8, image_size=32, seeds=3, train_images=10000, train_steps=600,
                  train_batch=64, lr=0.05, calib_images=1024, test_images=1000),
        smoke=dict(width=64, repeats=16, repeats_fig3=8, chunk=16, depths=(20, 56), repeats_depth=4,
                   sweep_widths=(32, 64), sweep_batches=(32, 64), repeats_sweep=4, repeats_b6=4,
                   op_samples=8192, op_repeats=4, op_features=4096, b17_blocks=(4, 8, 16), b17_width=32, b17_repeats=3,
                   seeds=2, train_images=256, train_steps=2, calib_images=128, test_images=200),
        paper=dict(repeats=4096, repeats_fig3=4096, chunk=64, repeats_depth=256, repeats_sweep=256,
                   sweep_widths=(64, 128, 256, 512, 1024), sweep_batches=(32, 128, 512, 2048),
                   repeats_b6=256, op_samples=1048576, op_repeats=16, b17_width=256, b17_repeats=64,
                   vgg_divisor=1, train_images=50000, train_steps=11730, train_batch=128,
                   calib_images=4096, test_images=10000),
        notes={"depth": "the paper's 20 layers", "width": "the paper's d = 256", "batch": "the paper's 128",
               "repeats": "the paper's 4096 at paper scale; fresh weights, input and output gradient each",
               "repeats_fig3": "per curve of Figure 3 (paper: 4096)",
               "chunk": "repeats per batched pass (speed and memory only)",
               "depths": "ours: the depths of He et al.'s CIFAR ResNets",
               "repeats_depth": "networks per depth and kind",
               "sweep_widths": "ours: widths of the finite-size sweep (batch 128)",
               "sweep_batches": "ours: batch sizes of the finite-size sweep (width 256)",
               "repeats_sweep": "networks per point of the sweep",
               "repeats_b6": "networks per curve of the independence checks",
               "op_samples": "Gaussian samples per operator and repeat",
               "op_repeats": "independent repeats of the operator table (for standard errors)",
               "op_features": "independent BatchNorm features per batch size (Prop. B.8)",
               "b17_blocks": "ours: residual blocks L (2L weight layers)",
               "b17_width": "ours", "b17_repeats": "networks per L",
               "vgg_divisor": "ours: VGG19's channels divided by this (paper: ImageNet VGG19-BN)",
               "image_size": "CIFAR-10 at full size: every conv sees at least a 2×2 map",
               "seeds": "independently trained networks (Figure 1, right)",
               "train_images": "CIFAR-10 training images (ours; paper: ImageNet)",
               "train_steps": "ours: SGD steps (paper scale: 30 epochs)",
               "train_batch": "ours", "lr": "ours: SGD, momentum 0.9, weight decay 5·10⁻⁴",
               "calib_images": "images that set the running statistics at initialization",
               "test_images": "CIFAR-10 test images for the accuracy"})


def _vgg_macs(divisor: int, size: int) -> float:
    """Multiply-adds of one forward pass of the VGG19 layout with channels / ``divisor`` on
    ``size``-pixel images."""
    total, channels, side = 0.0, 3, size
    for item in vgg.CONFIGS["vgg19"]:
        if item == "M":
            side = max(1, side // 2)
            continue
        out = item // divisor
        total += side * side * 9 * channels * out
        channels = out
    return total


FIXED_COST = 220.0  # quadrature, figures, tables and claims: about 9 s on the book's CPU, in cost units


def cost(S) -> float:
    """The chapter's work in billions of multiply-adds: the gradient experiments (3·B·d²·L per
    network, forward and backward), the operator and B.17 measurements, and the training of
    Figure 1 (right) (3 forward passes' worth per training image), plus :data:`FIXED_COST`, the part
    that does not grow with the settings (measured once, so that a smoke run's estimates of the
    other scales are not dominated by it)."""
    per = lambda reps, depth, width, batch: 3.0 * reps * depth * width * width * batch
    work = 2 * per(S.repeats, S.depth, S.width, S.batch) + 6 * per(S.repeats_fig3, S.depth, S.width, S.batch)
    work += sum(4 * per(S.repeats_depth, d, S.width, S.batch) for d in S.depths)
    work += sum(3 * per(S.repeats_sweep, S.depth, w, 128) for w in S.sweep_widths)
    work += sum(3 * per(S.repeats_sweep, S.depth, S.width, b) for b in S.sweep_batches)
    work += 8 * per(S.repeats_b6, S.depth, S.width, S.batch)
    work += sum(2 * per(S.b17_repeats, 2 * L, S.b17_width, 128) for L in S.b17_blocks)
    work += 40.0 * S.op_samples * S.op_repeats * 256
    images = S.seeds * (3 * S.train_steps * S.train_batch + 2 * S.calib_images + S.test_images)
    work += images * _vgg_macs(S.vgg_divisor, S.image_size)
    return work / 1e9 + FIXED_COST


def rates_per_repeat(norms: torch.Tensor) -> np.ndarray:
    """The fitted growth of the gradient norm per layer toward the input (:func:`fit_rate`, one
    line through log ‖∂ℓ/∂W_k‖ over the layers) of each repeat (rows of ``norms`` [R, L])."""
    values = torch.as_tensor(norms, dtype=torch.float64)
    if values.dim() != 2 or values.shape[1] < 2:
        raise ValueError(f"norms must be [repeats, layers] with at least 2 layers, got {tuple(values.shape)}")
    return np.array([fit_rate(row, reverse=True).rate for row in values])


def _excess(rates) -> Estimate:
    return Estimate.of(np.asarray(rates) - 1.0, "repeats")


def _rate_check(rates, predicted: float):
    """Excess rate (rate − 1) against the predicted excess, within :data:`RATE_TOLERANCE` of it."""
    return close(predicted - 1.0, _excess(rates), rel=RATE_TOLERANCE)


def _band(ax, xs, runs, label, **line):
    """Mean over runs (rows) with a ±2 standard-error band."""
    runs = np.asarray(runs, dtype=float)
    mean = runs.mean(0)
    se = runs.std(0, ddof=1) / math.sqrt(runs.shape[0]) if runs.shape[0] > 1 else np.zeros_like(mean)
    (drawn,) = ax.plot(xs, mean, label=label, **line)
    ax.fill_between(xs, mean - 2 * se, mean + 2 * se, color=drawn.get_color(), alpha=0.25, linewidth=0)
    return drawn


def _layer_axis(ax, n: int, start: int = 1, label: str = "layer index k (input → output)") -> None:
    """Integer ticks on a layer axis (at most about 10 of them)."""
    step = max(1, int(math.ceil(n / 10)))
    if step > 1:
        step = 5 * int(math.ceil(step / 5)) if step > 3 else step
    ax.set_xticks(list(range(start, start + n, step)))
    ax.set_xlabel(label)


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
    def plain_rates(self) -> np.ndarray:
        """PlainNet20's growth per layer toward the input, one per repeat."""
        return rates_per_repeat(self.plain)

    @property
    def resnet_rates(self) -> np.ndarray:
        return rates_per_repeat(self.resnet)

    @property
    def predicted(self) -> torch.Tensor:
        """Figure 2: norm_L · α^(L−k) for k = 1..L, α = √(π/(π−1)), anchored at the measured last
        layer of PlainNet20's mean curve (nothing fitted)."""
        alpha = gaussian.norm_rate("relu")
        k = torch.arange(1, self.depth + 1, dtype=torch.float64)
        return self.plain_mean[-1] * alpha ** (self.depth - k)

    @property
    def deviation(self) -> torch.Tensor:
        """measured / predicted − 1 per layer of PlainNet20's mean curve (Figure 2)."""
        return self.plain_mean / self.predicted - 1

    @property
    def first_over_predicted(self) -> np.ndarray:
        """Per repeat: (‖∂ℓ/∂W_1‖/‖∂ℓ/∂W_L‖) / α^(L−1), where the prediction of Figure 2 has
        accumulated over every layer (1: the prediction is exact)."""
        alpha = gaussian.norm_rate("relu")
        return (self.plain[:, 0] / self.plain[:, -1]).numpy() / alpha ** (self.depth - 1)


def measure_figure1_left(S, gen: Generators, device) -> NormsAtInit:
    """Figure 1 (left): ``S.repeats`` fresh PlainNet20 and then as many ResNet20 networks
    (``S.depth`` fully connected layers of width ``S.width``, He init, BatchNorm in training mode,
    ReLU; ResNet20 with He's basic-block shortcut every two layers) on a Gaussian batch of
    ``S.batch`` rows with output gradient N(0, I/d), by
    :func:`gradprobe.measure.repeats.repeated_gradient_norms` from ``gen.weights``."""
    int_at_least("depth", S.depth, 2)
    shape = dict(depth=S.depth, width=S.width, batch=S.batch, chunk=S.chunk, device=device, generator=gen.weights)
    return NormsAtInit(repeated_gradient_norms(S.repeats, residual=False, **shape),
                       repeated_gradient_norms(S.repeats, residual=True, **shape))


def figure1_left(norms: NormsAtInit) -> plt.Figure:
    """Figure 1 (left): the mean weight-gradient norm per layer of PlainNet20 and ResNet20 (log
    axis) with ±2 standard errors of the mean over repeats."""
    fig, ax = plt.subplots()
    ks = np.arange(1, norms.depth + 1)
    for name, values in (("PlainNet20", norms.plain), ("ResNet20", norms.resnet)):
        _band(ax, ks, values.numpy(), f"{name} (mean of {values.shape[0]} networks)", **plots.OURS)
    ax.set_yscale("log")
    ax.set_ylabel(f"{_GRAD_NORM} (dimensionless)")
    _layer_axis(ax, norms.depth)
    ax.set_title("Weight-gradient norm per layer at initialization")
    ax.legend()
    return fig


def figure2(norms: NormsAtInit) -> plt.Figure:
    """Figure 2: PlainNet20's measured mean norm per layer against the prediction norm_L · α^(L−k)
    (:attr:`NormsAtInit.predicted`)."""
    fig, ax = plt.subplots()
    ks = np.arange(1, norms.depth + 1)
    ax.plot(ks, norms.plain_mean.numpy(), label="PlainNet20, measured (mean)", **plots.OURS)
    ax.plot(ks, norms.predicted.numpy(), label="predicted: norm_L · α^(L−k), α = √(π/(π−1))", **plots.THEORY)
    ax.set_yscale("log")
    ax.set_ylabel(f"{_GRAD_NORM} (dimensionless)")
    _layer_axis(ax, norms.depth)
    ax.set_title("Actual and predicted gradient norm")
    ax.legend()
    return fig


def check_figure1_left(page, norms: NormsAtInit) -> None:
    """Rows of Figure 1 (left): PlainNet20 grows by α per layer; glues the rates and growths."""
    claims = page.claims
    claims.section("ghost2024-fig1-left", "Figure 1 (left): PlainNet20 and ResNet20")
    alpha = gaussian.norm_rate("relu")
    plain = norms.plain_rates
    claims.add("PlainNet20: gradient norm grows by α = √(π/(π−1)) per layer (excess rate α − 1)",
               _rate_check(plain, alpha), source=f"{SOURCE}, Sec. 1 and App. B.1",
               quote="For ReLU activation, the exponential rate is α = √(π/(π−1))")
    growth = (norms.plain[:, 0] / norms.plain[:, -1]).numpy()
    resnet_growth = float((norms.resnet[:, 0] / norms.resnet[:, -1]).mean())
    for name, value, fmt in (("fig1_plain_rate", plain.mean(), ".4f"), ("fig1_plain_growth", growth.mean(), ".3g"),
                             ("alpha", alpha, ".4f"), ("fig1_resnet_growth", resnet_growth, ".3g"),
                             ("fig1_repeats", norms.plain.shape[0], "d")):
        page.glue(name, value, fmt)


def check_figure2(page, norms: NormsAtInit) -> None:
    """Rows of Figure 2: the first layer's norm against α^(L−1) times the last layer's."""
    page.claims.section("ghost2024-fig2", "Figure 2: the predicted curve")
    page.claims.add("Figure 2: first-layer norm / (last-layer norm · α^(L−1)) = 1",
                    close(1.0, Estimate.of(norms.first_over_predicted, "repeats"), rel=RATE_TOLERANCE),
                    source=f"{SOURCE}, App. B.1, Fig. 2",
                    quote="Figure 2 how close the gradient norm curve matches the exponential function",
                    note="10% at the first layer, where the prediction has accumulated over 19 layers")
    deviation = norms.deviation.abs()
    page.glue("fig2_max_deviation", float(deviation.max()), ".1%")
    page.glue("fig2_max_layer", int(deviation.argmax()) + 1, "d")


# ---------------------------------------------------------------- depth: Appendix B.2
# name -> (residual, scale of the branch's last BatchNorm at initialization; "sqrt" means 1/√(blocks))
DEPTH_NETWORKS = {"plain": (False, 1.0), "ResNet (γ = 1)": (True, 1.0), "ResNet, γ = 1/√L": (True, "sqrt"),
                  "ResNet, zero γ": (True, 0.0)}


@dataclass(frozen=True)
class DepthSweep:
    """Per kind of network (:data:`DEPTH_NETWORKS`) and depth: the weight-gradient growth
    ‖∂ℓ/∂W_1‖/‖∂ℓ/∂W_L‖ (``weights``; NaN for the zero-γ ResNet, whose branches receive no gradient)
    and the backward signal's growth ‖∂ℓ/∂x^(0)‖/‖∂ℓ/∂x^(L)‖ (``stream``), one value per network."""

    depths: tuple
    weights: dict
    stream: dict

    def rate(self, name: str, depth: int, which: str = "weights") -> np.ndarray:
        """The growth per layer, growth^(1/(L−1)), one per network."""
        return getattr(self, which)[name, depth] ** (1.0 / (depth - 1))

    def table(self):
        """Mean growth of each kind at each depth (weights and stream), a DataFrame."""
        rows = [{"network": n, "layers L": d, "‖∂ℓ/∂W_1‖ / ‖∂ℓ/∂W_L‖": self.weights[n, d].mean(),
                 "‖∂ℓ/∂x⁽⁰⁾‖ / ‖∂ℓ/∂x⁽ᴸ⁾‖": self.stream[n, d].mean(),
                 "growth per layer": self.rate(n, d, "stream").mean()}
                for n in DEPTH_NETWORKS for d in self.depths]
        return pd.DataFrame(rows).set_index(["network", "layers L"])


def measure_depth(S, gen: Generators, device) -> DepthSweep:
    """``S.repeats_depth`` fresh networks of each kind of :data:`DEPTH_NETWORKS` at each depth of
    ``S.depths`` (width, batch as Figure 1; He's basic blocks with the branch's last BatchNorm
    scaled by γ), by :func:`gradprobe.measure.repeats.repeated_signals` from ``gen.weights``."""
    weights, stream = {}, {}
    for depth in S.depths:
        int_at_least("depth", depth, 4)
        chunk = max(1, S.chunk * 20 // depth)
        for name, (residual, gamma) in DEPTH_NETWORKS.items():
            scale = 1 / math.sqrt(depth // 2) if gamma == "sqrt" else gamma
            sig = repeated_signals(S.repeats_depth, depth, S.width, S.batch, residual=residual, branch_scale=scale,
                                   chunk=chunk, generator=gen.weights, device=device)
            w = sig.weight_norms
            weights[name, depth] = (w[:, 0] / w[:, -1]).numpy() if bool((w[:, -1] > 0).all()) \
                else np.full(w.shape[0], np.nan)
            stream[name, depth] = (sig.stream[:, 0] / sig.stream[:, -1]).numpy()
    return DepthSweep(tuple(S.depths), weights, stream)


def figure_depth(sweep_: DepthSweep) -> plt.Figure:
    """Growth from the last layer to the first against depth: weight gradients (left, with α^(L−1))
    and the backward signal ‖∂ℓ/∂x^(0)‖/‖∂ℓ/∂x^(L)‖ (right, with the zero-γ ResNet)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, layout="constrained")
    depths = np.array(sweep_.depths)
    for ax, which, title in zip(axes, ("weights", "stream"), ("weight gradients ‖∂ℓ/∂W_1‖ / ‖∂ℓ/∂W_L‖",
                                                               "backward signal ‖∂ℓ/∂x⁽⁰⁾‖ / ‖∂ℓ/∂x⁽ᴸ⁾‖")):
        for name in DEPTH_NETWORKS:
            values = np.stack([getattr(sweep_, which)[name, d] for d in sweep_.depths], axis=1)
            if np.isfinite(values).all():
                _band(ax, depths, values, name, **plots.OURS)
        if which == "weights":
            ax.plot(depths, gaussian.norm_rate("relu") ** (depths - 1.0), label="α^(L−1)", **plots.THEORY)
        ax.set_yscale("log")
        ax.set_xticks(list(depths))
        ax.set_xlabel("layers L")
        ax.set_title(title)
    axes[0].set_ylabel("growth from output to input (ratio)")
    axes[0].legend(loc="upper left")
    axes[1].legend(loc="upper left")
    return fig


def check_depth(page, sweep_: DepthSweep) -> None:
    """Rows of Appendix B.2: the plain network explodes at every depth; He's ResNet grows, but
    ever more slowly per layer; the 1/√L and zero-γ ResNets stay bounded."""
    claims, deepest = page.claims, max(sweep_.depths)
    claims.section("ghost2024-depth", "Depth: plain networks and three ResNets (App. B.2)")
    alpha = gaussian.norm_rate("relu")
    claims.add(f"plain network: gradient norm grows by α per layer at {deepest} layers (excess rate α − 1)",
               _rate_check(sweep_.rate("plain", deepest), alpha), source=f"{SOURCE}, Sec. 1 and Cor. B.15",
               quote="the gradient of the first layer increases exponentially as the network goes deep")
    rates = {f"{d} layers": sweep_.rate("ResNet (γ = 1)", d) for d in sweep_.depths}
    claims.add("He's ResNet: growth per layer falls with depth (not exponential)",
               ordered({k: Estimate.of(v, "networks") for k, v in rates.items()}, increasing=False),
               source=f"{SOURCE}, App. B.2",
               quote="the gradient of ResNets grow slowly … without the problem of exploding gradient")
    growth = {f"{d} layers": Estimate.of(sweep_.stream["ResNet (γ = 1)", d], "networks") for d in sweep_.depths}
    claims.add("He's ResNet: the gradient still grows with depth", ordered(growth), source=f"{SOURCE}, App. B.2",
               quote="the vanilla ResNets also has the problem of exploding gradient",
               note="it grows about in proportion to depth here, with BatchNorm in every branch")
    bound = math.e
    claims.add("ResNet with γ = 1/√L: backward signal grows less than (1 + 1/L)^L < e at every depth",
               all_of({f"L = {d}": at_most(Estimate.of(sweep_.stream["ResNet, γ = 1/√L", d], "networks"), bound)
                       for d in sweep_.depths}),
               source=f"{SOURCE}, App. B.2",
               quote="a 1/√L initialization … also solve the problem stated in this paper")
    claims.add("ResNet with zero γ: backward signal does not grow at any depth",
               all_of({f"L = {d}": at_most(Estimate.of(sweep_.stream["ResNet, zero γ", d], "networks"), 1.0)
                       for d in sweep_.depths}),
               source=f"{SOURCE}, App. B.2", quote="A zero-gamma initialization … also solve the problem",
               note="the first block's ReLU halves the variance of a Gaussian input's gradient: 1/√2")
    # the depths differ between scales: the prose gets one phrase per network ("a, b and c")
    depths = sweep_.depths
    for key, name in (("plain", "plain"), ("resnet", "ResNet (γ = 1)"), ("sqrt", "ResNet, γ = 1/√L")):
        page.glue_list(f"depth_{key}_values", [float(np.mean(sweep_.weights[name, d])) for d in depths], ".3g")
    page.glue("depth_plain_first", float(np.mean(sweep_.weights["plain", depths[0]])), ".3g")
    page.glue("depth_zero_last", float(np.mean(sweep_.stream["ResNet, zero γ", depths[-1]])), ".3f")
    page.glue_list("depth_list", depths)
    page.glue("depth_first", depths[0], "d")
    page.glue("depth_deepest", deepest, "d")


# ---------------------------------------------------------------- Figure 3 and Equation (1)
QUOTED_RATES = {"selu": 1.072, "tanh": 1.178, "relu": 1.467}   # App. C, after Eq. (1)
# (activation, init) of Figure 3: N(0, 1/d) for SELU, N(0, 2/d) for tanh and ReLU (App. C)
FIGURE3_ACTIVATIONS = (("selu", "lecun"), ("tanh", "he"), ("relu", "he"))
_WEIGHT_VAR = {"he": 2.0, "lecun": 1.0}


def _printed_rate(act: str) -> float:
    """Equation (1) as transcribed: E[σ'(X)]² / Var[σ(X)] (the square outside the expectation)."""
    return gaussian.mean_derivative(act) ** 2 / gaussian.forward_ratio(act)


def eq1_table():
    """Equation (1) for the three activations of Figure 3, by quadrature: the rate as the paper's
    numbers need it, E[σ'(X)²]/Var[σ(X)], and as the transcribed formula prints it,
    E[σ'(X)]²/Var[σ(X)], beside the quoted values (a DataFrame indexed by activation)."""
    rows = [{"activation": a, "Var[σ(X)]": gaussian.forward_ratio(a), "E[σ'(X)²]": gaussian.backward_ratio(a),
             "r = E[σ'²]/Var[σ]": gaussian.explosion_rate(a), "as transcribed: E[σ']²/Var[σ]": _printed_rate(a),
             "quoted (App. C)": q, "√r (norm / layer)": gaussian.norm_rate(a)} for a, q in QUOTED_RATES.items()]
    return pd.DataFrame(rows).set_index("activation")


@dataclass(frozen=True)
class Figure3:
    """Figure 3: ``norms[activation, norm]`` the weight-gradient norms [repeats, L] of the plain
    network with that activation, with BatchNorm (``"batch"``) or without (None)."""

    norms: dict

    @property
    def depth(self) -> int:
        return next(iter(self.norms.values())).shape[1]

    def rates(self, act: str, norm) -> np.ndarray:
        return rates_per_repeat(self.norms[act, norm])

    @staticmethod
    def mean_field(act: str, depth: int) -> gaussian.MeanField:
        """Mean-field theory of the network without BatchNorm (its init of Figure 3)."""
        init = dict(FIGURE3_ACTIVATIONS)[act]
        return gaussian.mean_field(act, _WEIGHT_VAR[init], depth)

    def table(self):
        """Per activation and BatchNorm: the fitted rate per layer (mean ± SE over repeats) beside
        √r(σ) (with BN) or mean-field √χ (without), and the deviation."""
        rows = []
        for (act, norm), _ in self.norms.items():
            rates = self.rates(act, norm)
            theory = gaussian.norm_rate(act) if norm else self.mean_field(act, self.depth).rate
            rows.append({"activation": act, "BatchNorm": norm is not None, "init": dict(FIGURE3_ACTIVATIONS)[act],
                         "rate / layer": rates.mean(), "± SE": rates.std(ddof=1) / math.sqrt(len(rates)),
                         "theory": theory, "theory is": "√r(σ), Eq. (1)" if norm else "√χ, mean field",
                         "deviation": rates.mean() / theory - 1})
        return pd.DataFrame(rows).set_index(["activation", "BatchNorm"])


def measure_figure3(S, gen: Generators, device) -> Figure3:
    """Figure 3: the plain network of Figure 1 with SELU, tanh and ReLU (:data:`FIGURE3_ACTIVATIONS`),
    each with and then without BatchNorm, ``S.repeats_fig3`` networks per curve from ``gen.weights``."""
    shape = dict(depth=S.depth, width=S.width, batch=S.batch, chunk=S.chunk, device=device, generator=gen.weights)
    return Figure3({(act, norm): repeated_gradient_norms(S.repeats_fig3, activation=act, norm=norm, init=init, **shape)
                    for act, init in FIGURE3_ACTIVATIONS for norm in ("batch", None)})


def figure3(fig3: Figure3) -> plt.Figure:
    """Figure 3 in raw norms: with BatchNorm (left) beside √r(σ)^(L−k), and without (right) beside
    mean-field theory, each line anchored at its curve's last layer."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), sharey=True, layout="constrained")
    ks = np.arange(1, fig3.depth + 1)
    colours = dict(zip((a for a, _ in FIGURE3_ACTIVATIONS), ("tab:blue", "tab:orange", "tab:green")))
    for ax, norm, title in zip(axes, ("batch", None), ("with BatchNorm", "without BatchNorm")):
        for act, _ in FIGURE3_ACTIVATIONS:
            mean = fig3.norms[act, norm].mean(0).numpy()
            ax.plot(ks, mean, label=act, color=colours[act], **plots.OURS)
            if norm:
                theory = gaussian.norm_rate(act) ** (fig3.depth - ks)
            else:
                theory = fig3.mean_field(act, fig3.depth).weight_gradient_norms()
            ax.plot(ks, mean[-1] * theory, **{**plots.THEORY, "color": colours[act], "linewidth": 1.5})
        ax.plot([], [], **{**plots.THEORY, "color": "0.3"},
                label="√r(σ)^(L−k), Eq. (1)" if norm else "mean-field theory")
        ax.set_yscale("log")
        _layer_axis(ax, fig3.depth)
        ax.set_title(title)
        ax.legend(loc="upper right")
    axes[0].set_ylabel(f"{_GRAD_NORM} (mean over networks)")
    return fig


def check_figure3(page, fig3: Figure3, eq1) -> None:
    """Rows of Appendix C: Eq. (1)'s quoted rates (and the transcribed formula), the rates with
    BatchNorm against √r(σ), their order, and the explosion without BatchNorm."""
    claims = page.claims
    claims.section("ghost2024-fig3", "Figure 3 and Equation (1): other activations, with and without BatchNorm")
    for act, quoted in QUOTED_RATES.items():
        claims.add(f"r({act}) = E[σ'²]/Var[σ] by quadrature", close(quoted, eq1.loc[act, "r = E[σ'²]/Var[σ]"],
                                                                   abs=5e-4),
                   source=f"{SOURCE}, App. C, Eq. (1)",
                   quote="The exponential rates are 1.072, 1.178, and 1.467 for SELU, Tanh, and ReLU")
    printed = eq1["as transcribed: E[σ']²/Var[σ]"]
    claims.add("Eq. (1) as transcribed, E[σ'(X)]²/Var[σ(X)], does not give the quoted rates",
               all_of({a: at_least(abs(printed[a] - q), 5e-4) for a, q in QUOTED_RATES.items()}),
               kind=ERRATUM, source=f"{SOURCE}, App. C, Eq. (1)",
               quote="r(σ) = E[σ'(X)]² / Var[σ(X)]",
               note="as transcribed (our copy is a machine transcription); with the square outside the "
                    "expectation ReLU gives " + f"{printed['relu']:.3f} < 1, a vanishing gradient; "
                    "with the square inside, the quoted numbers (and App. B's R_b = E[g'(x)²]) follow")
    for act, _ in FIGURE3_ACTIVATIONS:
        claims.add(f"{act} + BN: gradient norm grows by √r({act}) per layer (excess rate)",
                   _rate_check(fig3.rates(act, "batch"), gaussian.norm_rate(act)),
                   source=f"{SOURCE}, App. C, Eq. (1)",
                   quote="this exponential rate is predictable",
                   note="tanh and SELU sit systematically above √r at this width and batch; see the sweep below"
                   if act != "relu" else "")
    excess = {act: _excess(fig3.rates(act, "batch")) for act in ("selu", "tanh", "relu")}
    claims.add("with BN: excess rates ordered SELU < tanh < ReLU", ordered(excess), source=f"{SOURCE}, App. C",
               quote="SELU has the smallest exponential rate and ReLU has the largest exponential rate")
    for act, _ in FIGURE3_ACTIVATIONS:
        claims.add(f"{act} without BN: the gradient explodes (≥ {EXPLODES:.0%} per layer)",
                   at_least(_excess(fig3.rates(act, None)), EXPLODES), source=f"{SOURCE}, App. C, Fig. 3",
                   quote="they all have the exploding gradient problems regardless of … the existence of batch "
                         "normalization layers",
                   note="mean-field theory: He-initialized ReLU without BN is critical, χ = 1" if act == "relu"
                   else "mean-field theory predicts it: χ > 1 for this initialization")
    table = fig3.table()
    for act, _ in FIGURE3_ACTIVATIONS:
        for norm, key in ((True, "bn"), (False, "nobn")):
            page.glue(f"fig3_{act}_{key}", table.loc[(act, norm), "rate / layer"], ".4f")
            page.glue(f"fig3_{act}_{key}_theory", table.loc[(act, norm), "theory"], ".4f")
            page.glue(f"fig3_{act}_{key}_dev", table.loc[(act, norm), "deviation"], "+.2%")
    page.glue("eq1_relu_printed", float(printed["relu"]), ".3f")


# ---------------------------------------------------------------- finite width and batch
@dataclass(frozen=True)
class Deviation:
    """Per-repeat fitted rates with BatchNorm, ``rates[act, width, batch]``, over a width sweep
    (batch 128) and a batch sweep (``base_width``)."""

    widths: tuple
    batches: tuple
    base_width: int
    rates: dict

    def relative(self, act: str, width: int, batch: int) -> np.ndarray:
        """rate / √r(σ) − 1 per repeat."""
        return self.rates[act, width, batch] / gaussian.norm_rate(act) - 1

    def table(self):
        rows = [{"activation": a, "width d": w, "batch B": b, "rate / √r − 1": self.relative(a, w, b).mean(),
                 "± SE": self.relative(a, w, b).std(ddof=1) / math.sqrt(len(self.rates[a, w, b]))}
                for (a, w, b) in self.rates]
        return pd.DataFrame(rows).set_index(["activation", "width d", "batch B"])


def measure_deviation(S, gen: Generators, device) -> Deviation:
    """The BatchNorm rates of tanh, SELU and ReLU (their Figure 3 init) at widths ``S.sweep_widths``
    (batch 128) and batches ``S.sweep_batches`` (width ``S.width``), ``S.repeats_sweep`` networks
    per point from ``gen.weights``."""
    points = [(w, 128) for w in S.sweep_widths] + [(S.width, b) for b in S.sweep_batches if (S.width, b) not in
                                                   [(w, 128) for w in S.sweep_widths]]
    rates = {}
    for act, init in FIGURE3_ACTIVATIONS:
        for width, batch in points:
            chunk = max(1, S.chunk * 256 * 128 // (width * batch))
            norms = repeated_gradient_norms(S.repeats_sweep, S.depth, width, batch, activation=act, init=init,
                                            chunk=min(chunk, S.repeats_sweep), generator=gen.weights, device=device)
            rates[act, width, batch] = rates_per_repeat(norms)
    return Deviation(tuple(S.sweep_widths), tuple(S.sweep_batches), S.width, rates)


def figure_deviation(dev: Deviation) -> plt.Figure:
    """rate/√r(σ) − 1 (%) against width (left, batch 128) and batch (right, width ``base_width``),
    mean ± 2 standard errors over networks."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True, layout="constrained")
    for ax, axis in zip(axes, ("width", "batch")):
        for act, _ in FIGURE3_ACTIVATIONS:
            xs = dev.widths if axis == "width" else dev.batches
            keys = [(act, x, 128) if axis == "width" else (act, dev.base_width, x) for x in xs]
            vals = [100 * dev.relative(*k) for k in keys]
            mean = [v.mean() for v in vals]
            err = [2 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0 for v in vals]
            ax.errorbar(xs, mean, yerr=err, label=act, capsize=3, **plots.OURS)
        ax.axhline(0, **plots.REFERENCE)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs), [str(x) for x in xs])
        ax.set_xlabel("width d (batch 128)" if axis == "width" else f"batch B (width {dev.base_width})")
        ax.set_title(f"deviation from √r(σ) against {axis}")
    axes[0].set_ylabel("rate / √r(σ) − 1 (%)")
    axes[0].legend()
    return fig


def glue_deviation(page, dev: Deviation) -> None:
    """The sweep's numbers in the prose: the deviation at the smallest and largest width and batch."""
    w0, w1, b0, b1 = min(dev.widths), max(dev.widths), min(dev.batches), max(dev.batches)
    for act in ("tanh", "selu", "relu"):
        page.glue(f"dev_{act}_wmin", float(dev.relative(act, w0, 128).mean()), "+.2%")
        page.glue(f"dev_{act}_wmax", float(dev.relative(act, w1, 128).mean()), "+.2%")
        page.glue(f"dev_{act}_bmin", float(dev.relative(act, dev.base_width, b0).mean()), "+.2%")
        page.glue(f"dev_{act}_bmax", float(dev.relative(act, dev.base_width, b1).mean()), "+.2%")
    page.glue("dev_wmin", w0, "d")
    page.glue("dev_wmax", w1, "d")
    page.glue("dev_bmin", b0, "d")
    page.glue("dev_bmax", b1, "d")


# ---------------------------------------------------------------- Appendix B.1: single operators
def batchnorm_z(batch: int, features: int = 4096, sigma: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prop. B.8 measured on torch's BatchNorm (training mode, no affine) per feature, for x ~ N(0, σ²)
    and ∂ℓ/∂y ~ N(0, 1) of ``batch`` rows and ``features`` independent features: σ_x²·R_f and
    z = B(1 − σ_x²·R_b), σ_x² each feature's batch variance (the paper: σ_x²·R_f = 1,
    σ_x²·R_b = 1 − z/B with E z = 1, Var z ≈ 2). Two tensors of shape [features]."""
    int_at_least("batch", batch, 2)
    x = (sigma * torch.randn(batch, features, generator=generator, dtype=torch.float64)).requires_grad_(True)
    g = torch.randn(batch, features, generator=generator, dtype=torch.float64)
    y = F.batch_norm(x, None, None, training=True)
    (gx,) = torch.autograd.grad(y, x, g)
    var_x = x.detach().var(dim=0, unbiased=False)
    r_f = y.detach().var(dim=0, unbiased=False) / var_x
    r_b = gx.var(dim=0, unbiased=False) / g.var(dim=0, unbiased=False)
    return var_x * r_f, batch * (1 - var_x * r_b)


# operator -> its input's shape per sample, the module, and what the row measures
_OPERATOR_SETTINGS = {"linear": "W 512×256, He init", "relu": "x ~ N(0, 1)",
                      "maxpool2x2": "4 iid N(0, 1) per window", "avgpool2x2": "4 iid N(0, 1) per window"}


@dataclass(frozen=True)
class Operators:
    """Appendix B.1 measured: ``ratios[operator]`` = (R_f, R_b) samples, one per repeat (fresh
    input, output gradient and, for the linear map, weights), ``theory[operator]`` the paper's
    values (:func:`gradprobe.theory.operators.theory_ratios`; for the linear map from each repeat's
    weights, so ``ratios["linear"]`` holds measured/theory); ``bn[B]`` = (σ_x²R_f, z) per feature."""

    ratios: dict
    theory: dict
    bn: dict

    def table(self):
        """Theory beside the measurement (mean ± SE over repeats), one row per operator and batch size."""
        rows = []
        for op, (rf, rb) in self.ratios.items():
            tf, tb = self.theory[op]
            rows.append({"operator": op, "setting": _OPERATOR_SETTINGS[op], "R_f theory": tf,
                         "R_f measured": rf.mean(), "R_f ± SE": rf.std(ddof=1) / math.sqrt(len(rf)),
                         "R_b theory": tb, "R_b measured": rb.mean(),
                         "R_b ± SE": rb.std(ddof=1) / math.sqrt(len(rb)), "R_b/R_f": rb.mean() / rf.mean()})
        for b, (rf, z) in self.bn.items():
            rb = 1 - z / b
            rows.append({"operator": "batchnorm", "setting": f"B = {b}, per feature × σ_x²", "R_f theory": 1.0,
                         "R_f measured": float(rf.mean()), "R_f ± SE": float(rf.std() / math.sqrt(len(rf))),
                         "R_b theory": 1 - 1 / b, "R_b measured": float(rb.mean()),
                         "R_b ± SE": float(rb.std() / math.sqrt(len(rb))), "R_b/R_f": float(rb.mean() / rf.mean())})
        return pd.DataFrame(rows).set_index(["operator", "setting"])

    def z_table(self):
        """Prop. B.8's z per batch size: measured mean and variance beside the paper's 1 and 2 and
        the exact B/(B−1) and 2B²(B−2)/((B−1)²(B+1))."""
        rows = [{"B": b, "E z measured": float(z.mean()), "E z exact": batchnorm_z_moments(b)[0],
                 "Var z measured": float(z.var()), "Var z exact": batchnorm_z_moments(b)[1]}
                for b, (_, z) in self.bn.items()]
        return pd.DataFrame(rows).set_index("B")


def measure_operators(samples: int, repeats: int, batches=(8, 16, 32, 64, 128, 256, 512), features: int = 16384,
                      sigma: float = 2.0, generator: torch.Generator | None = None) -> Operators:
    """Single operators on standard Gaussian input (``samples`` rows) with a Gaussian output
    gradient, ``repeats`` times each (:func:`gradprobe.measure.stats.scaling_ratios`): a linear map
    W (512×256, He init, fresh each repeat; its ratios divided by ‖W‖²/D and ‖W‖²/d), ReLU on 64
    features, 2×2 max- and average pools on 16×8×8 maps (``samples``/16 images). BatchNorm per
    feature, as Prop. B.8 states it (:func:`batchnorm_z`), for each batch size of ``batches``."""
    positive_int("samples", samples)
    int_at_least("repeats", repeats, 2)
    ratios = {op: ([], []) for op in _OPERATOR_SETTINGS}
    n_img = max(2, samples // 16)
    for _ in range(repeats):
        weight = init_weights_(nn.Linear(256, 512, bias=False), "he", generator=generator).weight.detach()
        tf, tb = theory_ratios("linear", weight=weight)
        rf, rb = scaling_ratios(lambda t: t @ weight.T, torch.randn(samples, 256, generator=generator),
                                torch.randn(samples, 512, generator=generator))
        ratios["linear"][0].append(rf / tf)
        ratios["linear"][1].append(rb / tb)
        for op, module, shape, out in (("relu", torch.relu, (samples, 64), (samples, 64)),
                                       ("maxpool2x2", nn.MaxPool2d(2), (n_img, 16, 8, 8), (n_img, 16, 4, 4)),
                                       ("avgpool2x2", nn.AvgPool2d(2), (n_img, 16, 8, 8), (n_img, 16, 4, 4))):
            rf, rb = scaling_ratios(module, torch.randn(*shape, generator=generator),
                                    torch.randn(*out, generator=generator))
            ratios[op][0].append(rf)
            ratios[op][1].append(rb)
    theory = {"linear": (1.0, 1.0), **{op: theory_ratios(op) for op in ("relu", "maxpool2x2", "avgpool2x2")}}
    bn = {int(b): batchnorm_z(int(b), features, sigma, generator) for b in batches}
    return Operators({k: (np.array(v[0]), np.array(v[1])) for k, v in ratios.items()}, theory, bn)


def figure_b8(ops: Operators) -> plt.Figure:
    """Proposition B.8: σ_x²·R_b = 1 − z/B against B (mean ± 2 SE over features) beside the paper's
    E z = 1 and the exact E z = B/(B−1)."""
    bs = np.array(sorted(ops.bn))
    if len(bs) == 0:
        raise ValueError("the operators have no BatchNorm batch sizes")
    fig, ax = plt.subplots()
    mean = np.array([float((1 - ops.bn[b][1] / b).mean()) for b in bs])
    se = np.array([float((ops.bn[b][1] / b).std() / math.sqrt(len(ops.bn[b][1]))) for b in bs])
    ax.errorbar(bs, mean, yerr=2 * se, label="measured σ_x²·R_b (mean over features)", capsize=3, **plots.OURS)
    ax.plot(bs, 1 - 1 / bs, label="paper: 1 − E z/B with E z = 1", **plots.PAPER)
    ax.plot(bs, [1 - batchnorm_z_moments(int(b))[0] / b for b in bs], label="exact: E z = B/(B−1)", **plots.THEORY)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(bs), [str(b) for b in bs])
    ax.set_xlabel("batch size B")
    ax.set_ylabel("σ_x² · R_b(BatchNorm) (dimensionless)")
    ax.set_title("BatchNorm: backward ratio relative to forward, 1 − z/B")
    ax.legend()
    return fig


def check_operators(page, ops: Operators) -> None:
    """Rows of Appendix B.1: Prop. B.4 (linear), B.8 (BatchNorm), B.12 (ReLU) and Remark B.16
    (max-pool); machinery checks of z's exact moments and of the average pool's closed form."""
    claims = page.claims
    claims.section("ghost2024-operators", "Scaling ratios of single operators (App. B.1)")
    est = lambda v: Estimate.of(v, "repeats")
    lin_f, lin_b = ops.ratios["linear"]
    claims.add("linear: R_f = ‖W‖²/D and R_b = ‖W‖²/d (measured / formula)",
               all_of({"R_f": close(1.0, est(lin_f), rel=0.02), "R_b": close(1.0, est(lin_b), rel=0.02)}),
               source=f"{SOURCE}, Prop. B.4",
               quote="R_f(π_W) = ‖W‖²_F / D, R_b(π_W) = ‖W‖²_F / d")
    rf, rb = ops.ratios["relu"]
    claims.add("ReLU: R_f = ½(1 − 1/π)", close(ops.theory["relu"][0], est(rf), rel=0.02),
               source=f"{SOURCE}, Prop. B.12", quote="R_f(σ) = ½(1 − 1/π)")
    claims.add("ReLU: R_b = ½", close(0.5, est(rb), rel=0.02), source=f"{SOURCE}, Prop. B.12", quote="R_g(σ) = ½",
               note="the paper writes R_g for R_b")
    mf, mb = ops.ratios["maxpool2x2"]
    claims.add("max-pool 2×2: R_f = 0.492 (Var of the max of 4 iid N(0, 1), by quadrature)",
               close(0.492, gaussian.max_of_gaussians_variance(4), abs=5e-4), source=f"{SOURCE}, Remark B.16",
               quote="the forward scaling ratio is 0.492 by numerical simulation")
    claims.add("max-pool 2×2: R_b = ¼", close(0.25, est(mb), rel=0.02), source=f"{SOURCE}, Remark B.16",
               quote="the backward scaling ratio for the max pooling operation is ¼")
    claims.add("max-pool 2×2: R_b < R_f", at_least(est(mf - mb), 0.0), source=f"{SOURCE}, Remark B.16",
               quote="The backward scaling ratio is smaller than the forward scaling ratio")
    big = max(ops.bn)
    rf_bn, z = ops.bn[big]
    claims.add(f"BatchNorm (B = {big}): σ_x²·R_f = 1", close(1.0, Estimate.of(rf_bn, "features"), rel=1e-3),
               source=f"{SOURCE}, Prop. B.8", quote="R_f(B) = 1/σ² where σ² is the input batch variance",
               note="torch's BatchNorm with ε = 10⁻⁵: σ_x²·R_f = σ_x²/(σ_x² + ε)")
    claims.add(f"BatchNorm (B = {big}): z = B(1 − σ_x²·R_b) has E z = 1", close(1.0, Estimate.of(z, "features"),
                                                                               rel=0.05),
               source=f"{SOURCE}, Prop. B.8", quote="R_b(B) = (1/σ²)(1 − z/B) … E z = 1")
    zz = z.reshape(16, -1) if z.numel() % 16 == 0 else z.reshape(1, -1)
    claims.add(f"BatchNorm (B = {big}): Var z = 2", close(2.0, Estimate.of(zz.var(dim=1), "feature groups"),
                                                          rel=0.1),
               source=f"{SOURCE}, Prop. B.8", quote="Var[z] = 2", note="Var z ≈ 2 holds up to O(1/B)")
    small = min(ops.bn)
    exact = batchnorm_z_moments(small)[0]
    claims.add(f"z's exact mean B/(B−1) = {exact:.3f} at B = {small} (not 1)",
               close(exact, Estimate.of(ops.bn[small][1], "features"), abs=(exact - 1) / 2),
               kind=MACHINERY, source=f"{SOURCE}, Prop. B.8",
               note="z = Bρ̂², ρ̂ a sample correlation: E z = B/(B−1), the paper's 1 up to O(1/B); "
                    "tolerance: half the gap to 1")
    af, ab = ops.ratios["avgpool2x2"]
    claims.add("average pool 2×2: (R_f, R_b) = (¼, 1/16), Prop. B.4 with D = 1, d = 4",
               all_of({"R_f": close(0.25, est(af), rel=0.02), "R_b": close(0.0625, est(ab), rel=0.02)}),
               kind=MACHINERY, source=f"{SOURCE}, Prop. B.4",
               note="a linear downsampling also has R_b < R_f: R_b/R_f = ¼, below max-pool's")
    page.glue("maxpool_ratio", float(mb.mean() / mf.mean()), ".3f")
    page.glue("avgpool_ratio", float(ab.mean() / af.mean()), ".3f")
    page.glue("bn_big", big, "d")


# ---------------------------------------------------------------- Assumption B.6, Remark B.9, Corollary B.7
@dataclass(frozen=True)
class Independence:
    """``signals[act, norm, loss]``: the :class:`gradprobe.measure.repeats.Signals` of the plain
    network with ReLU or tanh, with BatchNorm or without, for the paper's output gradient
    (``"linear"``, independent of the input) and for ℓ = ½‖x^(L)‖² (``"square"``, fully
    correlated with the output)."""

    signals: dict
    batch: int


def measure_independence(S, gen: Generators, device) -> Independence:
    """:class:`Independence` of ``S.repeats_b6`` networks per curve (Figure 1's plain network;
    ReLU and tanh, both He init, with and without BatchNorm, both losses) from ``gen.weights``."""
    out = {}
    for act in ("relu", "tanh"):
        for norm in ("batch", None):
            for loss in ("linear", "square"):
                out[act, norm, loss] = repeated_signals(S.repeats_b6, S.depth, S.width, S.batch, activation=act,
                                                        norm=norm, loss=loss, chunk=S.chunk, generator=gen.weights,
                                                        device=device)
    return Independence(out, S.batch)


def figure_independence(ind: Independence) -> plt.Figure:
    """Per layer, for ℓ = ½‖x^(L)‖²: the correlation of a neuron with its derivative (left) and the
    squared batch mean of the derivative over its mean square (right, 1/B dotted), with and
    without BatchNorm."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    styles = {("relu", "batch"): "tab:blue", ("tanh", "batch"): "tab:orange", ("relu", None): "tab:green",
              ("tanh", None): "tab:red"}
    depth = next(iter(ind.signals.values())).correlation.shape[1]
    ks = np.arange(1, depth + 1)
    for (act, norm), colour in styles.items():
        sig = ind.signals[act, norm, "square"]
        label = f"{act}, {'BN' if norm else 'no BN'}"
        _band(axes[0], ks, sig.correlation.numpy(), label, color=colour, **plots.OURS)
        _band(axes[1], ks, sig.mean_square.numpy(), label, color=colour, **plots.OURS)
    axes[0].axhline(0, **plots.REFERENCE)
    axes[0].set_ylabel("corr(y, ∂ℓ/∂y) over the batch")
    axes[0].set_title("forward and backward signal of a neuron")
    axes[1].axhline(1 / ind.batch, label="1/B", **{**plots.REFERENCE, "linestyle": ":"})
    axes[1].set_yscale("log")
    axes[1].set_ylabel("(mean ∂ℓ/∂y)² / mean (∂ℓ/∂y)²")
    axes[1].set_title("mean of the derivative over the batch")
    for ax in axes:
        _layer_axis(ax, depth)
    axes[0].legend(loc="upper left")
    axes[1].legend(handles=axes[1].get_lines()[-1:], loc="center left")
    return fig


def check_independence(page, ind: Independence) -> None:
    """Rows of Assumption B.6 (as the derivation uses it), Remark B.9 and Corollary B.7."""
    claims = page.claims
    claims.section("ghost2024-independence", "Assumption B.6, Remark B.9 and Corollary B.7, measured")
    lin = ind.signals["relu", "batch", "linear"]
    factor = lin.independence[:, :-1].mean(dim=1).numpy()
    claims.add("B.6 as used: E[(∂ℓ/∂y)²g'(x)²] = E[(∂ℓ/∂y)²]·E[g'(x)²] (ReLU + BN, every layer)",
               close(1.0, Estimate.of(factor, "networks"), abs=0.01), source=f"{SOURCE}, Assumption B.6",
               quote="the forward signal x and the backward signal ∂ℓ/∂x are independent")
    ratios = {}
    for act in ("relu", "tanh"):
        corr = ind.signals[act, None, "square"].correlation
        half = corr.shape[1] // 2
        ratios[act] = (corr[:, :half].mean(dim=1) / corr[:, -1]).numpy()
        claims.add(f"{act} without BN, ℓ = ½‖x⁽ᴸ⁾‖²: lower half's correlation ≤ ⅒ of the top's",
                   at_most(Estimate.of(ratios[act], "networks"), 0.1), source=f"{SOURCE}, Remark B.9",
                   quote="non-linearity will reduce the correlation greatly between a neuron and its derivative",
                   note="without BN, so that only the nonlinearity can decorrelate; with BN the correlation "
                        "vanishes one layer below the top, removed by BN's backward pass")
    sq = ind.signals["relu", "batch", "square"]
    below = sq.mean_square[:, :-1].mean(dim=1).numpy()
    claims.add("Cor. B.7: derivative has zero batch mean below the last BN (ℓ = ½‖x⁽ᴸ⁾‖², ReLU)",
               at_most(Estimate.of(below, "networks"), 1 / ind.batch), source=f"{SOURCE}, Corollary B.7",
               quote="any neuron before the last BatchNorm layer in a network has zero expectation derivative",
               note="criterion: (batch mean)² / mean square ≤ 1/B, the size of a zero-mean sample's mean")
    page.glue("b6_factor", float(factor.mean()), ".4f")
    page.glue("b9_top_relu", float(ind.signals["relu", None, "square"].correlation[:, -1].mean()), ".2f")
    page.glue("b9_ratio_relu", float(ratios["relu"].mean()), ".2f")
    page.glue("b9_ratio_tanh", abs(float(ratios["tanh"].mean())), ".0e")
    page.glue("b9_bn_below", float(sq.correlation[:, -2].abs().mean()), ".1e")
    page.glue("b7_top", float(sq.mean_square[:, -1].mean()), ".2f")
    page.glue("b7_below", float(below.mean()), ".4f")
    page.glue("b7_nobn", float(ind.signals["relu", None, "square"].mean_square[:, :-1].mean()), ".2f")


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
              n: int = 1_000_000, generator: torch.Generator | None = None):
    """Proposition B.12 measured: Var[g(x)] (= R_f) and E[g'(x)²] (= R_b) for unit-variance x of each
    distribution and each activation (n samples), and R_b/R_f (a DataFrame). The proposition is
    stated for Gaussian x; the other rows show what happens without that assumption."""
    rows = []
    for dist in distributions:
        for act in activations:
            var, back = activation_moments(act, dist, n, generator)
            rows.append({"input": dist, "activation": act, "Var[g(x)]": var, "E[g'(x)²]": back, "R_b/R_f": back / var})
    return pd.DataFrame(rows)


def b14_table(n: int = 1_000_000, generator: torch.Generator | None = None):
    """Proposition B.14 for ReLU on Gaussian, Laplace and uniform unit-variance inputs: measured
    Var[σ(x)] and E[σ'(x)²], the exact Var = ½ − (E|x|)²/4 and the bound ½ − (E|x|)²/8 (DataFrame)."""
    rows = []
    for dist in DISTRIBUTIONS:
        out = relu_b14(dist, n, generator)
        rows.append({"input": dist, "E|x|": mean_abs(dist), "Var[σ(x)] measured": out["var"],
                     "Var[σ(x)] exact": out["exact_var"], "bound E[σ'²] − (E|x|)²/8": out["bound"],
                     "E[σ'(x)²] measured": out["backward"]})
    return pd.DataFrame(rows)


def b14_samples(n: int, repeats: int, generator: torch.Generator | None = None) -> dict:
    """Var[σ(x)] of ReLU on unit-variance Gaussian, Laplace and uniform x, sampled ``repeats``
    times from ``n`` draws each ({distribution: array})."""
    int_at_least("repeats", repeats, 2)
    return {d: np.array([activation_moments("relu", d, n, generator)[0] for _ in range(repeats)])
            for d in DISTRIBUTIONS}


def check_b12_b14(page, b14: dict) -> None:
    """Rows of Prop. B.12 (by quadrature) and B.14 (Var[σ(x)] sampled, :func:`b14_samples`)."""
    claims = page.claims
    claims.section("ghost2024-b12", "Propositions B.12 and B.14")
    nonlinear = ("relu", "tanh", "selu", "gelu")
    claims.add("B.12: Var[g(x)] < E[g'(x)²] for nonlinear g on Gaussian x (quadrature)",
               all_of({a: at_least(gaussian.backward_ratio(a) - gaussian.forward_ratio(a), 0.0) for a in nonlinear}),
               source=f"{SOURCE}, Prop. B.12",
               quote="Var[g(x)]/Var[x] ≤ E[g'(x)²]. The equality holds if and only if g(x) = ax + b")
    claims.add("B.14: Var[σ(x)] ≤ E[σ'²] − (E|x|)²/8 for ReLU on Gaussian, Laplace, uniform (sampled)",
               all_of({d: at_most(Estimate.of(v, "repeats"), 0.5 - mean_abs(d) ** 2 / 8) for d, v in b14.items()}),
               source=f"{SOURCE}, Prop. B.14",
               quote="Under Assumption B.13 and Var[x] = 1, Var[σ(x)] ≤ E[σ'(x)²] − ⅛[E(|x|)]²")


# ---------------------------------------------------------------- Proposition B.17
def b17_closed_form(blocks: int, rate: float = gaussian.RELU_RATE) -> tuple[float, float]:
    """What Proposition B.17 predicts for the whole network of L = ``blocks`` blocks
    y = x + F(x)/√L with F = BN∘W∘ReLU∘BN∘W (He init) on unit-variance input: the branch outputs
    variance 1 whatever it is fed, so the stream's variance after k blocks is 1 + k/L and
    R_f = 2; the branch's R_b is r/(1 + k/L) at block k + 1, so R_b = Π_{k<L} (1 + r/(L + k)),
    which tends to 2^r (R_b/R_f → 2^(r−1) ≈ 1.38 for ReLU). Returns (R_f, R_b)."""
    positive_int("blocks", blocks)
    return 2.0, float(np.prod([1 + rate / (blocks + k) for k in range(blocks)]))


def block_ratios(block: ScaledResidualBlock, x: torch.Tensor, grad_y: torch.Tensor) -> dict:
    """Proposition B.17 on one block y = x + F(x)/√L: the measured (R_f, R_b) of the block and of
    its branch F on the same x and ∂ℓ/∂y, and the proposition's prediction 1 + R(F)/L
    (L = 1/scale²; it assumes x and F(x), and the two backward paths, uncorrelated)."""
    if not isinstance(block, ScaledResidualBlock):
        raise ValueError(f"block_ratios needs a ScaledResidualBlock, got {type(block).__name__}")
    blocks = 1 / block.scale ** 2
    whole = scaling_ratios(block, x, grad_y)
    branch = scaling_ratios(block.branch, x, grad_y)
    return {"block": whole, "branch": branch, "predicted": (1 + branch[0] / blocks, 1 + branch[1] / blocks)}


@dataclass(frozen=True)
class B17:
    """Per L (``blocks``): whole-network (R_f, R_b) samples of the 1/√L residual network and of a
    plain BatchNorm network of 2L layers (one per fresh network), and the first block's measured
    (R_f, R_b) over its prediction 1 + R(F)/L."""

    blocks: tuple
    resnet: dict
    plain: dict
    block: dict

    def table(self):
        rows = []
        for L in self.blocks:
            rf, rb = self.resnet[L]
            prf, prb = self.plain[L]
            cf, cb = b17_closed_form(L)
            rows.append({"L blocks": L, "layers": 2 * L, "resnet R_f": rf.mean(), "closed form R_f": cf,
                         "resnet R_b/R_f": (rb / rf).mean(), "closed form R_b/R_f": cb / cf,
                         "plain R_b/R_f": (prb / prf).mean(),
                         "block R_f / (1 + R_f(F)/L)": self.block[L][0].mean(),
                         "block R_b / (1 + R_b(F)/L)": self.block[L][1].mean()})
        return pd.DataFrame(rows).set_index("L blocks")


def measure_b17(blocks=(4, 8, 16, 32, 64), width: int = 128, repeats: int = 8, batch: int = 128,
                generator: torch.Generator | None = None) -> B17:
    """Proposition B.17 across depth: for each L of ``blocks``, ``repeats`` fresh 1/√L residual
    networks (:func:`gradprobe.networks.mlp.scaled_residual_net`) and plain BatchNorm networks of
    2L layers (:func:`gradprobe.networks.mlp.mlp`), each measured as a whole on one batch x ~ N(0, I)
    with output gradient N(0, I/d) (its weights fixed, Remark B.2), and the first block of each
    residual network against 1 + R(F)/L (:func:`block_ratios`)."""
    positive_int("repeats", repeats)
    resnet, plain, block = {}, {}, {}
    for L in blocks:
        positive_int("blocks", L)
        r, p, b = [], [], []
        for _ in range(repeats):
            res = scaled_residual_net(L, width, "relu", generator)
            pln = mlp(2 * L, width, "relu", norm="batch", generator=generator)
            x = torch.randn(batch, width, generator=generator)
            g = torch.randn(batch, width, generator=generator) / math.sqrt(width)
            r.append(scaling_ratios(res, x, g))
            p.append(scaling_ratios(pln, x, g))
            out = block_ratios(res[0], x, g)
            b.append((out["block"][0] / out["predicted"][0], out["block"][1] / out["predicted"][1]))
        resnet[L], plain[L], block[L] = (tuple(np.array(v) for v in zip(*vals)) for vals in (r, p, b))
    return B17(tuple(blocks), resnet, plain, block)


def figure_b17(b17: B17) -> plt.Figure:
    """Proposition B.17: the plain network's R_b/R_f against depth (left, log axis, with r^layers)
    and the 1/√L residual network's R_f and R_b/R_f (right, linear axis) beside the closed form."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    layers = np.array([2 * L for L in b17.blocks])
    plain = np.stack([b17.plain[L][1] / b17.plain[L][0] for L in b17.blocks], axis=1)
    _band(axes[0], layers, plain, "plain network, measured", **plots.OURS)
    first = plain.mean(0)[0]
    axes[0].plot(layers, first * gaussian.RELU_RATE ** (layers - layers[0]), label="∝ r^layers, r = π/(π−1)",
                 **plots.THEORY)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("whole-network R_b / R_f")
    axes[0].set_title("plain BatchNorm network (2L layers)")
    rf = np.stack([b17.resnet[L][0] for L in b17.blocks], axis=1)
    ratio = np.stack([b17.resnet[L][1] / b17.resnet[L][0] for L in b17.blocks], axis=1)
    _band(axes[1], layers, rf, "R_f, measured", **plots.OURS)
    _band(axes[1], layers, ratio, "R_b / R_f, measured", **{**plots.OURS, "marker": "s"})
    closed = [b17_closed_form(L) for L in b17.blocks]
    axes[1].plot(layers, [c[0] for c in closed], label="closed form: R_f = 2", **plots.THEORY)
    axes[1].plot(layers, [c[1] / c[0] for c in closed], label="closed form R_b/R_f", **{**plots.THEORY,
                                                                                         "color": "tab:purple"})
    axes[1].axhline(2 ** (gaussian.RELU_RATE - 1), label="limit 2^(r−1)", **plots.REFERENCE)
    axes[1].set_ylim(1.0, 2.3)
    axes[1].set_title("L blocks x + F(x)/√L")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(layers), [str(v) for v in layers])
        ax.set_xlabel("weight layers 2L")
        ax.legend(loc="upper left" if ax is axes[0] else "center right")
    return fig


def check_b17(page, b17: B17) -> None:
    """Rows of Proposition B.17 (per block, and whole network against the closed form) and of
    Corollary B.15 (the plain network's R_b/R_f grows by r per layer)."""
    claims = page.claims
    claims.section("ghost2024-b17", "Proposition B.17: residual blocks scaled by 1/√L")
    est = lambda v: Estimate.of(v, "networks")
    claims.add("B.17, one block: R_f = 1 + R_f(F)/L and R_b = 1 + R_b(F)/L (measured / formula, every L)",
               all_of({f"L = {L}": all_of({"R_f": close(1.0, est(b17.block[L][0]), rel=0.05),
                                          "R_b": close(1.0, est(b17.block[L][1]), rel=0.05)}) for L in b17.blocks}),
               source=f"{SOURCE}, Prop. B.17",
               quote="R_f(R) = 1 + (1/L) R_f(F), R_b(R) = 1 + (1/L) R_b(F)")
    checks = {}
    for L in b17.blocks:
        cf, cb = b17_closed_form(L)
        rf, rb = b17.resnet[L]
        checks[f"L = {L}"] = all_of({"R_f": close(cf, est(rf), rel=0.05), "R_b/R_f": close(cb / cf, est(rb / rf),
                                                                                            rel=0.05)})
    claims.add("B.17, whole network: R_f = 2, R_b/R_f = Π(1 + r/(L+k))/2 → 2^(r−1)", all_of(checks),
               source=f"{SOURCE}, Prop. B.17",
               quote="the two ratios are both O((1 + 1/L)^L) order which is independent with the network depth",
               note="the closed form follows from the proposition: the stream's variance after k blocks is 1 + k/L")
    L1, L2 = b17.blocks[-2], b17.blocks[-1]
    slope = (np.log(b17.plain[L2][1] / b17.plain[L2][0]) - np.log(b17.plain[L1][1] / b17.plain[L1][0])) \
        / (2 * L2 - 2 * L1)
    claims.add(f"Cor. B.15: plain network's R_b/R_f grows by r = π/(π−1) per layer ({2 * L1} → {2 * L2} layers)",
               close(gaussian.RELU_RATE - 1, Estimate.of(np.exp(slope) - 1, "networks"), rel=RATE_TOLERANCE),
               source=f"{SOURCE}, Cor. B.15", quote="R_b(π)/R_f(π) = Ω(c^L)",
               note="c = R_b(ReLU)/R_f(ReLU) = π/(π−1) per activation layer; excess rate compared")
    limit = 2 ** (gaussian.RELU_RATE - 1)
    deepest = b17.blocks[-1]
    page.glue("b17_limit", limit, ".3f")
    page.glue("b17_deepest", 2 * deepest, "d")
    page.glue("b17_measured", float((b17.resnet[deepest][1] / b17.resnet[deepest][0]).mean()), ".3f")
    page.glue("b17_closed", b17_closed_form(deepest)[1] / 2, ".3f")
    page.glue("b17_rf", float(b17.resnet[deepest][0].mean()), ".3f")
    page.glue("b17_plain", float((b17.plain[deepest][1] / b17.plain[deepest][0]).mean()), ".2g")


# ---------------------------------------------------------------- Figure 1 (right): Appendix A
CHECKPOINT = "vgg19_bn-c79401a0.pth"  # torchvision's ImageNet VGG19-BN, looked for in $GRADPROBE_DATA


@dataclass(frozen=True)
class TrainConfig:
    """One training run of Figure 1 (right): a VGG19-layout BatchNorm network with channels divided
    by ``divisor``, trained on ``train_images`` CIFAR-10 images at ``image_size`` pixels for
    ``steps`` SGD steps (batch ``batch``, learning rate ``lr``, momentum 0.9, weight decay 5·10⁻⁴)
    on ``device``; ``seed`` names the run (its generators come from the whole configuration)."""

    seed: int
    divisor: int = 8
    image_size: int = 32
    train_images: int = 10000
    steps: int = 600
    batch: int = 64
    lr: float = 0.05
    calib_images: int = 1024
    test_images: int = 1000
    device: str = "cpu"


def _vgg_cfg(divisor: int) -> list:
    return [c if c == "M" else c // divisor for c in vgg.CONFIGS["vgg19"]]


def _profile(net) -> dict:
    """σ per BatchNorm layer, ‖W_k‖_F per conv, and the mean γ and β per BatchNorm layer."""
    norms = net.norms()
    return {"sigma": batchnorm.bn_running_std(net).double(),
            "weight": torch.stack([c.weight.detach().double().norm() for c in net.convs()]).cpu(),
            "gamma": torch.stack([m.weight.detach().double().mean() for m in norms]).cpu(),
            "beta": torch.stack([m.bias.detach().double().mean() for m in norms]).cpu()}


def train_vgg(config: TrainConfig) -> dict:
    """One trial of :func:`measure_figure1_right` (a :mod:`gradprobe.sweep` trial, seeded from its
    configuration): draws the images, builds the network, records its profile (:func:`_profile`)
    at initialization (running statistics from ``calib_images`` training images), trains it, records
    the profile again, the test accuracy and whether the loss diverged. Also the σ profile of the
    same layout with 2×2 average pools at initialization (the linear contrast of Remark B.16)."""
    gens = sweep.seed_trial(config)
    data = tensors.cifar10_tensors(config.train_images, config.test_images, config.device, gens.data)
    if config.image_size != 32:
        data = tensors.CifarTensors(*(F.adaptive_avg_pool2d(t, config.image_size) if t.dim() == 4 else t
                                      for t in data))
    net = vgg.vgg(_vgg_cfg(config.divisor), norm="batch", generator=gens.weights).to(config.device)
    avg = vgg.vgg(_vgg_cfg(config.divisor), norm="batch", pool="avg", generator=gens.weights).to(config.device)
    calib = data.train_x[:config.calib_images]
    batchnorm.calibrate_running_stats(avg, calib)
    batchnorm.calibrate_running_stats(net, calib)
    init = _profile(net)
    opt = make_optimizer("sgd", net.parameters(), config.lr, momentum=0.9, weight_decay=5e-4)
    hist = loop.fit(net, data.train_x, data.train_y, steps=config.steps, batch_size=config.batch, optimizer=opt,
                    generator=gens.data)
    trained = _profile(net)
    return {"init": init, "trained": trained, "sigma_avg_init": batchnorm.bn_running_std(avg).double(),
            "accuracy": loop.evaluate(net, data.test_x, data.test_y)[1], "diverged": hist.diverged,
            "pools": vgg.pool_positions(net)}


@dataclass
class TrainedBN:
    """Figure 1 (right): per seed (rows), per BatchNorm layer or conv (columns, input to output):
    ``init[name]`` and ``trained[name]`` for name in sigma, weight, gamma, beta (:func:`_profile`);
    ``sigma_avg_init`` the average-pool layout at initialization; ``accuracy`` and ``diverged`` per
    seed; the pool positions among the BN layers; ``steps``; and, when torchvision's ImageNet
    checkpoint was loaded, its profile (``checkpoint``) and that of the same layout at
    initialization (``checkpoint_init``)."""

    init: dict
    trained: dict
    sigma_avg_init: torch.Tensor
    accuracy: np.ndarray
    diverged: np.ndarray
    pools: list
    steps: int
    checkpoint: dict | None = None
    checkpoint_init: dict | None = None

    @property
    def seeds(self) -> int:
        return len(self.accuracy)

    def change(self, name: str = "sigma") -> torch.Tensor:
        """trained / initial per seed and layer."""
        return self.trained[name] / self.init[name]

    def growth(self, values: torch.Tensor) -> np.ndarray:
        """The fitted growth per layer toward the input of each row of ``values``."""
        return np.array([fit_rate(row, reverse=True).rate for row in values])

    def pool_jumps(self, sigma: torch.Tensor) -> np.ndarray:
        """log(σ[p] / σ[p − 1]) at every pool p (the first BN after it), per row: > 0 where σ drops
        when read from the output toward the input, as Remark B.16 describes."""
        return np.stack([np.log((sigma[:, p] / sigma[:, p - 1]).numpy()) for p in self.pools if p > 0], axis=1)


def measure_figure1_right(S, seed: int = 0, imagenet: bool = False, device="cpu") -> TrainedBN:
    """``S.seeds`` runs of :func:`train_vgg` on ``device`` through :func:`gradprobe.sweep.run`
    (stored, resumable; ``$GRADPROBE_SCHEDULER`` may spread them), seeds ``100·seed + i``. With
    ``imagenet`` and the file :data:`CHECKPOINT` in ``$GRADPROBE_DATA``, also the profile of torchvision's ImageNet
    VGG19-BN and that of the same layout at initialization, its running statistics set by
    CIFAR-10 images resized to 224 pixels."""
    for name in ("seeds", "train_steps", "train_batch", "calib_images", "vgg_divisor", "train_images"):
        positive_int(name, getattr(S, name))
    if S.image_size not in (16, 32):
        raise ValueError(f"image_size must be 16 or 32 (VGG19's five max-pools), got {S.image_size!r}")
    configs = [TrainConfig(100 * seed + i, S.vgg_divisor, S.image_size, S.train_images, S.train_steps,
                           S.train_batch, S.lr, S.calib_images, S.test_images, str(device))
               for i in range(S.seeds)]
    done = sweep.run(train_vgg, configs, desc="Figure 1 (right)")
    done.raise_failures()
    runs = [done.results[c] for c in configs]
    stack = lambda part, name: torch.stack([r[part][name] for r in runs])
    names = ("sigma", "weight", "gamma", "beta")
    out = TrainedBN({n: stack("init", n) for n in names}, {n: stack("trained", n) for n in names},
                    torch.stack([r["sigma_avg_init"] for r in runs]), np.array([r["accuracy"] for r in runs]),
                    np.array([r["diverged"] for r in runs]), list(runs[0]["pools"]), S.train_steps)
    path = Path(os.environ.get("GRADPROBE_DATA", "data")) / CHECKPOINT
    if imagenet and path.is_file():
        out.checkpoint = _profile(vgg.load_checkpoint(path))
        fresh = vgg.vgg("vgg19", norm="batch", head="imagenet", num_classes=1000,
                        generator=torch.Generator().manual_seed(seed)).to(device)
        images = tensors.cifar10_tensors(S.calib_images, 1, device, torch.Generator().manual_seed(seed)).train_x
        batchnorm.calibrate_running_stats(fresh, F.interpolate(images, size=224, mode="bilinear"), batch_size=32)
        out.checkpoint_init = _profile(fresh)
    return out


def _mark_pools(ax, pools) -> None:
    for p in pools:
        ax.axvline(p + 0.5, color="0.6", linewidth=1)
    ax.plot([], [], color="0.6", linewidth=1, label="pool")


def figure1_right(trained: TrainedBN) -> plt.Figure:
    """Figure 1 (right): σ per BatchNorm layer after training and at initialization (mean over
    seeds, ±2 SE), the pools marked, and the average-pool layout at initialization; with the
    checkpoint, its σ and that of the same layout at initialization (right panel)."""
    panels = 2 if trained.checkpoint is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels + 1, 4.6), squeeze=False, layout="constrained")
    ax = axes[0, 0]
    n = trained.init["sigma"].shape[1]
    ks = np.arange(1, n + 1)
    _band(ax, ks, trained.trained["sigma"].numpy(), f"trained ({trained.steps} steps)", **plots.OURS)
    _band(ax, ks, trained.init["sigma"].numpy(), "at initialization", **{**plots.OURS, "marker": "s",
                                                                          "linestyle": "--"})
    _band(ax, ks, trained.sigma_avg_init.numpy(), "at initialization, 2×2 average pools",
          **{**plots.OURS, "marker": "^", "linestyle": ":"})
    _mark_pools(ax, trained.pools)
    ax.set_yscale("log")
    ax.set_ylabel("σ = √(mean running variance)")
    ax.set_title(f"VGG19 layout on CIFAR-10, {trained.seeds} seeds")
    _layer_axis(ax, n, label="BatchNorm layer (input → output)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    if trained.checkpoint is not None:
        ax = axes[0, 1]
        ax.plot(ks, trained.checkpoint["sigma"].numpy(), label="torchvision's ImageNet checkpoint", **plots.OURS)
        ax.plot(ks, trained.checkpoint_init["sigma"].numpy(), label="same layout at initialization",
                **{**plots.OURS, "marker": "s", "linestyle": "--"})
        _mark_pools(ax, trained.pools)
        ax.set_yscale("log")
        ax.set_title("VGG19-BN, ImageNet")
        _layer_axis(ax, n, label="BatchNorm layer (input → output)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return fig


def figure1_right_change(trained: TrainedBN) -> plt.Figure:
    """What training changed, per layer (mean over seeds, ±2 SE): σ_trained/σ_init beside
    ‖W_k‖_trained/‖W_k‖_init (left), and the mean BatchNorm γ and β after training (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    n = trained.init["sigma"].shape[1]
    ks = np.arange(1, n + 1)
    _band(axes[0], ks, trained.change("sigma").numpy(), "σ trained / initial", **plots.OURS)
    _band(axes[0], ks, trained.change("weight").numpy(), "‖W_k‖ trained / initial", **{**plots.OURS, "marker": "s"})
    axes[0].axhline(1, **plots.REFERENCE)
    _mark_pools(axes[0], trained.pools)
    axes[0].set_ylabel("trained / at initialization")
    axes[0].set_title("what training changed")
    _band(axes[1], ks, trained.trained["gamma"].numpy(), "mean γ (initially 1)", **plots.OURS)
    _band(axes[1], ks, trained.trained["beta"].numpy(), "mean β (initially 0)", **{**plots.OURS, "marker": "s"})
    axes[1].axhline(0, **plots.REFERENCE)
    axes[1].set_ylabel("BatchNorm affine parameter")
    axes[1].set_title("BatchNorm γ and β after training")
    for ax in axes:
        _layer_axis(ax, n, label="BatchNorm layer / conv k (input → output)")
    axes[0].legend(loc="upper center")
    axes[1].legend(loc="center right")
    return fig


def check_figure1_right(page, trained: TrainedBN) -> None:
    """Rows of Appendix A and Remark B.16 on the trained networks (decided over seeds; a row needs
    book scale, where the networks are trained for hundreds of steps)."""
    claims = page.claims
    claims.section("ghost2024-fig1-right", "Figure 1 (right): running variance of a trained plain network")
    over = lambda v: Estimate.of(v, "seeds")
    change = trained.growth(trained.change("sigma"))
    claims.add("training makes σ grow toward the input (growth of σ_trained/σ_init per BN layer)",
               at_least(over(change - 1), 0.0), source=f"{SOURCE}, App. A",
               quote="the metric grows exponentially as back propagation goes from deep layers to shallow layers",
               note="CIFAR-10, channels / 8, a few epochs: not the paper's ImageNet checkpoint", needs="book")
    weights = trained.growth(trained.change("weight"))
    claims.add("training changes shallow weights more (growth of ‖W_k‖_trained/‖W_k‖_init per conv)",
               at_least(over(weights - 1), 0.0), source=f"{SOURCE}, App. A",
               quote="making larger updates to the weights in shallow layers", needs="book")
    jumps = trained.pool_jumps(trained.trained["sigma"]).min(axis=1)
    claims.add("σ drops at every max-pool, read from output to input (trained)", at_least(over(jumps), 0.0),
               source=f"{SOURCE}, Remark B.16",
               quote="the running variance decreases every time passing a downsample (max-pooling) layer",
               note="smallest log(σ after pool / σ before) over the pools; at initialization: see the text",
               needs="book")
    if trained.checkpoint is not None:
        ck = fit_rate(trained.checkpoint["sigma"] / trained.checkpoint_init["sigma"], reverse=True).rate
        claims.add("ImageNet checkpoint: σ / σ at initialization grows toward the input",
                   at_least(Estimate.single(ck - 1, "checkpoint"), 0.0), source=f"{SOURCE}, App. A",
                   quote="we check the final model of VGG19 (with BatchNorm) trained on ImageNet",
                   note="one checkpoint: a single run decides nothing; its initial σ from CIFAR-10 images at 224 px")
    glue = lambda name, v, fmt: page.glue(name, float(v), fmt)
    glue("fig1r_change_growth", change.mean(), ".4f")
    glue("fig1r_weight_growth", weights.mean(), ".4f")
    glue("fig1r_init_growth", trained.growth(trained.init["sigma"]).mean(), ".4f")
    glue("fig1r_trained_growth", trained.growth(trained.trained["sigma"]).mean(), ".4f")
    glue("fig1r_accuracy", trained.accuracy.mean(), ".2f")
    glue("fig1r_init_jump", trained.pool_jumps(trained.init["sigma"]).min(axis=1).mean(), "+.3f")
    glue("fig1r_avg_jump", trained.pool_jumps(trained.sigma_avg_init).max(axis=1).mean(), "+.3f")
    glue("fig1r_trained_jump", jumps.mean(), "+.3f")
    change_layers = trained.change("sigma").mean(0)
    glue("fig1r_change_shallow", change_layers[: len(change_layers) // 2].mean(), ".2f")
    glue("fig1r_change_deep", change_layers[len(change_layers) // 2:].mean(), ".2f")
    page.glue("fig1r_steps", trained.steps, "d")
    page.glue("fig1r_seeds", trained.seeds, "d")
