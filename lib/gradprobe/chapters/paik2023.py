"""Chapter *Disharmony between ReLU and BN* (Paik & Choi 2023): the drivers, figures and claims of
notebook ``04_paik2023``, in the order of its sections.

1. The theory: :func:`relu_moments`; :func:`measure_forward_backward` and
   :func:`figure_forward_backward`; :func:`mlp_rates` and :func:`measure_activation_rates`;
   :func:`measure_width_ratios`.
2. Figure 1(a), the rate across architectures: :func:`figure1a_config`, :func:`figure1_images`,
   :func:`figure1a_networks`, :func:`measure_figure1a`, :func:`figure1a_table`, :func:`figure1a`.
3. Figure 1(b), eight activations in a 51-layer VGG-like network: :func:`figure1b_config`,
   :func:`figure1b_layers`, :func:`measure_figure1b`, :func:`figure1b_table`, :func:`figure1b`.
4. Alleviation during training: :func:`measure_alleviation`, :func:`alleviation_summary`,
   :func:`figure_alleviation`.
5. LALC: training trials that compare layer-wise learning-rate rules on CIFAR-10 in parallel
   processes (:class:`Trial`, :func:`run_trials`; one thread each, so that results do not depend
   on the number of processes), :func:`lalc_small_batch` with :func:`figure_lalc_small_batch`,
   :func:`lalc_large_batch` with :func:`figure_lalc_large_batch`.
6. One rate, three measurements: :func:`measure_three_ways`.

Paper vs this book: :func:`check_claims`. The notes of the notebook's settings table:
:data:`SETTINGS_NOTES`.

Drivers take the notebook's settings ``S`` (:func:`gradprobe.book.scales.settings`), its random
streams ``gen`` (:func:`gradprobe.seed`) and ``device``; they consume the streams in the order the
notebook calls them, so a chapter run is reproduced exactly by calling them in that order. Figure
functions return the matplotlib Figure (the notebook saves it with
:func:`gradprobe.book.plots.savefig`).
"""
from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
from dataclasses import dataclass, field
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..book import plots
from ..book.claims import Claims
from ..book.scales import Settings
from ..checks import int_at_least, nonnegative_int, one_of, positive, positive_int
from ..data.tensors import CifarTensors, cifar10_tensors
from ..measure import hooks, rates
from ..measure.gsc import gsc_profile
from ..measure.stats import network_ratios
from ..networks import resnet, vgg, vit
from ..networks.layers import ACTIVATIONS, Layer
from ..networks.mlp import mlp
from ..runtime import Generators, device as pick_device, progress, seed as seed_all
from ..theory import gaussian
from ..train.loop import History, evaluate, fit
from ..train.optim import OPTIMIZERS, make_optimizer
from ..train.schedules import linear_warmup

__all__ = ["SETTINGS_NOTES", "relu_moments", "ForwardBackward", "measure_forward_backward",
           "figure_forward_backward", "mlp_rates", "measure_activation_rates", "WidthRatios",
           "measure_width_ratios", "figure1a_config", "figure1_images", "figure1a_networks",
           "measure_figure1a", "figure1a_table", "figure1a", "FIGURE1B_ACTIVATIONS", "figure1b_config",
           "figure1b_layers", "measure_figure1b", "figure1b_table", "figure1b", "AlleviationRun",
           "measure_alleviation", "alleviation_summary", "figure_alleviation", "Trial", "TrialResult",
           "run_trial", "run_trials", "Comparison", "lalc_small_batch", "figure_lalc_small_batch",
           "lalc_large_batch", "figure_lalc_large_batch", "measure_three_ways", "check_claims"]


# What some of the notebook's settings mean, shown beside their values in its settings table
# (:func:`gradprobe.book.scales.settings`, ``notes=``); [recon]: our choice, not the paper's.
SETTINGS_NOTES = {
    "depth": "MLP for the theory checks; He init, BN or LN, linear head",
    "arch_vgg": "Fig. 1(a): torchvision's VGG configuration, widths divided by",
    "resnets": "CIFAR ResNets (He et al. 2016), width 16",
    "vit": "(blocks, dim) of the ViT, patch 4, 4 heads [recon]",
    "deep_stages": "Fig. 1(b): (width, convs) per stage, max-pool between; + linear head [recon]",
    "train_steps": "alleviation: SGD on CIFAR-10, BN–ReLU MLP [recon]",
    "opt_depth": "LALC experiments: BN–ReLU MLP on CIFAR-10 [recon]",
    "large_lrs": "chosen by a 3-point sweep per rule on seed 0 at book scale",
    "processes": "optimizer trials in parallel, one thread each",
}


# ---------------------------------------------------------------------------------------------
# 1. The theory
# ---------------------------------------------------------------------------------------------

def relu_moments(samples: int, generator: torch.Generator | None = None) -> pd.DataFrame:
    """The three moments of relu(z), z ~ N(0, 1), behind He's initialization and the paper's
    r(ReLU): E[relu(z)²] (He's assumption ½), Var[relu(z)] = (π−1)/(2π) (what BN sees) and
    E[relu'(z)²] = ½ (backward), closed form or quadrature (first row) beside a Monte Carlo
    estimate from ``samples`` float64 draws of ``generator`` (second row)."""
    positive_int("samples", samples)
    z = torch.randn(samples, generator=generator, dtype=torch.float64)
    r_z = torch.relu(z)
    return pd.DataFrame(
        {"E[relu(z)²] (He's assumption)": [0.5, float((r_z ** 2).mean())],
         "Var[relu(z)] (what BN sees)": [gaussian.forward_ratio("relu"), float(r_z.var())],
         "E[relu'(z)²] (backward)": [gaussian.backward_ratio("relu"), float((z > 0).double().mean())]},
        index=["closed form / quadrature", f"Monte Carlo, {samples:,} samples"])


@dataclass
class ForwardBackward:
    """One BN–ReLU MLP at initialization (:func:`measure_forward_backward`): ``forward_var[n]`` =
    Var[h_n] of linear layer n's output and ``grad_var[n]`` = Var[g_n], g_n = ∂ℓ/∂h_n (layers input
    to output, CPU tensors), and ``rate_fit``, the growth of Var[g_n] per layer toward the input
    (:func:`gradprobe.measure.rates.fit_rate`, layer 1 left out: it is fed by the data)."""

    forward_var: torch.Tensor
    grad_var: torch.Tensor
    rate_fit: rates.RateFit

    def summary(self) -> str:
        """The forward mean against 2·Var[relu] and the backward rate against π/(π−1), as text."""
        depth = len(self.forward_var)
        return (f"forward Var[h_n], layers 2…{depth}: mean {float(self.forward_var[1:].mean()):.4f}, "
                f"theory 2·Var[relu] = {2 * gaussian.forward_ratio('relu'):.4f}\n"
                f"gradient variance grows by {self.rate_fit.rate:.4f} per layer toward the input "
                f"(R² = {self.rate_fit.r2:.4f}); theory π/(π−1) = {gaussian.RELU_RATE:.4f}")


