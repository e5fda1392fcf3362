"""Chapter *Understanding batch normalization* (Bjorck et al. 2018): the experiment drivers, figure
functions and claims of notebook ``03_bjorck2018``, in the order of the notebook. The measurements
themselves are core: :mod:`gradprobe.measure.kernels`, :mod:`gradprobe.measure.steps` and
:mod:`gradprobe.theory.random_matrices`.

- settings and data: :data:`SETTING_NOTES`, :func:`load_data`, :func:`paper_layers`,
  :func:`resnet_at_init`, :func:`networks_at_init`, :func:`layer_table`, :func:`calibrate`
- Figure 1 (and Appendix E's run): :func:`train_figure1`, :func:`figure1_summary`, :func:`figure1`
- Figure 2: :func:`measure_figure2`, :func:`figure2`
- Figure 3 and Appendix H: :func:`probe_training_steps`, :func:`probe_figure3`, :func:`figure3`,
  :func:`useful_steps`, :func:`useful_table`, :func:`scan_appendix_h`, :func:`appendix_h`
- Figure 4: :func:`find_figure4_update`, :func:`figure4`, :func:`figure4_table`
- Figure 5: :data:`FIGURE5_LAYERS`, :func:`measure_figure5`, :func:`figure5`
- Figure 6: :func:`measure_figure6`, :func:`dominant_class_share`, :func:`figure6`
- Table 1: :data:`PAPER_TABLE1`, :func:`table1`
- Figure 7: :func:`measure_figure7`, :func:`figure7`
- Figures 8 and 9 (Theorem 1), Appendix K: :func:`figure8`, :func:`theorem1_moments`,
  :func:`sample_figure9`, :func:`figure9`, :func:`measure_appendix_k`, :func:`appendix_k`
- Appendix E: :func:`appendix_e`, :func:`final_accuracies`
- the "paper vs this book" table: :func:`check_claims`

Networks are keyed by ``"BN"`` and ``"no BN"`` throughout; layers by the paper's numbers in
ResNet-110 (``L = paper_layers(depth)`` maps them to the network at hand). Figure functions return
the matplotlib Figure; the notebook saves it (:func:`gradprobe.book.plots.savefig`) and shows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..book import plots
from ..book.claims import Claims
from ..checks import int_at_least, positive, positive_int
from ..data import tensors
from ..measure import kernels
from ..measure.steps import (DivergingUpdate, Sweep, find_diverging_update, interpolation_sweep,
                              largest_useful_step, step_loss_ratios)
from ..networks import resnet
from ..runtime import progress, seed as seeded
from ..theory import random_matrices as rm
from ..train import schedules
from ..train.loop import History, fit

__all__ = ["SETTING_NOTES", "COLORS", "ProbeData", "load_data", "PAPER_LAYERS", "paper_layers", "resnet_at_init",
           "networks_at_init", "layer_table", "Calibration", "calibrate",
           "FIGURE1_RUNS", "train_figure1", "figure1_summary", "figure1",
           "kurtosis", "KernelGradients", "measure_figure2", "figure2",
           "ProbeRun", "probe_training_steps", "FIGURE3_RUNS", "step_sizes", "probe_figure3", "figure3",
           "useful_steps", "useful_table", "scan_appendix_h", "appendix_h",
           "DivergenceAnatomy", "find_figure4_update", "finite_max", "figure4", "final_moments", "figure4_table",
           "FIGURE5_LAYERS", "figure5_layers", "MomentGrowth", "measure_figure5", "figure5",
           "DominantClass", "dominant_class_share", "OutputGradients", "measure_figure6", "figure6",
           "PAPER_TABLE1", "table1", "ChannelMaps", "measure_figure7", "figure7",
           "THEOREM1_MS", "figure8", "Theorem1Moments", "theorem1_moments", "Figure9", "sample_figure9", "figure9",
           "Conditioning", "measure_appendix_k", "appendix_k", "appendix_e", "final_accuracies", "check_claims"]

NETWORKS = {"BN": "batch", "no BN": None}      # the two networks of every figure at initialization
COLORS = {"BN": "tab:blue", "no BN": "tab:orange"}   # the chapter's colour of each network

# What each setting of the notebook means: the "note" column of its settings table.
SETTING_NOTES = {
    "depth": "ResNet depth for everything at initialization (Figs. 2–7, Table 1)",
    "batch": "mini-batch of the probes at initialization; the paper's 128",
    "probe_batch": "mini-batch of the Fig. 3 / App. H scans and the Fig. 4 run",
    "grad_batches": "mini-batches pooled for Fig. 2 and Table 1",
    "step_points": "step sizes of the Fig. 3 scan, log-spaced 1e-5 … 1",
    "diverge_lr": "lr of the no-BN run whose diverging update Fig. 4 dissects [recon]",
    "find_steps": "SGD steps searched for a diverging update",
    "sweep_points": "fractions of that update, 0 … 100 %",
    "train_depth": "ResNet depth of the training runs (Fig. 1, App. E)",
    "train_steps": "SGD steps per run; paper: 165 epochs (64k steps; no BN at 1e-4 needs ~2400 epochs)",
    "seeds": "training runs per setting; the paper averages 5",
    "rm_N": "matrix size of Fig. 9 (paper: 1000)",
    "cond_N": "matrix size for App. K's condition numbers",
}


# ---------------------------------------------------------------------------- data and networks
class ProbeData(NamedTuple):
    """The chapter's CIFAR-10 subset on the mean-subtracted scale (``x``, ``y``; ``x_test``,
    ``y_test``) and ``batches``: the mini-batches of the probes at initialization, drawn through
    a random permutation of the training subset; ``xb``, ``yb`` is the first."""
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    batches: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def xb(self) -> torch.Tensor:
        return self.batches[0][0]

    @property
    def yb(self) -> torch.Tensor:
        return self.batches[0][1]


def load_data(n_train: int, n_test: int, batch: int, batches: int, device, generator: torch.Generator) -> ProbeData:
    """``n_train`` training and ``n_test`` test images of CIFAR-10
    (:func:`gradprobe.data.tensors.cifar10_tensors`, then
    :func:`~gradprobe.data.tensors.mean_subtracted`: He et al.'s scale) and ``batches`` probe
    mini-batches of ``batch`` images, all drawn from ``generator``."""
    for name, value in [("n_train", n_train), ("n_test", n_test), ("batch", batch), ("batches", batches)]:
        positive_int(name, value)
    if batch * batches > n_train:
        raise ValueError(f"{batches} mini-batches of {batch} need {batch * batches} training images, "
                         f"n_train is {n_train}")
    data = tensors.cifar10_tensors(n_train, n_test, device, generator=generator)
    x, y = tensors.mean_subtracted(data.train_x), data.train_y
    x_test, y_test = tensors.mean_subtracted(data.test_x), data.test_y
    order = torch.randperm(len(x), generator=generator).to(device)
    chosen = [(x[order[i * batch:(i + 1) * batch]], y[order[i * batch:(i + 1) * batch]]) for i in range(batches)]
    return ProbeData(x, y, x_test, y_test, chosen)


# The ResNet-110 layers the paper's figures and Table 1 look at
PAPER_LAYERS = (8, 18, 44, 45, 54, 55, 80, 90, 110)


def paper_layers(depth: int) -> dict[int, int]:
    """{paper layer (ResNet-110): the layer at the same place of a ResNet-``depth``} for
    :data:`PAPER_LAYERS` (:func:`gradprobe.networks.resnet.paper_layer`)."""
    return {k: resnet.paper_layer(k, depth) for k in PAPER_LAYERS}


def resnet_at_init(depth: int, norm: str | None, seed: int, device) -> resnet.CifarResNet:
    """The chapter's CIFAR ResNet of ``depth`` (Xavier init, :func:`gradprobe.networks.resnet.cifar_resnet`)
    drawn from the weight stream of ``gradprobe.seed(seed)``: the same ``seed`` gives the BN and
    the unnormalized network the same conv weights. Seeding also resets the global generators."""
    return resnet.cifar_resnet(depth, norm, generator=seeded(seed).weights).to(device)


def networks_at_init(depth: int, seed: int, device) -> dict[str, resnet.CifarResNet]:
    """{"BN": ResNet-``depth`` with BN, "no BN": the same without}, at initialization (Figs. 2, 5–7, Table 1)."""
    return {name: resnet_at_init(depth, norm, seed, device) for name, norm in NETWORKS.items()}


def layer_table(net: resnet.CifarResNet, layers: dict[int, int]) -> pd.DataFrame:
    """The paper's layers, where they are in ``net`` (``layers`` from :func:`paper_layers`) and
    their weight shapes: one column per layer."""
    return pd.DataFrame({"paper layer (ResNet-110)": list(layers),
                         f"layer here (ResNet-{net.depth})": list(layers.values()),
                         "shape": [tuple(resnet.layer(net, k).weight.shape) for k in layers.values()]}
                        ).set_index("paper layer (ResNet-110)").T


@dataclass
class Calibration:
    """Per network: the loss at initialization on one mini-batch and the ratio new/old loss after
    one gradient step of size 10⁻⁴ (printed by ``print``)."""
    loss: dict[str, float]
    ratio: dict[str, float]

    def __str__(self) -> str:
        return "\n".join(f"{name:6s} initial loss {self.loss[name]:9.4g};  after one step of size 1e-4: "
                         f"× {self.ratio[name]:.4g}" for name in self.loss)


def calibrate(nets: dict, x: torch.Tensor, y: torch.Tensor) -> Calibration:
    """The calibration check: the paper trains the unnormalized ResNet at lr 10⁻⁴, so one step of
    that size (:func:`gradprobe.measure.steps.step_loss_ratios`) must lower the loss at init."""
    loss, ratio = {}, {}
    for name, net in nets.items():
        with torch.no_grad():
            loss[name] = float(F.cross_entropy(net(x), y))
        ratio[name] = step_loss_ratios(net, x, y, [1e-4])[0]
    return Calibration(loss, ratio)


# ---------------------------------------------------------------------------- Figure 1
# (label, norm of cifar_resnet, learning rate): the paper's four runs and Appendix E's network
FIGURE1_RUNS = (("BN", "batch", 0.1), ("BN", "batch", 0.003), ("BN", "batch", 1e-4), ("no BN", None, 1e-4),
                ("final BN only", "final", 0.03))


def train_figure1(S, data: ProbeData, seed: int, device, runs=FIGURE1_RUNS) -> dict[tuple[str, float], list[History]]:
    """Figure 1 (and Appendix E's run): train ResNet-``S.train_depth`` for each (label, norm, lr)
    of ``runs`` and each of ``S.seeds`` seeds (seed, seed + 1, …): SGD with momentum 0.9, weight
    decay 10⁻⁴, batch ``S.train_batch``, augmentation, lr ÷10 at 50 % and 75 % of
    ``S.train_steps`` steps, test accuracy every ``S.eval_every`` steps; a run stops when its loss
    exceeds 10³ (:func:`gradprobe.train.loop.fit`). Returns {(label, lr): [History per seed]}."""
    for name in ("train_depth", "train_steps", "train_batch", "eval_every", "seeds"):
        positive_int(f"S.{name}", getattr(S, name))
    decay = schedules.step_decay(S.train_steps)
    histories = {}
    for label, norm, lr in progress(runs, desc="Figure 1 runs"):
        for s in range(S.seeds):
            net = resnet_at_init(S.train_depth, norm, seed + s, device)
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
            histories.setdefault((label, lr), []).append(fit(
                net, data.x, data.y, steps=S.train_steps, batch_size=S.train_batch, optimizer=opt, schedule=decay,
                generator=seeded(seed + s).data, diverge_above=1e3, eval_every=S.eval_every,
                eval_data=(data.x_test, data.y_test), augment_data=True))
    return histories


def figure1_summary(histories: dict) -> pd.DataFrame:
    """Per run of :func:`train_figure1`: where it diverged, its final training accuracy (mean of
    the last 20 mini-batches) and its final test accuracy, averaged over the seeds that did not diverge."""
    return pd.DataFrame([{
        "network": label, "lr": lr,
        "diverged at step": ", ".join(str(h.diverged_at) for h in hs if h.diverged) or "—",
        "final train acc. (last 20 batches)": np.mean([np.mean(h.accuracy[-20:]) for h in hs if not h.diverged]
                                                      or [np.nan]),
        "final test acc.": np.mean([h.evals[-1][2] for h in hs if not h.diverged and h.evals] or [np.nan]),
    } for (label, lr), hs in histories.items()]).set_index(["network", "lr"])


def figure1(histories: dict, S) -> plt.Figure:
    """Figure 1: training accuracy (running mean over ``S.eval_every`` mini-batches; a cross where
    a run diverged) and test accuracy (mean ± std over seeds) against the % of training, for the
    BN (solid) and unnormalized (dashed) runs of :func:`train_figure1`, beside the paper's final
    accuracies."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ((label, lr), hs), color in zip(histories.items(), plt.cm.tab10.colors):
        if label == "final BN only":
            continue
        style = dict(color=color, linestyle="-" if label == "BN" else "--")
        for h in hs:
            if h.diverged:
                axes[0].plot(100 * h.diverged_at / S.train_steps, 0.1, "x", color=color, markersize=10,
                             label=f"{label}, lr {lr:g}: diverged at step {h.diverged_at}")
        kept = [h for h in hs if not h.diverged]
        if not kept:
            continue
        running = np.mean([np.convolve(h.accuracy, np.ones(S.eval_every) / S.eval_every, mode="valid") for h in kept],
                          axis=0)
        axes[0].plot(100 * (np.arange(len(running)) + S.eval_every) / S.train_steps, running,
                     label=f"{label}, lr {lr:g}", **style)
        steps = 100 * np.array([e[0] for e in kept[0].evals]) / S.train_steps
        test_acc = np.array([[e[2] for e in h.evals] for h in kept])        # [seeds, evaluations]
        axes[1].plot(steps, test_acc.mean(0), marker="o", markersize=3, **style)
        axes[1].fill_between(steps, test_acc.mean(0) - test_acc.std(0), test_acc.mean(0) + test_acc.std(0),
                             color=color, alpha=0.2)
    for ax, title in zip(axes, ["training (mini-batch accuracy, running mean)", "test"]):
        ax.set_xlabel("% of training")
        ax.set_title(f"ResNet-{S.train_depth}, {title}" + (f", mean ± std of {S.seeds} seeds" if S.seeds > 1 else ""))
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize="x-small")
    axes[1].axhline(0.93, **plots.PAPER, label="paper, ResNet-110, BN lr 0.1 (≈ 93 %)")
    axes[1].axhline(0.82, **{**plots.PAPER, "color": "0.6"}, label="paper, ResNet-110, no BN lr 1e-4 (≈ 82 %)")
    axes[1].legend(fontsize="x-small")
    return fig


# ---------------------------------------------------------------------------- Figure 2
def kurtosis(values: np.ndarray):
    """E[(v − mean)⁴] / Var[v]², in the dtype of ``values`` (3 for a Gaussian)."""
    return ((values - values.mean()) ** 4).mean() / values.var() ** 2


@dataclass
class KernelGradients:
    """Figure 2: {network: the entries of ∂L/∂K of ``layer`` pooled over mini-batches}
    (``grads``); ``ratio`` is the std ratio no BN / BN (printed by ``print``)."""
    grads: dict[str, np.ndarray]
    layer: int

    @property
    def ratio(self):
        return self.grads["no BN"].std() / self.grads["BN"].std()

    def __str__(self) -> str:
        return (f"gradient std, no BN / BN: {self.ratio:.4g};  excess kurtosis: BN "
                f"{kurtosis(self.grads['BN']) - 3:.4g}, no BN {kurtosis(self.grads['no BN']) - 3:.4g}")


def measure_figure2(nets: dict, batches, layer: int) -> KernelGradients:
    """Figure 2: the gradient ∂L/∂K of ``layer`` (:func:`gradprobe.measure.kernels.kernel_gradient`)
    of each network, on each of ``batches``, pooled."""
    return KernelGradients({name: torch.cat([kernels.kernel_gradient(net, xi, yi, layer).flatten()
                                             for xi, yi in batches]).cpu().numpy()
                            for name, net in nets.items()}, layer)


def figure2(found: KernelGradients, paper_layer: int = 55) -> plt.Figure:
    """Figure 2: histograms (log counts) of the kernel-gradient entries with and without BN, each
    titled with its std and kurtosis; ``paper_layer`` names the layer in the paper's numbering."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (name, g) in zip(axes, found.grads.items()):
        ax.hist(g, bins=80, color=COLORS[name])
        ax.set_yscale("log")
        ax.set_xlabel(f"∂L/∂K entries of layer {found.layer} (paper's {paper_layer})")
        ax.set_title(f"{name}: std {g.std():.3g}, kurtosis {kurtosis(g):.3g}")
    axes[0].set_ylabel("count (log)")
    return fig


# ---------------------------------------------------------------------------- Figure 3, Appendix H
class ProbeRun(NamedTuple):
    """``ratios``: {mini-batch number: loss ratios along its gradient}; ``history``: the training run."""
    ratios: dict[int, np.ndarray]
    history: History


def probe_training_steps(model, x: torch.Tensor, y: torch.Tensor, steps, *, lr: float, batch_size: int,
                         batches=(1, 4, 7), generator: torch.Generator | None = None, momentum: float = 0.9,
                         weight_decay: float = 1e-4, diverge_above: float | None = 1e3) -> ProbeRun:
    """Figure 3's probe: train normally (SGD, momentum, weight decay,
    :func:`gradprobe.train.loop.fit`) and at the mini-batches numbered ``batches`` (1 = the first)
    scan the loss ratio along that batch's gradient (:func:`gradprobe.measure.steps.step_loss_ratios`)
    before the update is taken. A run that diverges (loss above ``diverge_above`` or not finite)
    stops and leaves the later batches out."""
    batches = sorted(set(batches))
    if not batches or batches[0] < 1:
        raise ValueError(f"mini-batch numbers start at 1, got {batches!r}")
    found = {}

    def callback(step, net, xb, yb, loss):
        if step + 1 in batches:
            found[step + 1] = step_loss_ratios(net, xb, yb, steps, use_existing_grad=True)

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = fit(model, x, y, steps=batches[-1], batch_size=batch_size, optimizer=opt, generator=generator,
                  callback=callback, diverge_above=diverge_above)
    return ProbeRun(found, history)


# (network, norm, the learning rate it is trained at in Figure 3)
FIGURE3_RUNS = (("BN", "batch", 0.1), ("no BN", None, 1e-4))


def step_sizes(points: int) -> np.ndarray:
    """The step sizes α of the Figure 3 scans: ``points`` log-spaced from 10⁻⁵ to 1."""
    return np.logspace(-5, 0, int_at_least("points", points, 2))


def probe_figure3(data: ProbeData, alphas, *, depth: int, batch_size: int, seed: int, device,
                  batches=(1, 4, 7)) -> dict[str, ProbeRun]:
    """Figure 3: for the BN network at lr 0.1 and the unnormalized one at 10⁻⁴
    (:data:`FIGURE3_RUNS`), ResNet-``depth`` trained on ``data`` with mini-batches of
    ``batch_size``, the loss ratios along the gradient at the mini-batches ``batches``
    (:func:`probe_training_steps`). Each run draws its weights and batches from ``seed``."""
    positive_int("batch_size", batch_size)
    return {name: probe_training_steps(resnet_at_init(depth, norm, seed, device), data.x, data.y, alphas, lr=lr,
                                       batch_size=batch_size, batches=batches, generator=seeded(seed).data)
            for name, norm, lr in FIGURE3_RUNS}


def figure3(probes: dict[str, ProbeRun], alphas) -> plt.Figure:
    """Figure 3: new loss / old loss after a step of size α along −∇L, one row per network, one
    panel per probed mini-batch; a red cross marks a step whose loss is not finite."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True)
    for row, (name, probe) in enumerate(probes.items()):
        for ax, (b, ratios) in zip(axes[row], sorted(probe.ratios.items())):
            finite = np.isfinite(ratios)
            ax.plot(alphas[finite], ratios[finite], **plots.OURS, color=COLORS[name])
            ax.plot(alphas[~finite], np.full((~finite).sum(), np.max(ratios[finite], initial=1.0)), "rx",
                    label="loss not finite")
            ax.axhline(1, color="0.5", linewidth=1)
            ax.set(xscale="log", yscale="log", title=f"{name}, mini-batch {b}")
            if (~finite).any():
                ax.legend(fontsize="x-small")
        axes[row, 0].set_ylabel("new loss / old loss")
    for ax in axes[1]:
        ax.set_xlabel("step size α along −∇L")
    return fig


def useful_steps(probes: dict[str, ProbeRun], alphas) -> dict[str, dict[int, float]]:
    """{network: {mini-batch: the largest step that lowers the loss}}
    (:func:`gradprobe.measure.steps.largest_useful_step`) of the Figure 3 scans."""
    return {name: {b: largest_useful_step(alphas, r) for b, r in probe.ratios.items()}
            for name, probe in probes.items()}


def useful_table(useful: dict[str, dict[int, float]]) -> pd.DataFrame:
    """:func:`useful_steps` as a table, one row per mini-batch, three significant digits."""
    return pd.DataFrame(useful).rename_axis("mini-batch").map(lambda v: f"{v:.3g}")


def scan_appendix_h(data: ProbeData, alphas, depths, *, batch_size: int, seed: int, device) -> dict[int, float]:
    """Appendix H: the largest useful step at initialization (first probe mini-batch, its first
    ``batch_size`` images) of the unnormalized ResNet of each of ``depths``."""
    positive_int("batch_size", batch_size)
    xp, yp = data.xb[:batch_size], data.yb[:batch_size]
    return {d: largest_useful_step(alphas, step_loss_ratios(resnet_at_init(d, None, seed, device), xp, yp, alphas))
            for d in depths}


def appendix_h(depth_steps: dict[int, float], bn_step: float, alphas, depth: int) -> plt.Figure:
    """Appendix H: the largest useful step against depth without BN, beside that of the BN
    ResNet-``depth`` (``bn_step``) and the end of the scanned range."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(list(depth_steps), list(depth_steps.values()), **plots.OURS, label="no BN (this book)")
    ax.axhline(bn_step, color=COLORS["BN"], linestyle="--", label=f"BN ResNet-{depth} (this book)")
    ax.axhline(alphas[-1], color="0.6", linewidth=1, label="end of the scanned range")
    ax.set(xlabel="ResNet depth (weight layers)", ylabel="largest step that lowers the loss", yscale="log",
           title="Appendix H: largest useful step at initialization")
    ax.legend()
    return fig


# ---------------------------------------------------------------------------- Figure 4
FIGURE4_LAYERS = (8, 44, 80)
PAPER_FIGURE4_BARS = {"mean": ["1.3", "3e3", "3e8"], "variance": ["1", "5e6", "5e16"]}   # its colour bars


@dataclass
class DivergenceAnatomy:
    """Figure 4: {lr: the first update of an unnormalized ResNet-``depth`` run that sent the loss
    above 10³, or None} (``updates``), searched for ``find_steps`` steps, and the
    ``sweep`` along the update at ``lr`` (None when that run did not diverge) at ``layers``
    ({paper layer 8, 44, 80: its layer here})."""
    updates: dict[float, DivergingUpdate | None]
    sweep: Sweep | None
    lr: float
    depth: int
    find_steps: int
    layers: dict[int, int]

    @property
    def update(self) -> DivergingUpdate | None:
        return self.updates[self.lr]

    def report(self, probes: dict[str, ProbeRun] | None = None) -> str:
        """What was found, one line per learning rate, then (given ``probes``) how the Figure 3
        runs went, then the loss along the swept update."""
        lines = [f"ResNet-{self.depth} without BN, lr {lr:g}: " + (
            f"no update diverged in {self.find_steps} steps" if u is None else
            f"update {u.step + 1} sends the loss on its mini-batch from {u.loss_before:.4g} to {u.loss_after:.4g}")
            for lr, u in self.updates.items()]
        for name, probe in (probes or {}).items():
            h = probe.history
            lines.append(f"ResNet-{self.depth} {name} at its Figure 3 lr: {h.steps} steps, "
                         + (f"diverged at step {h.diverged_at + 1}" if h.diverged else
                            f"loss {h.loss[0]:.4g} → {h.loss[-1]:.4g}"))
        if self.sweep is not None:
            lines.append(f"loss along the update at lr {self.lr:g}: "
                         + np.array2string(self.sweep.loss[::max(1, len(self.sweep.fractions) // 10)], precision=3))
        return "\n".join(lines)


def find_figure4_update(S, data: ProbeData, layers: dict[int, int], *, seed: int, device,
                        lrs=(0.1, 0.003)) -> DivergenceAnatomy:
    """Figure 4's update: for each of ``lrs`` and ``S.diverge_lr`` (largest first) train a fresh
    unnormalized ResNet-``S.depth`` (mini-batches of ``S.probe_batch``, at most ``S.find_steps``
    steps) until an update sends its mini-batch's loss above 10³
    (:func:`gradprobe.measure.steps.find_diverging_update`); along the update at ``S.diverge_lr``
    record the loss and the channel moments of the paper's layers 8, 44, 80 (``layers`` maps them)
    at ``S.sweep_points`` fractions 0 … 1 (:func:`gradprobe.measure.steps.interpolation_sweep`)."""
    for name in ("depth", "probe_batch", "find_steps"):
        positive_int(f"S.{name}", getattr(S, name))
    int_at_least("S.sweep_points", S.sweep_points, 2)
    positive("S.diverge_lr", S.diverge_lr)
    updates, diverged_nets = {}, {}
    for lr in sorted({*lrs, S.diverge_lr}, reverse=True):
        diverged_nets[lr] = resnet_at_init(S.depth, None, seed, device)
        updates[lr] = find_diverging_update(diverged_nets[lr], data.x, data.y, lr=lr, batch_size=S.probe_batch,
                                            max_steps=S.find_steps, generator=seeded(seed).data)
    here, sweep = {k: layers[k] for k in FIGURE4_LAYERS}, None
    if updates[S.diverge_lr] is not None:
        sweep = interpolation_sweep(diverged_nets[S.diverge_lr], updates[S.diverge_lr],
                                    np.linspace(0, 1, S.sweep_points), list(here.values()))
    return DivergenceAnatomy(updates, sweep, S.diverge_lr, S.depth, S.find_steps, here)


def finite_max(a: np.ndarray) -> float:
    """The largest finite entry of ``a``; -inf when none is finite."""
    return float(np.max(a[np.isfinite(a)], initial=-np.inf))


def figure4(anatomy: DivergenceAnatomy) -> plt.Figure:
    """Figure 4: the channel means (top) and variances (bottom) of the paper's layers 8, 44, 80
    against the % of the diverging update applied, each panel with its own colour scale."""
    sweep, layers = _swept(anatomy)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), layout="constrained")
    half = 50 / (len(sweep.fractions) - 1)
    for col, k in enumerate(FIGURE4_LAYERS):
        for row, (what, values) in enumerate([("mean", sweep.means[layers[k]]),
                                              ("variance", sweep.variances[layers[k]])]):
            ax = axes[row, col]
            im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", origin="lower", cmap="viridis",
                           extent=(-0.5, values.shape[1] - 0.5, -half, 100 + half), interpolation="nearest")
            fig.colorbar(im, ax=ax, format="%.1e" if finite_max(np.abs(values)) > 100 else "%.2f")
            ax.grid(False)
            ax.set_title(f"layer {k} ({values.shape[1]} channels): channel {what}")
            ax.set_xlabel("channel c")
    for ax in axes[:, 0]:
        ax.set_ylabel("% of the update applied")
    return fig


def _swept(anatomy: DivergenceAnatomy) -> tuple[Sweep, dict[int, int]]:
    if anatomy.sweep is None:
        raise ValueError(f"no update diverged at lr {anatomy.lr:g} in {anatomy.find_steps} steps: nothing was swept")
    return anatomy.sweep, anatomy.layers


def final_moments(anatomy: DivergenceAnatomy) -> tuple[dict[int, float], dict[int, float]]:
    """At the end of the update (100 %), per paper layer 8, 44, 80: the largest finite |channel
    mean| and the largest finite channel variance."""
    sweep, layers = _swept(anatomy)
    mean = {k: finite_max(np.abs(sweep.means[layers[k]][-1])) for k in FIGURE4_LAYERS}
    var = {k: finite_max(sweep.variances[layers[k]][-1]) for k in FIGURE4_LAYERS}
    return mean, var


def figure4_table(anatomy: DivergenceAnatomy) -> pd.DataFrame:
    """Figure 4's scales at the end of the update (:func:`final_moments`) beside the paper's colour bars."""
    mean, var = final_moments(anatomy)
    return pd.DataFrame({"largest |channel mean| at 100 %": [f"{mean[k]:.3g}" for k in FIGURE4_LAYERS],
                         "paper's colour bar, |mean|": PAPER_FIGURE4_BARS["mean"],
                         "largest channel variance at 100 %": [f"{var[k]:.3g}" for k in FIGURE4_LAYERS],
                         "paper's colour bar, variance": PAPER_FIGURE4_BARS["variance"]},
                        index=pd.Index(list(FIGURE4_LAYERS), name="layer"))


# ---------------------------------------------------------------------------- Figure 5
# Figure 5's layers in ResNet-110: every 12th from 6, and the final (classification) layer
FIGURE5_LAYERS = tuple(range(6, 103, 12)) + (110,)


def figure5_layers(depth: int) -> list[int]:
    """:data:`FIGURE5_LAYERS` mapped to a ResNet-``depth`` (a shallow one may repeat a layer)."""
    return [resnet.paper_layer(k, depth) for k in FIGURE5_LAYERS]


@dataclass
class MomentGrowth:
    """Figure 5: {network: {layer: channel moments}} (``moments``) at :func:`figure5_layers` of a
    ResNet-``depth``, and what the chapter reads off them: the RMS of each layer's output
    √(mean_c(μ_c² + σ_c²)), its growth from paper layer 6 to 102, and the output-layer RMS ratio
    no BN / BN (printed by ``print``)."""
    moments: dict[str, dict]
    depth: int

    @property
    def layers(self) -> list[int]:
        return figure5_layers(self.depth)

    @property
    def rms(self) -> dict[str, dict[int, float]]:
        return {name: {k: float((m[k].mean ** 2 + m[k].var).mean().sqrt()) for k in self.layers}
                for name, m in self.moments.items()}

    @property
    def growth(self) -> dict[str, float]:
        return {name: r[self.layers[-2]] / r[self.layers[0]] for name, r in self.rms.items()}

    @property
    def out_ratio(self) -> float:
        rms = self.rms
        return rms["no BN"][self.layers[-1]] / rms["BN"][self.layers[-1]]

    def __str__(self) -> str:
        rms, growth, out = self.rms, self.growth, self.layers[-1]
        return (f"output-layer RMS: BN {rms['BN'][out]:.4g}, no BN {rms['no BN'][out]:.4g} "
                f"(ratio {self.out_ratio:.4g})\n"
                f"RMS growth from layer 6 to layer 102: BN × {growth['BN']:.4g}, no BN × {growth['no BN']:.4g}")


def measure_figure5(nets: dict, x: torch.Tensor) -> MomentGrowth:
    """Figure 5: the channel moments (:func:`gradprobe.measure.kernels.channel_moments`) of each
    network's outputs at the layers of :func:`figure5_layers` on the batch ``x``."""
    depth = next(iter(nets.values())).depth
    layers = figure5_layers(depth)
    return MomentGrowth({name: kernels.channel_moments(net, x, layers) for name, net in nets.items()}, depth)