def measure_forward_backward(S: Settings, gen: Generators, device) -> ForwardBackward:
    """Both halves of the paper's abstract on an ``S.depth``-layer ``linear -> BN -> ReLU`` MLP of
    width ``S.width`` (He init, a linear head to 10 classes; weights from ``gen.weights``) at
    initialization: one cross-entropy backward pass of a Gaussian batch of ``S.batch`` with random
    labels (``gen.data``). Theory: forward Var[h_n] = 2·Var[relu] ≈ 0.68, backward growth π/(π−1)."""
    net = mlp(S.depth, S.width, "relu", norm="batch", out_dim=10, generator=gen.weights).to(device)
    x = torch.randn(S.batch, S.width, generator=gen.data).to(device)
    y = torch.randint(0, 10, (S.batch,), generator=gen.data).to(device)
    with hooks.record(net, net.linears()) as rec:
        F.cross_entropy(net(x), y).backward()
    forward_var = rec.variances("activations").cpu()
    grad_var = rec.variances("gradients").cpu()
    return ForwardBackward(forward_var, grad_var, rates.fit_rate(grad_var[1:], reverse=True))


def figure_forward_backward(result: ForwardBackward, S: Settings) -> plt.Figure:
    """The theory's two halves on one BN–ReLU MLP (:func:`measure_forward_backward`): left, the
    forward Var[h_n] per layer against 2·Var[relu(z)] and He's 1; right, the backward Var[g_n]
    against the last layer's value × (π/(π−1))^(L−n)."""
    depth = S.depth
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    plots.per_layer(ax1, result.forward_var, "measured", ylabel="Var[h_n] (linear-layer output)", log=False)
    ax1.axhline(2 * gaussian.forward_ratio("relu"), **plots.THEORY, label="2·Var[relu(z)] = 0.682")
    ax1.axhline(1.0, **plots.PAPER, label="He's assumption: 1")
    ax1.set_ylim(0, 2.2)
    ax1.set_title("forward: constant, but below He's 1")
    ax1.legend()
    k = np.arange(1, depth + 1)
    plots.per_layer(ax2, result.grad_var, "measured", ylabel="Var[g_n] = Var[∂ℓ/∂h_n]")
    ax2.plot(k, float(result.grad_var[-1]) * gaussian.RELU_RATE ** (depth - k), **plots.THEORY,
             label="last layer × (π/(π−1))^(L−n)")
    ax2.set_title("backward: grows by π/(π−1) per layer")
    ax2.legend()
    fig.suptitle(f"{depth}-layer BN–ReLU MLP at initialization (width {S.width}, batch {S.batch})")
    return fig


def mlp_rates(act: str, norm: str = "batch", depth: int = 30, width: int = 256, batch: int = 256,
              repeats: int = 2, generators=None) -> np.ndarray:
    """The measured rate (:func:`gradprobe.measure.rates.network_rate`) of ``repeats`` fresh
    ``linear -> norm -> act`` MLPs (:func:`gradprobe.networks.mlp.mlp`, He init, a linear head to 10
    classes) on Gaussian inputs with random labels; weights from ``generators.weights``, data from
    ``generators.data`` (:func:`gradprobe.seed`; default: fresh unseeded generators)."""
    positive_int("repeats", repeats)
    w_gen = generators.weights if generators is not None else None
    d_gen = generators.data if generators is not None else None
    out = []
    for _ in range(repeats):
        net = mlp(depth, width, act, norm=norm, out_dim=10, generator=w_gen)
        x = torch.randn(batch, width, generator=d_gen)
        y = torch.randint(0, 10, (batch,), generator=d_gen)
        out.append(rates.network_rate(net, x, y).rate)
    return np.array(out)


def measure_activation_rates(S: Settings, gen: Generators, activations=ACTIVATIONS) -> pd.DataFrame:
    """The rate r(φ) of every activation with BatchNorm and with LayerNorm: predicted
    (:func:`gradprobe.theory.gaussian.predicted_rate`: E[φ'²]/Var[φ] for BN, E[φ'²]/E[φ²] for LN)
    beside the mean of :func:`mlp_rates` over ``S.repeats`` MLPs of ``S.depth`` × ``S.width``, batch
    ``S.batch`` (on the CPU). One row per activation."""
    for act in activations:
        one_of("activation", act, ACTIVATIONS)
    rows = []
    for act in progress(activations, desc="activations"):
        bn = mlp_rates(act, "batch", S.depth, S.width, S.batch, S.repeats, gen)
        ln = mlp_rates(act, "layer", S.depth, S.width, S.batch, S.repeats, gen)
        rows.append((act, gaussian.predicted_rate(act, "batch"), bn.mean(),
                     gaussian.predicted_rate(act, "layer"), ln.mean()))
    return pd.DataFrame(rows, columns=["activation", "BN: predicted r", "BN: measured", "LN: predicted",
                                       "LN: measured"]).set_index("activation")


@dataclass
class WidthRatios:
    """The n_out/n_in factor (:func:`measure_width_ratios`): per pair of layers fed by ReLU, the
    width ratio, the measured Var(g_n)/Var(g_{n+1}) (mean over networks) and the prediction
    r·n_out/n_in (``table``); ``largest_deviation`` = max |measured/predicted − 1|."""

    table: pd.DataFrame
    largest_deviation: float

    def summary(self) -> str:
        return (f"largest relative deviation from r·n_out/n_in over {len(self.table)} layer pairs: "
                f"{self.largest_deviation:.2%}")