def figure5(found: MomentGrowth) -> plt.Figure:
    """Figure 5: |channel mean| and channel std (mean over channels, bars: their std) against the
    paper's layer number, with and without BN."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, what in zip(axes, ["|channel mean|", "channel std"]):
        for name, mom in found.moments.items():
            vals = [(mom[k].mean.abs() if what.startswith("|") else mom[k].var.sqrt()).cpu().numpy()
                    for k in found.layers]
            ax.errorbar(list(FIGURE5_LAYERS), [v.mean() for v in vals], yerr=[v.std() for v in vals],
                        capsize=3, marker="o", markersize=4, label=name)
        ax.set(yscale="log", xlabel=f"layer (paper's numbering; here ResNet-{found.depth})", title=what)
    axes[0].set_ylabel("magnitude (log)")
    axes[0].legend()
    return fig


# ---------------------------------------------------------------------------- Figure 6
class DominantClass(NamedTuple):
    """``cls``: the class most often taking an image's largest output gradient; ``share``: the
    fraction of the counted images for which it does; ``probability``: its mean gradient (= mean
    softmax probability) over those images."""
    cls: int
    share: float
    probability: float


def dominant_class_share(grads: torch.Tensor, labels: torch.Tensor | None = None) -> DominantClass:
    """Figure 6's "one yellow column": the class that most often takes the largest positive output
    gradient of an image (its strongest wrong prediction), and for how many images it does. With
    ``labels``, images of that class itself are left out of the count (their entry there is
    negative, the paper's exceptions)."""
    if grads.dim() != 2 or len(grads) == 0:
        raise ValueError(f"expected output gradients [B, classes], got shape {tuple(grads.shape)}")
    top = grads.argmax(dim=1)
    cls = int(torch.bincount(top, minlength=grads.shape[1]).argmax())
    keep = torch.ones(len(grads), dtype=torch.bool) if labels is None else labels.cpu() != cls
    if labels is not None and len(labels) != len(grads):
        raise ValueError(f"labels has {len(labels)} entries but grads {len(grads)} rows")
    if not keep.any():
        return DominantClass(cls, math.nan, math.nan)
    kept = top.cpu()[keep]
    return DominantClass(cls, float((kept == cls).float().mean()), float(grads.cpu()[keep, cls].mean()))


@dataclass
class OutputGradients:
    """Figure 6: {network: ∂L_b/∂O_{b,j} [images, classes]} (``grads``) on a batch with ``labels``;
    ``dominant``: each network's dominant class (:func:`dominant_class_share`), printed by ``print``."""
    grads: dict[str, torch.Tensor]
    labels: torch.Tensor

    @property
    def dominant(self) -> dict[str, DominantClass]:
        return {name: dominant_class_share(g, self.labels) for name, g in self.grads.items()}

    def __str__(self) -> str:
        return "\n".join(f"{name:6s}: class {d.cls} is the strongest wrong prediction for {d.share:.1%} of the "
                         f"images of other classes, with mean probability {d.probability:.3f}"
                         for name, d in self.dominant.items())


def measure_figure6(nets: dict, x: torch.Tensor, y: torch.Tensor) -> OutputGradients:
    """Figure 6: ∂L_b/∂O_{b,j} of each network on the batch (x, y)
    (:func:`gradprobe.measure.kernels.output_gradients`), on the CPU."""
    return OutputGradients({name: kernels.output_gradients(net, x, y).cpu() for name, net in nets.items()}, y)


def figure6(found: OutputGradients) -> plt.Figure:
    """Figure 6: heat maps of ∂L_b/∂O_{b,j} (one row per image, one column per class), colour
    scale −1 … 1, with and without BN."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 5.5), layout="constrained")
    for ax, (name, g) in zip(axes, found.grads.items()):
        im = ax.imshow(g.numpy(), aspect="auto", cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
        ax.set(title=name, xlabel="class j", xticks=range(10))
        ax.grid(False)
    axes[0].set_ylabel("image b in the mini-batch")
    fig.colorbar(im, ax=axes, label="∂L_b/∂O_{b,j}")
    return fig


# ---------------------------------------------------------------------------- Table 1
# bjorck2018, Table 1: (network, layer) -> (a, b, a/b)
PAPER_TABLE1 = {("BN", 18): (7.5e-05, 3.0e-07, 251.8), ("BN", 54): (1.9e-05, 1.7e-07, 112.8),
                ("BN", 90): (6.6e-06, 1.6e-07, 40.7), ("no BN", 18): (6.3e-05, 3.6e-05, 1.7),
                ("no BN", 54): (2.2e-04, 8.4e-05, 2.6), ("no BN", 90): (2.6e-04, 1.2e-04, 2.1)}


def table1(nets: dict, batches, layers: dict[int, int]) -> pd.DataFrame:
    """Table 1: a = Σ|d| and b = |Σ d| of the kernel gradient's summands (Eq. 4,
    :func:`gradprobe.measure.kernels.gradient_sums`) at the paper's layers 18, 54, 90 (``layers``
    maps them), averaged over ``batches``, beside the paper's; indexed by (network, layer)."""
    rows = []
    for name, net in nets.items():
        sums = [kernels.gradient_sums(net, xi, yi, [layers[18], layers[54], layers[90]]) for xi, yi in batches]
        for k in (18, 54, 90):
            a, b = np.mean([s[layers[k]].a for s in sums]), np.mean([s[layers[k]].b for s in sums])
            pa, pb, pr = PAPER_TABLE1[(name, k)]
            rows.append({"network": name, "layer": k, "a": a, "b": b, "a/b": a / b,
                         "paper a": pa, "paper b": pb, "paper a/b": pr})
    return pd.DataFrame(rows).set_index(["network", "layer"])


# ---------------------------------------------------------------------------- Figure 7
class ChannelMaps(NamedTuple):
    """Figure 7: {network: M [in channels, out channels]} and {network: share of ‖M‖²_F in the top
    singular value}."""
    maps: dict[str, torch.Tensor]
    shares: dict[str, float]


def measure_figure7(nets: dict, x: torch.Tensor, y: torch.Tensor, layer: int) -> ChannelMaps:
    """Figure 7: M_{i,o} = Σ_{x',y'} |∂L/∂K_{o,i,x',y'}| at ``layer`` of each network
    (:func:`gradprobe.measure.kernels.channel_gradient_map`) and its top singular share
    (:func:`~gradprobe.measure.kernels.top_singular_share`)."""
    maps = {name: kernels.channel_gradient_map(net, x, y, layer).cpu() for name, net in nets.items()}
    return ChannelMaps(maps, {name: kernels.top_singular_share(m) for name, m in maps.items()})


def figure7(found: ChannelMaps) -> plt.Figure:
    """Figure 7: the channel-gradient maps M as heat maps, titled with their top singular share."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for ax, (name, m) in zip(axes, found.maps.items()):
        im = ax.imshow(m.numpy(), cmap="viridis", interpolation="nearest")
        ax.grid(False)
        fig.colorbar(im, ax=ax, format="%.1e")
        ax.set(title=f"{name}: top singular value holds {found.shares[name]:.1%} of ‖M‖²",
               xlabel="output channel o", ylabel="input channel i")
    return fig


# ---------------------------------------------------------------------------- Figures 8, 9, Appendix K
THEOREM1_MS = (1, 3, 5)    # the numbers of factors M of Figures 8 and 9


def figure8(Ms=THEOREM1_MS) -> plt.Figure:
    """Figure 8: Theorem 1's Fuss–Catalan densities ρ_M(x)
    (:func:`gradprobe.theory.random_matrices.fuss_catalan_density`) for each M of ``Ms``, log-log,
    beside the closed-form Marchenko–Pastur law (M = 1)."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs = np.concatenate([np.logspace(-4, 0, 200), np.linspace(1, 15, 400)])
    for M in Ms:
        ax.plot(xs, rm.fuss_catalan_density(xs, M), label=f"M = {M} (support up to {rm.fuss_catalan_support(M):.3g})")
    mp = xs[xs < 4]
    ax.plot(mp, np.sqrt((4 - mp) / mp) / (2 * np.pi), **plots.THEORY, label="Marchenko–Pastur, closed form (= M = 1)")
    ax.set(xscale="log", yscale="log", ylim=(1e-3, 30), xlabel="squared singular value x",
           ylabel="density ρ_M(x)", title="Theorem 1: Fuss–Catalan densities")
    ax.legend()
    return fig