def measure_width_ratios(S: Settings, gen: Generators, device) -> WidthRatios:
    """Var(g_n)/Var(g_{n+1}) = r(relu)·n_out/n_in in a BN–ReLU MLP (He init, no bias, dropout 0.5,
    a linear head to 10 classes) whose widths alternate between ``S.width``/2 and 3·``S.width``/2
    (``S.depth``//4 pairs of layers), averaged over max(2, ``S.repeats``) networks with Gaussian
    batches of ``S.batch``. Needs ``S.depth`` >= 8 (at least one pair fed by ReLU)."""
    int_at_least("S.depth", S.depth, 8)
    widths = [S.width // 2, 3 * S.width // 2] * (S.depth // 4)
    pair_ratios = []
    for _ in range(max(2, S.repeats)):
        layers = [Layer(a, b, activation="relu", norm="batch", init="he", bias=False, dropout=0.5,
                        generator=gen.weights) for a, b in zip(widths, widths[1:])]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10)).to(device)
        x = torch.randn(S.batch, widths[0], generator=gen.data).to(device)
        y = torch.randint(0, 10, (S.batch,), generator=gen.data).to(device)
        v, _, _ = rates.gradient_variances(net, x, y, layers=[m.linear for m in layers])
        pair_ratios.append((v[1:-1] / v[2:]).cpu().numpy())  # pairs fed by ReLU (layer 1 sees the data)
    pair_ratios = np.mean(pair_ratios, axis=0)
    pairs = range(1, len(widths) - 2)
    predicted = np.array([gaussian.predicted_rate("relu", width_ratio=widths[n + 2] / widths[n + 1])
                          for n in pairs])
    table = pd.DataFrame({"n_out/n_in of layer n+1": [widths[n + 2] / widths[n + 1] for n in pairs],
                          "measured Var(g_n)/Var(g_n+1)": pair_ratios, "predicted r·n_out/n_in": predicted})
    return WidthRatios(table, float(np.max(np.abs(pair_ratios / predicted - 1))))


# ---------------------------------------------------------------------------------------------
# 2. Figure 1(a): the rate across architectures
# ---------------------------------------------------------------------------------------------