@dataclass
class Theorem1Moments:
    """{k: {M: E[x^k] under ρ_M}} for k = 0 (the total mass), 1 and 2 (printed by ``print``)."""
    moments: dict[int, dict[int, float]]

    @property
    def mass(self) -> dict[int, float]:
        return self.moments[0]

    def __str__(self) -> str:
        fmt = lambda k, digits: str({M: f"{v:.{digits}f}" for M, v in self.moments[k].items()})
        return " ".join(["∫ρ_M:", fmt(0, 10), " E[x]:", fmt(1, 6), " E[x²]:", fmt(2, 6)])


def theorem1_moments(Ms=THEOREM1_MS) -> Theorem1Moments:
    """The mass (1), mean (1) and second moment (M + 1) of ρ_M for each M of ``Ms``, by
    quadrature (:func:`gradprobe.theory.random_matrices.fuss_catalan_moment`)."""
    return Theorem1Moments({k: {M: rm.fuss_catalan_moment(k, M) for M in Ms} for k in (0, 1, 2)})


@dataclass
class Figure9:
    """Figure 9: {M: squared singular values [repeats, N]} of products of M Gaussian N × N
    matrices (``squared``) and their Kolmogorov–Smirnov distance to Theorem 1 (``ks``)."""
    squared: dict[int, np.ndarray]
    ks: dict[int, float]
    N: int
    repeats: int


def sample_figure9(N: int, repeats: int, generator: torch.Generator, Ms=THEOREM1_MS) -> Figure9:
    """Figure 9: ``repeats`` products of M N × N Gaussian matrices for each M of ``Ms``
    (:func:`gradprobe.theory.random_matrices.product_squared_singular_values`, from ``generator``)
    and the KS distance of their squared singular values to Theorem 1
    (:func:`~gradprobe.theory.random_matrices.ks_distance`)."""
    squared = {M: rm.product_squared_singular_values(N, M, repeats, generator=generator) for M in Ms}
    return Figure9(squared, {M: rm.ks_distance(v, M) for M, v in squared.items()}, N, repeats)


def figure9(found: Figure9) -> plt.Figure:
    """Figure 9: histograms of the singular values s (not squared) of each M, beside Theorem 1's
    density p(s) = 2s ρ_M(s²), titled with the KS distance."""
    fig, axes = plt.subplots(1, len(found.squared), figsize=(13, 3.6))
    for ax, (M, sq) in zip(axes, found.squared.items()):
        s = np.sqrt(sq.ravel())
        heights, _, _ = ax.hist(s, bins=50, density=True, color="tab:blue", alpha=0.6,
                                label=f"N = {found.N}, {found.repeats} repeats")
        grid = np.linspace(1e-3, s.max() * 1.02, 400)
        ax.plot(grid, rm.singular_value_density(grid, M), **plots.THEORY, label="Theorem 1, p(s) = 2s ρ_M(s²)")
        ax.set_ylim(0, 1.3 * heights.max())        # for M > 1 the density diverges at s → 0
        ax.set(title=f"M = {M}: KS distance {found.ks[M]:.3g}", xlabel="singular value s", ylabel="density")
        ax.legend(fontsize="x-small")
    return fig