def figure1a_config(S: Settings) -> list:
    """The VGG of Figure 1(a): torchvision's configuration ``S.arch_vgg[0]`` with every width
    divided by ``S.arch_vgg[1]`` ("M": a max-pool)."""
    name, divisor = S.arch_vgg
    positive_int("S.arch_vgg[1]", divisor)
    return [c if c == "M" else c // divisor for c in vgg.CONFIGS[name]]


def figure1_images(S: Settings, gen: Generators, device) -> CifarTensors:
    """The CIFAR-10 images of both panels of Figure 1: enough training images for
    ``S.arch_seeds`` batches of ``S.arch_batch`` and ``S.deep_seeds`` batches of ``S.deep_batch``,
    and ``S.probe`` test images, drawn with ``gen.data``."""
    n_images = max(S.arch_batch * S.arch_seeds, S.deep_batch * S.deep_seeds)
    return cifar10_tensors(n_train=n_images, n_test=S.probe, device=device, generator=gen.data)


def _vgg_name(S: Settings) -> str:
    return S.arch_vgg[0].replace("vgg", "VGG-")


def figure1a_networks(S: Settings) -> dict:
    """The networks of Figure 1(a), name -> builder(generator): the VGG of :func:`figure1a_config`
    with BatchNorm, GroupNorm (one group) and LayerNorm, CIFAR ResNets of depths ``S.resnets`` (He
    init, BN) and a ViT of ``S.vit`` = (blocks, dim) with LayerNorm."""
    cfg, name = figure1a_config(S), _vgg_name(S)
    return {
        f"{name} (BN)": lambda g: vgg.vgg(cfg, norm="batch", generator=g),
        f"ResNet-{S.resnets[0]} (BN)": lambda g: resnet.cifar_resnet(S.resnets[0], init="he", generator=g),
        f"ResNet-{S.resnets[1]} (BN)": lambda g: resnet.cifar_resnet(S.resnets[1], init="he", generator=g),
        f"{name} (GroupNorm)": lambda g: vgg.vgg(cfg, norm="group", generator=g),
        f"{name} (LayerNorm)": lambda g: vgg.vgg(cfg, norm="layer", generator=g),
        "ViT (LayerNorm)": lambda g: vit.vit(depth=S.vit[0], dim=S.vit[1], generator=g),
    }


def _batches(images: CifarTensors, seeds: int, size: int) -> list:
    """The first ``seeds`` consecutive batches of ``size`` training images of ``images``, with labels."""
    positive_int("seeds", seeds)
    positive_int("batch", size)
    if len(images.train_x) < seeds * size:
        raise ValueError(f"{seeds} batches of {size} need {seeds * size} training images, "
                         f"got {len(images.train_x)}")
    return [(images.train_x[s * size:(s + 1) * size], images.train_y[s * size:(s + 1) * size])
            for s in range(seeds)]


def _rates_on_batches(builders: dict, batches: list, gen: Generators, device) -> dict:
    """Name -> the rate (:func:`gradprobe.measure.rates.network_rate`) of a fresh network of each
    builder (weights from ``gen.weights``) on each batch, batch by batch."""
    out = {name: [] for name in builders}
    for xb, yb in progress(batches, desc="seeds"):
        for name, build in builders.items():
            out[name].append(rates.network_rate(build(gen.weights).to(device), xb, yb).rate)
    return out


def measure_figure1a(S: Settings, images: CifarTensors, gen: Generators, device) -> dict:
    """Figure 1(a): the explosion rate (:func:`gradprobe.measure.rates.network_rate`, fitted per
    segment) of every network of :func:`figure1a_networks` at initialization, in training mode, on
    ``S.arch_seeds`` consecutive CIFAR-10 batches of ``S.arch_batch`` of ``images`` with their labels
    (cross-entropy), fresh weights (``gen.weights``) per network and batch. Name -> list of rates."""
    batches = _batches(images, S.arch_seeds, S.arch_batch)
    return _rates_on_batches(figure1a_networks(S), batches, gen, device)


def figure1a_table(arch_rates: dict) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each network's rate (:func:`measure_figure1a`)."""
    return pd.DataFrame({"rate (mean)": {k: np.mean(v) for k, v in arch_rates.items()},
                         "std over seeds": {k: np.std(v) for k, v in arch_rates.items()}})


# bar colours of Figure 1(a), by family: plain VGG, ResNets, VGG with group/layer norm, ViT
_FIGURE1A_COLORS = ["tab:blue", "tab:green", "tab:green", "tab:orange", "tab:orange", "tab:purple"]


def figure1a(table: pd.DataFrame, S: Settings) -> plt.Figure:
    """The paper's Figure 1(a): bars of the rate Var(g_n)/Var(g_{n+1}) per layer of each network
    (:func:`figure1a_table`, ± std over seeds) against π/(π−1) (BN–ReLU) and 1 (no explosion)."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = list(table.index)
    ax.bar(range(len(names)), table["rate (mean)"], yerr=table["std over seeds"], capsize=4,
           color=_FIGURE1A_COLORS)
    ax.axhline(gaussian.RELU_RATE, **plots.THEORY, label="π/(π−1): BN–ReLU prediction")
    ax.axhline(1.0, **plots.PAPER, label="1: no explosion")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("Var(g_n)/Var(g_n+1) per layer")
    ax.set_ylim(0.6, 1.7)
    ax.set_title(f"Explosion rate at initialization, CIFAR-10 batch of {S.arch_batch}, "
                 f"{S.arch_seeds} seeds")
    ax.legend(loc="upper right")
    return fig


# ---------------------------------------------------------------------------------------------
# 3. Figure 1(b): eight activations in a 51-layer VGG-like network
# ---------------------------------------------------------------------------------------------

FIGURE1B_ACTIVATIONS = ["relu", "leaky_relu", "elu", "silu", "gelu", "mish", "identity", "dropout"]


def figure1b_config(S: Settings) -> list:
    """The "51-layer VGG-like architecture" of Figure 1(b) [recon]: per stage (width, convs) of
    ``S.deep_stages`` that many 3×3 convolutions, a max-pool ("M") between stages."""
    for width, convs in S.deep_stages:
        positive_int("S.deep_stages width", width)
        positive_int("S.deep_stages convs", convs)
    return sum(([w] * n + ["M"] for w, n in S.deep_stages), [])[:-1]


def figure1b_layers(S: Settings) -> int:
    """Weight layers of the network of :func:`figure1b_config`: its convolutions and the linear head."""
    return sum(c != "M" for c in figure1b_config(S)) + 1


def measure_figure1b(S: Settings, images: CifarTensors, gen: Generators, device,
                     activations=FIGURE1B_ACTIVATIONS) -> dict:
    """Figure 1(b): the explosion rate of the BN network of :func:`figure1b_config` with each of
    ``activations`` (``"dropout"``: DropOut p = 0.5 in place of the activation), on ``S.deep_seeds``
    consecutive CIFAR-10 batches of ``S.deep_batch`` of ``images``, fresh weights (``gen.weights``)
    per activation and batch. Activation -> list of rates."""
    for act in activations:
        one_of("activation", act, ACTIVATIONS)
    batches, cfg = _batches(images, S.deep_seeds, S.deep_batch), figure1b_config(S)
    builders = {act: functools.partial(_deep_vgg, cfg, act) for act in activations}
    return _rates_on_batches(builders, batches, gen, device)


def _deep_vgg(cfg: list, activation: str, generator: torch.Generator):
    return vgg.vgg(cfg, norm="batch", activation=activation, generator=generator)


def figure1b_table(deep_rates: dict) -> pd.DataFrame:
    """Per activation (:func:`measure_figure1b`): the predicted r(φ)
    (:func:`gradprobe.theory.gaussian.explosion_rate`), the measured mean and standard deviation
    over seeds, and measured / predicted."""
    table = pd.DataFrame({"predicted r(φ)": {a: gaussian.explosion_rate(a) for a in deep_rates},
                          "measured (mean)": {a: np.mean(v) for a, v in deep_rates.items()},
                          "std over seeds": {a: np.std(v) for a, v in deep_rates.items()}})
    table["measured / predicted"] = table["measured (mean)"] / table["predicted r(φ)"]
    return table


def figure1b(table: pd.DataFrame, S: Settings) -> plt.Figure:
    """The paper's Figure 1(b): left, predicted and measured rate per activation
    (:func:`figure1b_table`); right, measured against predicted, with the line measured = predicted."""
    acts = list(table.index)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    pos = np.arange(len(acts))
    ax1.bar(pos - 0.2, table["predicted r(φ)"], 0.4, color="tab:red", alpha=0.5,
            label="predicted E[φ'²]/Var[φ]")
    ax1.bar(pos + 0.2, table["measured (mean)"], 0.4, yerr=table["std over seeds"], capsize=3,
            color="tab:blue", label="measured")
    ax1.axhline(1.0, **plots.PAPER)
    ax1.set_xticks(pos, acts, rotation=30, ha="right")
    ax1.set_ylim(0.8, 1.6)
    ax1.set_ylabel("Var(g_n)/Var(g_n+1) per layer")
    ax1.legend(loc="upper right")
    ax2.plot([0.95, 1.5], [0.95, 1.5], **plots.THEORY, label="measured = predicted")
    ax2.errorbar(table["predicted r(φ)"], table["measured (mean)"], yerr=table["std over seeds"],
                 fmt="o", color="tab:blue")
    for a in acts:
        ax2.annotate(a, (table.loc[a, "predicted r(φ)"], table.loc[a, "measured (mean)"]),
                     textcoords="offset points", xytext=(4, -10), fontsize="x-small")
    ax2.set_xlabel("predicted rate r(φ)")
    ax2.set_ylabel("measured rate")
    ax2.legend(loc="upper left")
    fig.suptitle(f"{figure1b_layers(S)}-layer VGG-like BN network at initialization, batch {S.deep_batch}")
    return fig


# ---------------------------------------------------------------------------------------------
# 4. Alleviation during training
# ---------------------------------------------------------------------------------------------

class AlleviationRun(NamedTuple):
    """One SGD run of :func:`measure_alleviation`: the rate and correlation measured along the way
    (:class:`gradprobe.measure.rates.RateTracker`), the training history and the final test
    loss and accuracy."""

    tracker: rates.RateTracker
    history: History
    test_loss: float
    test_accuracy: float

    def first_step_below_one(self) -> int | None:
        """The first measured step whose rate is below 1 (None if none)."""
        return next((s for s, r in zip(self.tracker.measured_steps, self.tracker.rates) if r < 1), None)


def measure_alleviation(S: Settings, seed: int, gen: Generators, device) -> dict:
    """Section 4 [recon]: a ``S.train_depth``-layer BN–ReLU MLP of width ``S.train_width`` on
    flattened CIFAR-10 images (``S.n_train`` training, ``S.n_test`` test images drawn with
    ``gen.data``) trained with plain SGD, batch ``S.train_batch``, for ``S.train_steps`` steps at
    the learning rates ``S.lr_safe`` and ``S.lr_large``, each run from ``gradprobe.seed(seed)``.
    The rate and the correlation are measured on the first ``S.probe`` test images before the
    updates of steps 0–20 and every ``S.train_steps``//20. Learning rate -> :class:`AlleviationRun`."""
    nonnegative_int("seed", seed)
    for name in ("lr_safe", "lr_large"):
        positive(f"S.{name}", getattr(S, name))
    data = cifar10_tensors(n_train=S.n_train, n_test=S.n_test, device=device, generator=gen.data)
    probe_x, probe_y = data.test_x[:S.probe].flatten(1), data.test_y[:S.probe]
    probe_steps = sorted(set(range(0, 21)) | set(range(0, S.train_steps, max(1, S.train_steps // 20))))
    runs = {}
    for lr in (S.lr_safe, S.lr_large):
        g = seed_all(seed)
        net = mlp(S.train_depth, S.train_width, "relu", norm="batch", in_dim=3 * 32 * 32, out_dim=10,
                  generator=g.weights).to(device)
        tracker = rates.RateTracker(probe_x, probe_y, steps=probe_steps)
        history = fit(net, data.train_x.flatten(1), data.train_y, steps=S.train_steps,
                      batch_size=S.train_batch, optimizer=torch.optim.SGD(net.parameters(), lr=lr),
                      generator=g.data, callback=tracker)
        runs[lr] = AlleviationRun(tracker, history, *evaluate(net, data.test_x.flatten(1), data.test_y))
    return runs


def alleviation_summary(runs: dict) -> str:
    """One line per run of :func:`measure_alleviation`: the rate at steps 0 and 10 and at the end,
    the first step below 1, the mean correlation at step 0 and its maximum, the test accuracy
    (runs of at least 11 measured steps)."""
    lines = []
    for lr, run in runs.items():
        t, rho = run.tracker, run.tracker.mean_correlation()
        if len(t.rates) < 11:
            raise ValueError(f"alleviation_summary needs runs of at least 11 measured steps, got {len(t.rates)}")
        lines.append(f"lr {lr:g}: rate at step 0 {t.rates[0]:.4f}, step 10 {t.rates[10]:.4f}, "
                     f"last {t.rates[-1]:.4f}; first step with rate < 1: {run.first_step_below_one()}; "
                     f"mean ρ step 0 {rho[0]:.3f}, max {np.nanmax(rho):.3f}; "
                     f"test accuracy {run.test_accuracy:.3f}")
    return "\n".join(lines)


def figure_alleviation(runs: dict, S: Settings) -> plt.Figure:
    """Section 4: per run of :func:`measure_alleviation` (safe and too large a learning rate), the
    fitted rate, the mean correlation ρ over layers and the training loss against the step."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for (lr, run), color in zip(runs.items(), ["tab:blue", "tab:red"]):
        label = f"SGD lr {lr:g}" + (" (safe)" if lr == S.lr_safe else " (too large)")
        steps_1 = np.array(run.tracker.measured_steps) + 1
        axes[0].plot(steps_1, run.tracker.rates, color=color, label=label, **plots.OURS)
        axes[1].plot(steps_1, run.tracker.mean_correlation(), color=color, label=label, **plots.OURS)
        axes[2].plot(np.arange(1, len(run.history.loss) + 1), run.history.loss, color=color, label=label,
                     linewidth=1)
    axes[0].axhline(gaussian.RELU_RATE, **plots.THEORY, label="π/(π−1)")
    axes[0].axhline(1.0, **plots.PAPER)
    axes[0].set_ylabel("fitted Var(g_n)/Var(g_n+1)")
    axes[1].axhline(1.0, **plots.PAPER, label="uncorrelated (init)")
    axes[1].set_ylabel("mean correlation ρ over layers")
    axes[1].set_yscale("log")
    axes[2].axhline(math.log(10), **plots.PAPER, label="chance: log 10")
    axes[2].set_ylabel("training loss (cross-entropy)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training step + 1")
        ax.legend(fontsize="x-small")
    fig.suptitle(f"{S.train_depth}-layer BN–ReLU MLP on CIFAR-10, batch {S.train_batch}")
    return fig


# ---------------------------------------------------------------------------------------------
# 5. LALC: training trials
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trial:
    """One training run: a BatchNorm-ReLU MLP (:func:`gradprobe.networks.mlp.mlp` on flattened images)
    trained on a fixed CIFAR-10 subset with one optimizer. ``options`` are extra optimizer keyword
    arguments as ``(name, value)`` pairs; the data subset is drawn with ``data_seed`` (the same for
    every trial), weights and mini-batch order with ``seed``; ``device`` as :func:`gradprobe.device`."""

    optimizer: str
    lr: float
    seed: int
    steps: int
    batch_size: int
    warmup_steps: int = 0
    options: tuple = ()
    depth: int = 30
    width: int = 256
    n_train: int = 10000
    n_test: int = 2000
    data_seed: int = 0
    device: str = "cpu"
    label: str = ""

    def __post_init__(self):
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("steps", "batch_size", "depth", "width", "n_train", "n_test"):
            positive_int(f"Trial.{name}", getattr(self, name))


@dataclass
class TrialResult:
    """What a :class:`Trial` gave: final test accuracy and loss (a diverged run is evaluated as
    it stands, typically at chance), the mean training loss of the last 10% of steps, the step of
    divergence (None if none) and the per-step training loss."""

    trial: Trial
    test_accuracy: float
    test_loss: float
    final_train_loss: float
    diverged_at: int | None
    loss: list = field(default_factory=list)


@functools.lru_cache(maxsize=2)
def _data(n_train: int, n_test: int, data_seed: int):
    d = cifar10_tensors(n_train, n_test, "cpu", torch.Generator().manual_seed(data_seed))
    return d.train_x.flatten(1), d.train_y, d.test_x.flatten(1), d.test_y


def run_trial(trial: Trial) -> TrialResult:
    """Train one :class:`Trial` (on its ``device``; on the CPU with the current thread settings) and
    evaluate it on the test subset."""
    torch.set_flush_denormal(True)
    train_x, train_y, test_x, test_y = _data(trial.n_train, trial.n_test, trial.data_seed)
    dev = pick_device(trial.device)
    train_x, train_y, test_x, test_y = (t.to(dev) for t in (train_x, train_y, test_x, test_y))
    gen = seed_all(trial.seed)
    net = mlp(trial.depth, trial.width, "relu", norm="batch", in_dim=train_x.shape[1], out_dim=10,
              generator=gen.weights).to(dev)
    opt = make_optimizer(trial.optimizer, net.parameters(), trial.lr, **dict(trial.options))
    hist = fit(net, train_x, train_y, steps=trial.steps, batch_size=trial.batch_size, optimizer=opt,
               generator=gen.data, schedule=linear_warmup(trial.warmup_steps), diverge_above=1e3)
    test_loss, test_acc = evaluate(net, test_x, test_y)
    tail = hist.loss[-max(1, len(hist.loss) // 10):]
    final = math.nan if hist.diverged else sum(tail) / len(tail)
    return TrialResult(trial, test_acc, test_loss, final, hist.diverged_at, hist.loss)


def _run_one_thread(trial: Trial) -> TrialResult:
    torch.set_num_threads(1)
    return run_trial(trial)


def run_trials(trials, processes: int = 1) -> list[TrialResult]:
    """Run :class:`Trial` s, in order, in ``processes`` worker processes ("spawn"), each with one
    torch thread, so that results do not depend on the number of processes. ``processes=1`` runs
    them here, one after another, also with one thread (restored afterwards)."""
    trials = list(trials)
    if not all(isinstance(t, Trial) for t in trials):
        raise ValueError("run_trials takes a list of Trial objects")
    positive_int("processes", processes)
    if processes == 1 or len(trials) <= 1:
        threads = torch.get_num_threads()
        try:
            return [_run_one_thread(t) for t in trials]
        finally:
            torch.set_num_threads(threads)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        return list(pool.map(_run_one_thread, trials))


@dataclass
class Comparison:
    """Learning-rate rules compared over seeds: the :class:`TrialResult` of every trial in order,
    one row per trial (``runs``: rule, seed, test accuracy, final train loss[, diverged]) and
    per rule, in order of appearance, the mean and standard deviation over seeds (``summary``)."""

    results: list
    runs: pd.DataFrame
    summary: pd.DataFrame


def _trial_settings(S: Settings, device) -> dict:
    return dict(steps=S.small_steps, batch_size=S.small_batch, depth=S.opt_depth, width=S.opt_width,
                n_train=S.n_train, n_test=S.n_test, device=str(device))


def _processes(S: Settings, device) -> int:
    """``S.processes`` on the CPU; on a GPU the trials run one after another."""
    return S.processes if torch.device(device).type == "cpu" else 1


def lalc_small_batch(S: Settings, seed: int, device) -> Comparison:
    """Section 5, small batch [recon LALC]: a BN–ReLU MLP (``S.opt_depth`` × ``S.opt_width``) on
    CIFAR-10, batch ``S.small_batch``, ``S.small_steps`` steps at learning rate ``S.small_lr`` with
    momentum 0.9: SGD, SGD with a linear warm-up over ``S.warmup`` steps, and LALC without warm-up
    at trust coefficient ``S.eta`` and at each of ``S.etas``; seeds ``seed`` … ``seed +
    S.opt_seeds − 1``, trials run by :func:`run_trials`."""
    nonnegative_int("seed", seed)
    common = _trial_settings(S, device)
    trials = []
    for s in range(S.opt_seeds):
        trials += [Trial("sgd", S.small_lr, seed + s, label="SGD", **common),
                   Trial("sgd", S.small_lr, seed + s, warmup_steps=S.warmup, label="SGD + warm-up",
                         **common),
                   Trial("lalc", S.small_lr, seed + s, options=(("trust_coefficient", S.eta),),
                         label=f"LALC η={S.eta:g}", **common)]
        trials += [Trial("lalc", S.small_lr, seed + s, options=(("trust_coefficient", eta),),
                         label=f"LALC η={eta:g}", **common) for eta in S.etas]
    results = run_trials(trials, processes=_processes(S, device))
    runs = pd.DataFrame([(r.trial.label, r.trial.seed, r.test_accuracy, r.final_train_loss,
                          r.diverged_at is not None) for r in results],
                        columns=["rule", "seed", "test accuracy", "final train loss", "diverged"])
    summary = runs.groupby("rule", sort=False).agg(
        accuracy_mean=("test accuracy", "mean"), accuracy_std=("test accuracy", "std"),
        train_loss_mean=("final train loss", "mean"), diverged=("diverged", "sum"))
    return Comparison(results, runs, summary)


# colours of the small-batch rules: plain SGD, SGD with warm-up, LALC at η = S.eta, the η sweep
_SMALL_BATCH_COLORS = ["tab:red", "tab:orange", "tab:blue"]
_ETA_SWEEP_COLOR = "tab:cyan"


def figure_lalc_small_batch(result: Comparison, S: Settings) -> plt.Figure:
    """Section 5, small batch (:func:`lalc_small_batch`): left, the training loss (running mean over
    ``S.small_steps``//30 steps) of SGD, SGD + warm-up and LALC, mean and range over seeds of the
    runs that did not diverge; right, the test accuracy of every rule (mean ± std over seeds)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    main_rules = ["SGD", "SGD + warm-up", f"LALC η={S.eta:g}"]
    steps = np.arange(1, S.small_steps + 1)
    for rule, color in zip(main_rules, _SMALL_BATCH_COLORS):
        curves = np.array([r.loss for r in result.results
                           if r.trial.label == rule and len(r.loss) == S.small_steps])
        if len(curves):
            window = max(1, S.small_steps // 30)
            smooth = pd.DataFrame(curves.T).rolling(window, min_periods=1).mean().to_numpy().T
            ax1.plot(steps, smooth.mean(0), color=color, label=rule)
            ax1.fill_between(steps, smooth.min(0), smooth.max(0), color=color, alpha=0.2)
    ax1.axhline(math.log(10), **plots.PAPER, label="chance: log 10")
    ax1.set_xlabel("training step")
    ax1.set_ylabel("training loss (running mean)")
    ax1.legend(fontsize="x-small")
    ax1.set_title(f"lr {S.small_lr:g}, batch {S.small_batch}: mean and range over {S.opt_seeds} seeds")
    summary = result.summary
    order = list(summary.index)
    ax2.bar(range(len(order)), summary["accuracy_mean"], yerr=summary["accuracy_std"], capsize=4,
            color=_SMALL_BATCH_COLORS + [_ETA_SWEEP_COLOR] * (len(order) - 3))
    ax2.axhline(0.1, **plots.PAPER, label="chance")
    ax2.set_xticks(range(len(order)), order, rotation=20, ha="right")
    ax2.set_ylabel("test accuracy")
    ax2.legend(fontsize="x-small")
    return fig


def lalc_large_batch(S: Settings, seed: int, device) -> Comparison:
    """Section 5, large batch [recon LALC]: the network of :func:`lalc_small_batch`, batch
    ``S.large_batch``, ``S.large_steps`` steps, no warm-up: LALC (η = ``S.eta``), LARS (trust
    coefficient 0.001) and LAMB (ε = 1e-6) at their global learning rates ``S.large_lrs``; seeds
    ``seed`` … ``seed + S.opt_seeds − 1``."""
    nonnegative_int("seed", seed)
    common = {**_trial_settings(S, device), "steps": S.large_steps, "batch_size": S.large_batch}
    lrs = S.large_lrs
    trials = []
    for s in range(S.opt_seeds):
        trials += [Trial("lalc", lrs["lalc"], seed + s, options=(("trust_coefficient", S.eta),),
                         label="LALC", **common),
                   Trial("lars", lrs["lars"], seed + s, options=(("trust_coefficient", 0.001),),
                         label="LARS", **common),
                   Trial("lamb", lrs["lamb"], seed + s, options=(("eps", 1e-6),), label="LAMB", **common)]
    results = run_trials(trials, processes=_processes(S, device))
    runs = pd.DataFrame([(r.trial.label, r.trial.seed, r.test_accuracy, r.final_train_loss)
                         for r in results], columns=["rule", "seed", "test accuracy", "final train loss"])
    summary = runs.groupby("rule", sort=False).agg(
        accuracy_mean=("test accuracy", "mean"), accuracy_std=("test accuracy", "std"),
        train_loss_mean=("final train loss", "mean"))
    return Comparison(results, runs, summary)


_LARGE_BATCH_COLORS = ["tab:blue", "tab:green", "tab:purple"]   # LALC, LARS, LAMB


def figure_lalc_large_batch(result: Comparison, S: Settings) -> plt.Figure:
    """Section 5, large batch (:func:`lalc_large_batch`): the test accuracy of LALC, LARS and LAMB,
    mean ± std over seeds (bars) and every seed (dots)."""
    summary, runs = result.summary, result.runs
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.bar(range(3), summary["accuracy_mean"], yerr=summary["accuracy_std"], capsize=4,
           color=_LARGE_BATCH_COLORS)
    for i, rule in enumerate(summary.index):
        pts = runs.loc[runs["rule"] == rule, "test accuracy"]
        ax.plot([i] * len(pts), pts, "k.", markersize=5)
    ax.set_xticks(range(3), list(summary.index))
    ax.set_ylabel("test accuracy")
    ax.set_title(f"batch {S.large_batch}, {S.large_steps} steps, {S.opt_seeds} seeds (dots)")
    return fig


# ---------------------------------------------------------------------------------------------
# 6. One rate, three measurements
# ---------------------------------------------------------------------------------------------

def measure_three_ways(S: Settings, gen: Generators) -> pd.Series:
    """The gradient-norm rate per layer of one BN–ReLU MLP (``S.depth`` × ``S.width``, no head, on
    the CPU, weights from ``gen.weights``) at initialization, on a Gaussian batch of ``S.batch``
    (``gen.data``), measured three ways: the square root of this chapter's fitted
    Var(g_n)/Var(g_{n+1}) (:func:`gradprobe.measure.rates.network_rate`); the growth per layer of
    Philipp et al.'s GSC (:func:`gradprobe.measure.gsc.gsc_profile`, linear layers 2…L); and
    ((R_b/R_f)_L / (R_b/R_f)_{L/2})^(1/(L/2)), square root, of the ghost paper
    (:func:`gradprobe.measure.stats.network_ratios` over max(2, ``S.repeats``) batches); with
    the theory √(π/(π−1)) last."""
    int_at_least("S.depth", S.depth, 4)
    net = mlp(S.depth, S.width, "relu", norm="batch", generator=gen.weights)   # small: on the CPU
    x = torch.randn(S.batch, S.width, generator=gen.data)
    grad_output = torch.randn(S.batch, S.width, generator=gen.data) / math.sqrt(S.width)
    ours = rates.network_rate(net, x, grad_output=grad_output, layers=net.linears()).norm_rate
    profile = gsc_profile(net, x, modules=net.linears()[1:], generator=gen.data)
    gsc_rate = rates.fit_rate(profile, reverse=True).rate
    half, repeats = S.depth // 2, max(2, S.repeats)
    rf_half, rb_half = network_ratios(net[:half], repeats=repeats, batch=S.batch, generator=gen.data)
    rf_all, rb_all = network_ratios(net, repeats=repeats, batch=S.batch, generator=gen.data)
    ghost_rate = math.sqrt(((rb_all / rf_all) / (rb_half / rf_half)) ** (1 / (S.depth - half)))
    return pd.Series({"Var(g_n)/Var(g_n+1), square root (this chapter)": ours,
                      "GSC growth per layer (Philipp et al.)": gsc_rate,
                      "(R_b/R_f) per layer, square root (ghost)": ghost_rate,
                      "theory √(π/(π−1))": gaussian.norm_rate("relu")}, name="gradient-norm rate per layer")


# ---------------------------------------------------------------------------------------------
# Paper vs this book
# ---------------------------------------------------------------------------------------------

# The paper's predicted r(φ) for the other activations (spec, from the paper's theory).
_PREDICTED_RATES = {"leaky_relu": 1.453, "gelu": 1.319, "silu": 1.212, "tanh": 1.178, "elu": 1.079,
                    "selu": 1.072, "identity": 1.0}
_SPEC = "spec (paik2023.md), from the paper's theory"


def _theory_claims(claims: Claims, moments: pd.DataFrame, forward_backward: ForwardBackward) -> None:
    var_relu = float(moments["Var[relu(z)] (what BN sees)"].iloc[1])
    claims.close("Var[relu(z)] = (π−1)/(2π), below He's assumed ½", (math.pi - 1) / (2 * math.pi),
                 var_relu, rel=0.01,
                 source="paik2023, abstract (\"ReLU reduces the variance by more than expected\")")
    claims.close("r(ReLU) = π/(π−1) by quadrature", math.pi / (math.pi - 1),
                 gaussian.explosion_rate("relu"), abs=5e-4, source="paik2023, Sec. 1 and Fig. 1 caption")
    for act, value in _PREDICTED_RATES.items():
        claims.close(f"predicted rate r({act})", value, gaussian.explosion_rate(act), abs=5e-4,
                     source=_SPEC)
    claims.close("BN–ReLU MLP: gradient variance grows π/(π−1) per layer, forward stays constant",
                 math.pi / (math.pi - 1), forward_backward.rate_fit.rate, rel=0.03,
                 source="paik2023, abstract; Sec. 1")


def _figure1b_claims(claims: Claims, figure1b: pd.DataFrame, widths: WidthRatios) -> None:
    measured = figure1b["measured (mean)"]
    claims.close("gradient norm rate per effective depth ≈ 1.21 (51-layer VGG-like, ReLU)", 1.21,
                 math.sqrt(measured["relu"]), rel=0.03, source="paik2023, Sec. 1 (\"π/(π−1) ∼ 1.21\")")
    claims.close("rate × n_out/n_in for changing widths (largest deviation)", 0.0, widths.largest_deviation,
                 abs=0.05, source=_SPEC)
    claims.close("DropOut instead of an activation: no explosion (51-layer VGG)", 1.0, measured["dropout"],
                 abs=0.03, source="paik2023, Fig. 1(b) caption")
    claims.close("no activation: no explosion (51-layer VGG)", 1.0, measured["identity"], abs=0.03,
                 source="paik2023, Fig. 1(b) caption")
    order = [measured[a] for a in ["leaky_relu", "relu", "gelu", "mish", "silu", "elu"]]
    claims.holds("smoother ReLU variants explode less (51-layer VGG)",
                 "ReLU, LeakyReLU > GELU > Mish, SiLU > ELU",
                 "{:.3f}, {:.3f} > {:.3f} > {:.3f}, {:.3f} > {:.3f}".format(*order[1::-1], *order[2:]),
                 bool(min(order[:2]) > order[2] > max(order[3:5]) and min(order[3:5]) > order[5]),
                 criterion="measured rates in the predicted order", source="paik2023, Fig. 1(b) caption")
    ratio = figure1b["measured / predicted"]
    claims.close("measured / predicted rate, all eight activations (worst)", 1.0,
                 float(ratio.iloc[(ratio - 1).abs().argmax()]), rel=0.06, source="paik2023, Fig. 1(b)")


def _figure1a_claims(claims: Claims, figure1a: pd.DataFrame, activations: pd.DataFrame,
                     S: Settings) -> None:
    rate, plain = figure1a["rate (mean)"], f"{_vgg_name(S)} (BN)"
    claims.close(f"vanilla BN network ({_vgg_name(S)}) explodes at ≈ π/(π−1)", math.pi / (math.pi - 1),
                 rate[plain], rel=0.05, source="paik2023, Fig. 1(a) caption")
    resnets = [n for n in rate.index if n.startswith("ResNet")]
    claims.holds("residual networks explode less than the plain BN network",
                 "lower rate with residual connections",
                 ", ".join(f"{rate[n]:.3f}" for n in resnets),
                 bool(all(rate[n] < rate[plain] - 0.05 for n in resnets)),
                 criterion="each ResNet < VGG (BN) − 0.05", source="paik2023, Fig. 1(a) caption")
    for name in [f"{_vgg_name(S)} (LayerNorm)", "ViT (LayerNorm)"]:
        claims.close(f"{name}: no explosion", 1.0, rate[name], abs=0.05,
                     source="paik2023, Fig. 1(a) caption")
    claims.close("LayerNorm–ReLU MLP: rate E[φ'²]/E[φ²] = 1", 1.0, activations.loc["relu", "LN: measured"],
                 abs=0.03, source="paik2023, Fig. 1(a) caption; spec (measured 0.985)")


def _alleviation_claims(claims: Claims, alleviation: dict, S: Settings) -> None:
    safe, large = alleviation[S.lr_safe], alleviation[S.lr_large]
    rates_, relief_step = safe.tracker.rates, safe.first_step_below_one()
    claims.holds("the explosion is relieved within the first steps of training, toward vanishing",
                 "rapidly relieved, toward vanishing (spec measured 1.44 → 0.96 in 10 steps)",
                 f"{rates_[0]:.3f} → {rates_[-1]:.3f}; below 1 from step {relief_step}",
                 bool(relief_step is not None and relief_step <= 30 and rates_[-1] < 1.1),
                 criterion="rate < 1 by step 30 and < 1.1 at the end (safe lr)", source="paik2023, Sec. 1")
    rho = safe.tracker.mean_correlation()
    claims.holds("the correlation between activations rises and offsets the explosion",
                 "correlation 1 → 3–6 (spec, measured)", f"{rho[0]:.3f} → {np.max(rho):.3g}",
                 bool(np.max(rho) > 1.5), criterion="mean ρ rises above 1.5",
                 source="paik2023 (arXiv abstract); spec")
    large_loss = float(np.mean(large.history.loss[-10:]))
    claims.holds("too large a learning rate: training fails", "training fails (spec, measured)",
                 f"final loss {large_loss:.3f}, test acc {large.test_accuracy:.3f}",
                 bool(not math.isfinite(large_loss) or large_loss > 2.2),
                 criterion="final training loss > 2.2 (chance 2.303)",
                 source="paik2023, abstract (training instability)")


def _lalc_claims(claims: Claims, small_batch: Comparison, large_batch: Comparison, S: Settings) -> None:
    acc = small_batch.summary["accuracy_mean"]
    lalc, warmup_std = acc[f"LALC η={S.eta:g}"], small_batch.summary.loc["SGD + warm-up", "accuracy_std"]
    claims.holds("small batch, high lr: LALC without warm-up ≥ SGD with warm-up, where plain SGD does "
                 "worse [recon LALC]", "LALC replaces WarmUp",
                 f"LALC {lalc:.3f}, warm-up {acc['SGD + warm-up']:.3f}, SGD {acc['SGD']:.3f}",
                 bool(lalc >= acc["SGD + warm-up"] - warmup_std and lalc > acc["SGD"] + 0.02),
                 criterion="LALC ≥ warm-up − 1 std and LALC > SGD + 0.02", source="paik2023, abstract")
    lacc = large_batch.summary["accuracy_mean"]
    claims.holds("large batch: LALC ≥ LARS and LAMB at equal epochs [recon LALC]",
                 "LALC outperforms LARS, LAMB",
                 f"LALC {lacc['LALC']:.3f}, LARS {lacc['LARS']:.3f}, LAMB {lacc['LAMB']:.3f}",
                 bool(lacc["LALC"] >= max(lacc["LARS"], lacc["LAMB"])),
                 criterion="mean test accuracy, LALC ≥ both", source="paik2023, abstract")


def check_claims(S: Settings, *, moments: pd.DataFrame, forward_backward: ForwardBackward,
                 activations: pd.DataFrame, widths: WidthRatios, figure1a: pd.DataFrame,
                 figure1b: pd.DataFrame, alleviation: dict, small_batch: Comparison,
                 large_batch: Comparison, three_ways: pd.Series) -> Claims:
    """The chapter's "paper vs this book" table from the results of its sections: the theory
    (:func:`relu_moments`, :func:`measure_forward_backward`), Figure 1(b) and the width factor
    (:func:`figure1b_table`, :func:`measure_width_ratios`), Figure 1(a) and LayerNorm
    (:func:`figure1a_table`, :func:`measure_activation_rates`), the alleviation
    (:func:`measure_alleviation`), LALC (:func:`lalc_small_batch`, :func:`lalc_large_batch`) and the
    three measurements (:func:`measure_three_ways`), in that order. Each row cites its source."""
    claims = Claims("paik2023")
    _theory_claims(claims, moments, forward_backward)
    _figure1b_claims(claims, figure1b, widths)
    _figure1a_claims(claims, figure1a, activations, S)
    _alleviation_claims(claims, alleviation, S)
    _lalc_claims(claims, small_batch, large_batch, S)
    measured = [float(v) for v in three_ways.iloc[:3]]
    claims.close("three measurements of the rate agree (largest relative spread)", 0.0,
                 float(max(measured) / min(measured) - 1), abs=0.03,
                 source="this book: paik2023, philipp2018, ghost2024")
    return claims