@dataclass
class Conditioning:
    """Appendix K: condition numbers κ [len(Ms), repeats] of products of M N × N Gaussian
    matrices, their median per M and the fitted growth per factor exp(slope of log median)
    (printed by ``print``)."""
    Ms: tuple
    N: int
    kappa: np.ndarray

    @property
    def median(self) -> np.ndarray:
        return np.median(self.kappa, axis=1)

    @property
    def per_factor(self) -> float:
        return float(np.exp(np.polyfit(self.Ms, np.log(self.median), 1)[0]))

    def __str__(self) -> str:
        median = np.array2string(self.median, precision=3)
        return f"median κ: {median} ; growth per factor ≈ × {self.per_factor:.3g}"


def measure_appendix_k(Ms, N: int, repeats: int, generator: torch.Generator) -> Conditioning:
    """Appendix K: ``repeats`` condition numbers s_max/s_min per M of ``Ms``
    (:func:`gradprobe.theory.random_matrices.condition_numbers`, from ``generator``)."""
    if len(Ms) < 2:
        raise ValueError(f"Appendix K's growth needs at least two numbers of factors, got Ms={Ms!r}")
    return Conditioning(Ms, N, rm.condition_numbers(Ms, N, repeats, generator=generator))


def appendix_k(found: Conditioning) -> plt.Figure:
    """Appendix K: every condition number (grey dots) and their median against the number of factors M."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(found.Ms, found.kappa, ".", color="0.6")
    ax.plot(found.Ms, found.median, **plots.OURS, label=f"median of {found.kappa.shape[1]}, N = {found.N}")
    ax.set(yscale="log", xlabel="number of factors M", ylabel="condition number s_max/s_min",
           title="Appendix K: conditioning of a random linear network")
    ax.legend()
    return fig


# ---------------------------------------------------------------------------- Appendix E
def appendix_e(histories: dict, S) -> plt.Figure:
    """Appendix E: test accuracy against the % of training of every run of :func:`train_figure1`
    that did not diverge (BN everywhere, at the end only, nowhere), beside the paper's 90.1 % of
    the network with one BN at the end."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for (label, lr), hs in histories.items():
        kept = [h for h in hs if not h.diverged and h.evals]
        if not kept:
            continue
        steps = 100 * np.array([e[0] for e in kept[0].evals]) / S.train_steps
        ax.plot(steps, np.mean([[e[2] for e in h.evals] for h in kept], axis=0), marker="o", markersize=3,
                linestyle="-" if label != "no BN" else "--", label=f"{label}, lr {lr:g}")
    ax.axhline(0.901, **plots.PAPER, label="paper, final BN only, ResNet-110 (90.1 %)")
    ax.set(xlabel="% of training", ylabel="test accuracy",
           title=f"ResNet-{S.train_depth}: BN everywhere, at the end only, nowhere")
    ax.legend(fontsize="x-small")
    return fig


def final_accuracies(summary: pd.DataFrame) -> dict[str, str]:
    """{"<network>, lr <lr>": final test accuracy} from :func:`figure1_summary`, three decimals."""
    return {f"{label}, lr {lr:g}": f"{a:.3f}" for (label, lr), a in summary["final test acc."].items()}


# ---------------------------------------------------------------------------- Paper vs this book
def check_claims(S, *, summary: pd.DataFrame, probes: dict[str, ProbeRun], anatomy: DivergenceAnatomy,
                 grads: KernelGradients, useful: dict, depth_steps: dict[int, float], moments: MomentGrowth,
                 out_grads: OutputGradients, table: pd.DataFrame, maps: ChannelMaps,
                 theorem1: Theorem1Moments, fig9: Figure9, conditioning: Conditioning) -> Claims:
    """The chapter's "paper vs this book" table: each figure's and table's statement in the paper
    checked against the results of this chapter's drivers (``summary``: :func:`figure1_summary`;
    ``table``: :func:`table1`; the others as their names say), in the order of the chapter."""
    claims = Claims("bjorck2018")
    _claims_figure1(claims, S, summary, probes, anatomy)
    _claims_steps(claims, S, grads, useful, depth_steps, anatomy)
    _claims_init(claims, moments, out_grads.dominant, table, maps)
    _claims_random_matrices(claims, theorem1, fig9, conditioning)
    acc = summary["final test acc."]
    e_acc = acc[("final BN only", 0.03)]
    claims.holds(f"App. E: BN at the end only lands between no BN and full BN (ResNet-{S.train_depth})",
                 "90.1 % at lr 0.03 (no BN 1e-4 ≈ 82 %, BN 0.1 ≈ 93 %)",
                 f"{e_acc:.3f} (no BN {acc[('no BN', 1e-4)]:.3f}, BN {acc[('BN', 0.1)]:.3f})",
                 bool(acc[("no BN", 1e-4)] < e_acc < acc[("BN", 0.1)]),
                 criterion="no BN@1e-4 < final BN@0.03 < BN@0.1 (test accuracy)",
                 source="bjorck2018, Sec. 4 and App. E")
    return claims


def _claims_figure1(claims, S, summary, probes, anatomy) -> None:
    """Figure 1: which learning rates each network survives, and what accuracy they buy."""
    bn_ok = not probes["BN"].history.diverged and not probes["no BN"].history.diverged
    nobn_div = [lr for lr in (0.1, 0.003) if anatomy.updates[lr] is not None]
    claims.holds(f"Fig. 1: ResNet-{S.depth} without BN diverges at lr 0.1 and 0.003; BN at 0.1 and no BN at 1e-4 train",
                 "no BN diverges at lr ≥ 0.003, trains at 1e-4; BN trains at 0.1",
                 f"no BN diverges at {', '.join(f'{lr:g}' for lr in nobn_div) or 'neither'}; first 7 steps of BN@0.1, "
                 f"no-BN@1e-4 {'finite' if bn_ok else 'diverge'}",
                 bool(bn_ok and len(nobn_div) == 2),
                 criterion=f"loss > 10³ within {S.find_steps} steps; ≤ 10³ for 7 steps",
                 source="bjorck2018, Fig. 1 and Sec. 2")
    acc = summary["final test acc."]
    claims.holds(f"Fig. 1: with BN, the larger rates 0.1 and 0.003 beat 1e-4 (ResNet-{S.train_depth})",
                 "93 % (0.1), 90.5 % (0.003), 81 % (1e-4)",
                 ", ".join(f"{acc[('BN', lr)]:.3f} ({lr:g})" for lr in (0.1, 0.003, 1e-4)),
                 bool(acc[("BN", 0.1)] > acc[("BN", 1e-4)] and acc[("BN", 0.003)] > acc[("BN", 1e-4)]),
                 criterion="acc(0.1) and acc(0.003) > acc(1e-4)", source="bjorck2018, Fig. 1")
    claims.holds(f"Fig. 1: at the same lr 1e-4, BN and no BN reach about the same accuracy (ResNet-{S.train_depth})",
                 "≈ 81 % vs ≈ 82 %", f"{acc[('BN', 1e-4)]:.3f} vs {acc[('no BN', 1e-4)]:.3f}",
                 bool(abs(acc[("BN", 1e-4)] - acc[("no BN", 1e-4)]) <= 0.05), criterion="within 5 points",
                 source="bjorck2018, Fig. 1", note="a short run: both have barely left chance")


def _claims_steps(claims, S, grads, useful, depth_steps, anatomy) -> None:
    """Figures 2–4 and Appendix H: gradient size, the largest useful step, the diverging update."""
    grad_ratio = grads.ratio
    claims.holds("Fig. 2: no-BN gradients at layer 55 are ~100× larger",
                 "almost two orders of magnitude", f"× {grad_ratio:.3g}", bool(grad_ratio >= 10),
                 criterion="std ratio ≥ 10", source="bjorck2018, Fig. 2")
    step_ratio = useful["BN"][1] / useful["no BN"][1]
    claims.holds("Fig. 3: BN tolerates 10–100× larger steps than no BN at initialization",
                 "no BN: minimum near 2e-4; BN: falls up to ~2e-2 … 0.1",
                 f"largest useful step BN {useful['BN'][1]:.3g}, no BN {useful['no BN'][1]:.3g} (× {step_ratio:.3g})",
                 bool(step_ratio >= 10), criterion="ratio ≥ 10", source="bjorck2018, Fig. 3")
    later = [useful["no BN"].get(b, float("nan")) for b in (4, 7)]
    claims.holds("Fig. 3: without BN, large steps still raise the loss at mini-batches 4 and 7",
                 "networks without BN show divergence for larger step sizes (x-axis up to ≈ 0.2)",
                 "largest useful step " + ", ".join(f"{v:.3g}" for v in later),
                 bool(all(v < 0.01 for v in later)), criterion="largest useful step < 0.01 at batches 4 and 7",
                 source="bjorck2018, Fig. 3", note="ours has shed its initial output scale after one step")
    dsteps = list(depth_steps.values())
    claims.holds("App. H: the largest useful step falls with depth (no BN)", "shallower nets allow larger lr",
                 ", ".join(f"{d}: {v:.3g}" for d, v in depth_steps.items()),
                 bool(all(a >= b for a, b in zip(dsteps, dsteps[1:])) and dsteps[0] > dsteps[-1]),
                 criterion="non-increasing in depth, deepest < shallowest", source="bjorck2018, Sec. 3 and App. H")
    swept = anatomy.sweep is not None
    final_var = final_moments(anatomy)[1] if swept else None
    var_ratio = final_var[80] / final_var[8] if swept else float("nan")
    claims.holds("Fig. 4: along the diverging update, layer 80's variance ≫ layer 8's",
                 "colour bars: 5e16 vs 1", f"× {var_ratio:.3g}", bool(var_ratio >= 1e6),
                 criterion="max variance at 100 %, layer 80 / layer 8 ≥ 1e6", source="bjorck2018, Fig. 4")
    paper_bars = {8: 1.0, 44: 5e6, 80: 5e16}
    bar_gap = max(abs(math.log10(final_var[k] / v)) for k, v in paper_bars.items()) if swept else float("nan")
    claims.holds("Fig. 4: variances at the end of the update match the paper's colour bars",
                 "≈ 1, 5e6, 5e16 at layers 8, 44, 80",
                 ", ".join(f"{final_var[k]:.2g}" for k in (8, 44, 80)) if swept else "no diverging update",
                 bool(bar_gap <= 2), criterion="each within 10² of the paper's", source="bjorck2018, Fig. 4",
                 note=f"at lr {S.diverge_lr:g} [recon]")


def _claims_init(claims, moments, dominant, table, maps) -> None:
    """Figures 5–7 and Table 1: the unnormalized network at initialization."""
    out_ratio, growth = moments.out_ratio, moments.growth
    claims.holds("Fig. 5: the unnormalized output is ≥ 10× larger than the normalized one",
                 "output scales up to 10²", f"RMS × {out_ratio:.3g}", bool(out_ratio >= 10),
                 criterion="output RMS ratio ≥ 10", source="bjorck2018, Fig. 5 and Sec. 4")
    claims.holds("Fig. 5: moments grow with depth without BN, stay flat with BN",
                 "no BN: ~exponential growth; BN: roughly constant",
                 f"layer 6 → 102: no BN × {growth['no BN']:.3g}, BN × {growth['BN']:.3g}",
                 bool(growth["no BN"] >= 100 and growth["BN"] <= 10), criterion="no BN ≥ 100×, BN ≤ 10×",
                 source="bjorck2018, Fig. 5")
    claims.holds("Fig. 6: without BN one class is the strongest wrong prediction for almost every image",
                 "one column positive for almost all images", f"{dominant['no BN'].share:.1%}",
                 bool(dominant["no BN"].share >= 0.9), criterion="≥ 90 % of the images of other classes",
                 source="bjorck2018, Fig. 6")
    claims.holds("Fig. 6: with BN no class dominates",
                 "positive gradients distributed throughout all classes", f"{dominant['BN'].share:.1%}",
                 bool(dominant["BN"].share < 0.5), criterion="< 50 % of the images of other classes",
                 source="bjorck2018, Fig. 6")
    ab = table["a/b"]
    claims.holds("Table 1: no BN, a/b ≤ 3 at layers 18, 54, 90", "1.7, 2.6, 2.1",
                 ", ".join(f"{v:.3g}" for v in ab.loc["no BN"]), bool((ab.loc["no BN"] <= 3).all()),
                 criterion="all ≤ 3", source="bjorck2018, Table 1")
    claims.holds("Table 1: BN, a/b ≥ 20 at layers 18, 54, 90", "251.8, 112.8, 40.7",
                 ", ".join(f"{v:.3g}" for v in ab.loc["BN"]), bool((ab.loc["BN"] >= 20).all()),
                 criterion="all ≥ 20", source="bjorck2018, Table 1")
    sep = float((ab.loc["BN"] / ab.loc["no BN"]).min())
    claims.holds("Table 1: a/b is far larger with BN than without, at every layer",
                 "differ by a factor of 10² (BN) vs agree within a factor 2 (no BN)", f"BN/no-BN ratio ≥ {sep:.3g}",
                 bool(sep >= 5), criterion="BN a/b ≥ 5 × no-BN a/b at 18, 54, 90", source="bjorck2018, Sec. 4")
    shares = maps.shares
    claims.holds("Fig. 7: no-BN channel-gradient map at layer 45 is close to rank one",
                 "dominant low-rank structure, less with BN",
                 f"1 − top share: no BN {1 - shares['no BN']:.3g}, BN {1 - shares['BN']:.3g}",
                 bool(shares["no BN"] >= 0.95 and (1 - shares["BN"]) >= 5 * (1 - shares["no BN"])),
                 criterion="no BN share ≥ 95 % and BN's remainder ≥ 5× no BN's", source="bjorck2018, Fig. 7")


def _claims_random_matrices(claims, theorem1, fig9, conditioning) -> None:
    """Theorem 1, Figure 9 and Appendix K: products of random matrices."""
    claims.close("Thm. 1: ρ_M integrates to 1 (M = 5)", 1.0, theorem1.mass[5], abs=1e-6, source="bjorck2018, Thm. 1")
    ks = fig9.ks
    claims.holds("Fig. 9: N = 1000 products match Theorem 1 (M = 1, 3, 5)", "histograms follow the density",
                 ", ".join(f"KS {ks[M]:.3g}" for M in (1, 3, 5)), bool(max(ks.values()) <= 0.02),
                 criterion="KS ≤ 0.02", source="bjorck2018, Figs. 8 and 9")
    med, per_factor = conditioning.median, conditioning.per_factor
    claims.holds("App. K: the condition number grows with the number of factors", "grows with depth",
                 f"× {per_factor:.3g} per factor", bool(np.all(np.diff(med) > 0) and per_factor > 10),
                 criterion="median increasing, > 10× per factor", source="bjorck2018, Sec. 5 and App. K")
