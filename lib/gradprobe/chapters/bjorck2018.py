"""Chapter *Understanding batch normalization* (Bjorck et al. 2018): settings, experiment drivers,
figure functions and claims of notebook ``03_bjorck2018``, in the order of the notebook. The
measurements themselves are core (:mod:`gradprobe.measure.kernels`, :mod:`gradprobe.measure.steps`,
:mod:`gradprobe.theory.random_matrices`); training runs are :mod:`gradprobe.sweep` trials.

- settings, data, networks: :func:`settings`, :func:`cost`, :func:`load_data`, :func:`weights`,
  :func:`network`, :func:`paper_layers`
- the calibration (which unnormalized network): :func:`measure_at_init`, :func:`first_edition`,
  :func:`measure_variants`, :func:`variants_table`, :func:`figure_calibration`, :func:`five_numbers`,
  :func:`check_calibration`
- Figure 1 and Appendix E: the learning-rate window (:class:`WindowRun`, :func:`window_run`,
  :func:`run_window`, :func:`classify`, :func:`figure_window`, :func:`window_table`) and the
  training runs (:class:`TrainRun`, :func:`train_run`, :func:`run_training`, :func:`figure1`,
  :func:`training_table`), :func:`check_figure1`
- Figure 2: :func:`figure2`, :func:`check_figure2`
- Figure 3 and Appendix H: :func:`probe`, :func:`figure3_trajectory`, :func:`figure3`,
  :func:`scan_appendix_h`, :func:`appendix_h`, :func:`check_figure3`
- Figure 4: :func:`find_figure4_updates`, :func:`figure4`, :func:`figure4_table`, :func:`check_figure4`
- Figure 5: :func:`figure5`, :func:`check_figure5`; Figure 6: :func:`dominant_class`,
  :func:`sign_agreement`, :func:`figure6`, :func:`check_figure6`; Table 1: :func:`table1`,
  :func:`check_table1`; Figure 7: :func:`figure7`, :func:`check_figure7`
- Figures 8, 9 and Appendix K: :func:`figure8`, :func:`theorem1_moments`, :func:`sample_figure9`,
  :func:`figure9`, :func:`measure_appendix_k`, :func:`appendix_k`, :func:`check_random_matrices`

Networks are keyed by ``"BN"``, ``"no BN"`` and ``"final BN only"`` (Appendix E); layers by the
paper's numbers in ResNet-110 (``paper_layers(depth)`` maps them to the network at hand). Every
measurement at initialization is repeated over weight seeds (seed ``s`` draws the weights of
:func:`weights`, shared by the BN and the unnormalized network, and the probe batch ``s``); the
claims are decided over those seeds. Figure functions return the matplotlib Figure; the
``check_*`` functions take the chapter's :class:`gradprobe.book.page.Page` (anything with
``claims`` and ``glue``), add the rows of their section and glue the numbers the prose quotes.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import sweep
from ..book import plots, scales
from ..book.claims import (MACHINERY, PAPER, RECONSTRUCTION, Estimate, all_of, at_least, at_most, close,
                           difference_at_least, not_testable, ordered)
from ..checks import int_at_least, positive_int
from ..data import tensors
from ..measure import kernels
from ..measure.steps import find_diverging_update, interpolation_sweep, largest_useful_step, step_loss_ratios
from ..networks import resnet
from ..theory import random_matrices as rm
from ..train import schedules
from ..train.loop import evaluate, fit

__all__ = ["NETWORKS", "WINDOW_NETWORKS", "COLORS", "PAPER_LRS", "DIVERGENCE", "settings", "cost", "ProbeData",
           "load_data", "weights", "network", "PAPER_LAYERS", "paper_layers", "FIGURE5_LAYERS", "figure5_layers",
           "kurtosis", "AtInit", "measure_at_init", "first_edition", "VARIANTS", "measure_variants",
           "variants_table", "figure_calibration", "five_numbers", "check_calibration", "step_sizes", "WindowRun",
           "window_run", "classify", "Window", "run_window", "figure_window", "window_table", "TrainRun",
           "train_run", "Training", "run_training", "figure1", "training_table", "PAPER_ACCURACY", "check_figure1",
           "figure2", "check_figure2", "Probe", "probe", "figure3_trajectory", "figure3", "scan_appendix_h",
           "appendix_h", "check_figure3", "FIGURE4_LAYERS", "PAPER_FIGURE4_BARS", "Anatomy", "find_figure4_updates",
           "figure4", "figure4_table", "check_figure4", "figure5", "check_figure5", "dominant_class",
           "sign_agreement", "figure6", "check_figure6", "PAPER_TABLE1", "table1", "check_table1", "figure7",
           "check_figure7", "THEOREM1_MS", "figure8", "Theorem1Moments", "theorem1_moments", "Figure9",
           "sample_figure9", "figure9", "Conditioning", "measure_appendix_k", "appendix_k", "check_random_matrices"]

NETWORKS = {"BN": "batch", "no BN": None}                       # the two networks at initialization
WINDOW_NETWORKS = {"BN": "batch", "final BN only": "final", "no BN": None}   # and Appendix E's
COLORS = {"BN": "tab:blue", "no BN": "tab:orange", "final BN only": "tab:green"}
PAPER_LRS = (0.1, 0.003, 0.001, 0.0003, 0.0001, 0.00003)         # bjorck2018, Sec. 1.2
DIVERGENCE = 1e3           # "network divergence: the loss of a mini-batch increases beyond 10^3" (Sec. 3)
CLASSES = 10
UNIFORM_NATS = 0.25        # collapse: the loss within this many nats of a uniform guess, ln 10 ...
COLLAPSE_SPREAD = 0.01     # ... and the logits' spread across images below 1 % of its initial value
FIG3_ALPHA = 3e-3          # where the paper's Figure 3 no-BN curve has passed 10^6 (read off the figure)
SCAN_BATCHES = (1, 4, 7)   # the mini-batches of Figure 3

_NOTES = {
    "depth": "ResNet depth at initialization and in the learning-rate window (the paper's 110)",
    "init": "Xavier, every conv and the classifier (the paper: 'Xavier initialization, which we use')",
    "inputs": "He et al.'s per-pixel mean subtracted from pixels on the [0, 1] scale (scale: ours)",
    "n_train": "CIFAR-10 training images drawn for this run",
    "n_test": "test images for the accuracies",
    "batch": "mini-batch at initialization (the paper's 128)",
    "init_seeds": "weight seeds (each with its own mini-batch) of everything at initialization",
    "variant_seeds": "seeds of the calibration's variants",
    "window_lrs": "the paper's learning-rate grid and App. E's 0.03",
    "window_batch": "mini-batch of the window's runs, the Fig. 3 probes, Figs. 4 and App. H (paper: 128)",
    "window_steps": "mini-batches of each window run (short: divergence comes in the first few)",
    "window_seeds": "seeds per network and learning rate",
    "probe_lrs": "no-BN rates of the Fig. 3 probe, in order of preference (the paper's first)",
    "step_points": "step sizes of the Fig. 3 and App. H scans, log-spaced 1e-5 … 1",
    "diverge_lr": "the no-BN rate whose first update Fig. 4 dissects (the paper does not say)",
    "find_steps": "SGD steps searched for a diverging update",
    "sweep_points": "fractions of that update, 0 … 100 %",
    "fig4_seeds": "seeds of Fig. 4",
    "appH_depths": "depths of the App. H scan",
    "train_depth": "ResNet depth of the training runs (paper: 110)",
    "train_runs": "(network, learning rate) of the training runs; paper: Fig. 1's and App. E's",
    "train_steps": "SGD steps per run (paper: 165, 1320, 2400, 2400, 165 epochs of 391 steps)",
    "train_batch": "mini-batch of the training runs (the paper's 128)",
    "train_seeds": "seeds per training run (the paper averages 5)",
    "schedule": "learning rate ÷10 at 50 % and 75 % of a run (He et al.'s), or constant",
    "augment": "random crops and flips (He et al.'s)",
    "rm_N": "matrix size of Fig. 9 (the paper's 1000)",
    "rm_repeats": "products per M (the paper's 10)",
    "cond_N": "matrix size of App. K",
    "cond_Ms": "numbers of factors of App. K",
    "cond_repeats": "chains of products of App. K",
}


def settings(scale: str) -> scales.Settings:
    """The chapter's settings at ``scale`` (smoke, book, paper), with a note per setting."""
    window_lrs = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.03, 0.1)
    epoch = 391                                    # steps of 128 per pass over 50,000 images
    return scales.settings(
        scale,
        book=dict(depth=110, init="xavier", inputs="pixel-mean", n_train=5000, n_test=2000, batch=128,
                  init_seeds=8, variant_seeds=4, window_lrs=window_lrs, window_batch=32, window_steps=7,
                  window_seeds=3, probe_lrs=(1e-4, 3e-5), step_points=11, diverge_lr=3e-3, find_steps=5,
                  sweep_points=21, fig4_seeds=3, appH_depths=(20, 32, 56, 110), train_depth=20,
                  train_runs=(("BN", 0.03), ("no BN", 0.03)), train_steps=300, train_batch=32, train_seeds=3,
                  schedule="constant", augment=False, rm_N=1000, rm_repeats=10, cond_N=200,
                  cond_Ms=(1, 2, 3, 4, 5, 6, 7, 8), cond_repeats=100),
        smoke=dict(depth=8, n_train=512, n_test=256, batch=32, init_seeds=3, variant_seeds=2, window_batch=16,
                   window_steps=7, window_seeds=2, step_points=6, find_steps=2, sweep_points=6, fig4_seeds=2,
                   appH_depths=(8, 14), train_depth=8, train_steps=12, train_seeds=2, rm_N=200, rm_repeats=2, cond_N=50,
                   cond_Ms=(1, 2, 3, 4), cond_repeats=10),
        paper=dict(n_train=50000, n_test=10000, init_seeds=20, variant_seeds=8, window_batch=128, window_steps=50,
                   window_seeds=5, step_points=21, find_steps=50, sweep_points=51, fig4_seeds=5, train_depth=110,
                   train_runs=(("BN", 0.1), ("BN", 0.003), ("BN", 1e-4), ("no BN", 1e-4), ("final BN only", 0.03)),
                   train_steps=(165 * epoch, 1320 * epoch, 2400 * epoch, 2400 * epoch, 165 * epoch),
                   train_batch=128, train_seeds=5, schedule="step", augment=True, cond_N=500, cond_repeats=200),
        notes=_NOTES)


def _steps_of(S) -> list[int]:
    """The number of steps of each of ``S.train_runs`` (``S.train_steps``: one for all, or one each)."""
    steps = S.train_steps if isinstance(S.train_steps, (tuple, list)) else (S.train_steps,) * len(S.train_runs)
    if len(steps) != len(S.train_runs):
        raise ValueError(f"train_steps gives {len(steps)} lengths for {len(S.train_runs)} runs")
    return [positive_int("train_steps", s) for s in steps]


def cost(S) -> float:
    """The chapter's work in GFLOP, roughly: a ResNet's forward pass costs ≈ 2.3 MFLOP per weight
    layer and image (its three stages cost the same), a training step three forward passes; the
    random matrices 2N³ per product and ≈ 10N³ per decomposition. Diverging window runs stop early,
    so the window's count is an upper bound."""
    layer = 2.3e-3                                               # GFLOP per layer and image, forward
    init = S.init_seeds * 2 * S.batch * S.depth * layer * 4 + S.variant_seeds * 4 * S.batch * S.depth * layer
    window = 3 * len(S.window_lrs) * S.window_seeds * S.window_steps * S.window_batch * S.depth * layer * 3
    scans = 3 * S.window_seeds * 3 * S.step_points * S.window_batch * S.depth * layer
    app_h = S.window_seeds * S.step_points * S.window_batch * sum(S.appH_depths) * layer
    fig4 = S.fig4_seeds * (S.find_steps * 3 + S.sweep_points) * S.window_batch * S.depth * layer
    train = sum(S.train_seeds * n * S.train_batch * S.train_depth * layer * 3 for n in _steps_of(S))
    train += len(S.train_runs) * S.train_seeds * S.n_test * S.train_depth * layer
    matrices = 3 * S.rm_repeats * 12 * S.rm_N ** 3 + S.cond_repeats * max(S.cond_Ms) * 12 * S.cond_N ** 3
    return init + window + scans + app_h + fig4 + train + matrices / 1e9


# ---------------------------------------------------------------------------- data and networks
@dataclass
class ProbeData:
    """The chapter's CIFAR-10 images, prepared as ``inputs`` says (:func:`gradprobe.data.tensors.preprocess`):
    training (``x``, ``y``) and test (``x_test``, ``y_test``) subsets, and ``batches``: one
    mini-batch per weight seed for the measurements at initialization, drawn through a random
    permutation of the training subset."""
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    batches: list
    inputs: str


@functools.lru_cache(maxsize=2)
def _images(n_train: int, n_test: int, inputs: str, data_seed: int):
    """The subsets of :func:`load_data`, on the CPU (cached: the runs of a sweep share them)."""
    data = tensors.cifar10_tensors(n_train, n_test, "cpu", generator=torch.Generator().manual_seed(data_seed))
    return (tensors.preprocess(data.train_x, inputs), data.train_y,
            tensors.preprocess(data.test_x, inputs), data.test_y)


def load_data(S, seed: int, device) -> ProbeData:
    """``S.n_train`` training and ``S.n_test`` test images of CIFAR-10 (drawn with ``seed``),
    prepared as ``S.inputs`` says, and ``S.init_seeds`` mini-batches of ``S.batch`` images."""
    for name in ("n_train", "n_test", "batch", "init_seeds"):
        positive_int(f"S.{name}", getattr(S, name))
    if S.batch * S.init_seeds > S.n_train:
        raise ValueError(f"{S.init_seeds} mini-batches of {S.batch} need {S.batch * S.init_seeds} training "
                         f"images, n_train is {S.n_train}")
    x, y, x_test, y_test = (t.to(device) for t in _images(S.n_train, S.n_test, S.inputs, seed))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 1)).to(device)
    chosen = [(x[order[i * S.batch:(i + 1) * S.batch]], y[order[i * S.batch:(i + 1) * S.batch]])
              for i in range(S.init_seeds)]
    return ProbeData(x, y, x_test, y_test, chosen, S.inputs)


def weights(seed: int) -> torch.Generator:
    """The weight stream of seed ``seed``: the one a :mod:`gradprobe.sweep` trial with that
    ``seed`` field draws its network from (:func:`gradprobe.sweep.seed_trial`)."""
    return sweep.seed_trial({"seed": seed}, fields=("seed",)).weights


def network(depth: int, name: str, seed: int, device="cpu", init: str = "xavier", **options) -> resnet.CifarResNet:
    """The CIFAR ResNet ``name`` ("BN", "no BN", "final BN only") of ``depth`` with the weights of
    ``seed`` (:func:`weights`: the networks of one seed share their conv weights); ``options`` go
    to :func:`gradprobe.networks.resnet.cifar_resnet` (``classifier_init``, ``conv_bias``)."""
    return resnet.cifar_resnet(depth, WINDOW_NETWORKS[name], init=init, generator=weights(seed), **options).to(device)


# The ResNet-110 layers the paper's figures and Table 1 look at
PAPER_LAYERS = (8, 18, 44, 45, 54, 55, 80, 90, 110)
# Figure 5's layers in ResNet-110: every 12th from 6, and the final (classification) layer
FIGURE5_LAYERS = tuple(range(6, 103, 12)) + (110,)


def paper_layers(depth: int) -> dict[int, int]:
    """{paper layer (ResNet-110): the layer at the same place of a ResNet-``depth``}
    (:func:`gradprobe.networks.resnet.paper_layer`)."""
    return {k: resnet.paper_layer(k, depth) for k in PAPER_LAYERS}


def figure5_layers(depth: int) -> list[int]:
    """:data:`FIGURE5_LAYERS` mapped to a ResNet-``depth`` (a shallow one may repeat a layer)."""
    return [resnet.paper_layer(k, depth) for k in FIGURE5_LAYERS]


# ---------------------------------------------------------------------------- at initialization
def kurtosis(values) -> float:
    """E[(v − mean)⁴] / Var[v]² (3 for a Gaussian)."""
    v = np.asarray(values, dtype=np.float64)
    return float(((v - v.mean()) ** 4).mean() / v.var() ** 2)


@dataclass
class AtInit:
    """Everything measured at initialization, per network and seed: ``passes[name][s]`` is the
    :class:`gradprobe.measure.kernels.OnePass` of network ``name`` with the weights and mini-batch
    of seed ``s``; ``step_ratio[s]``: the unnormalized network's loss ratio after a step of
    :data:`FIG3_ALPHA` along its gradient; ``labels[s]``: the labels of seed ``s``'s mini-batch.
    ``layers`` maps the paper's layers to the network's."""
    passes: dict
    step_ratio: list
    depth: int
    layers: dict
    labels: list

    @property
    def seeds(self) -> int:
        return len(self.step_ratio)

    def per_seed(self, fn) -> dict[str, np.ndarray]:
        """{network: [fn(pass) for each seed]}."""
        return {name: np.array([fn(p) for p in ps]) for name, ps in self.passes.items()}

    @property
    def loss(self) -> dict[str, np.ndarray]:
        return self.per_seed(lambda p: p.loss)

    @property
    def output_scale(self) -> dict[str, np.ndarray]:
        """The largest |channel mean| of the output layer (Figure 5's "scales of up to 10²")."""
        return self.per_seed(lambda p: float(p.moments[self.depth].mean.abs().max()))

    def gradient_std(self, k: int = 55) -> dict[str, np.ndarray]:
        return self.per_seed(lambda p: float(p.kernel_grads[self.layers[k]].std()))

    def gradient_ratio(self, k: int = 55) -> np.ndarray:
        """Per seed: std of ∂L/∂K at paper layer ``k``, no BN / BN (Figure 2)."""
        s = self.gradient_std(k)
        return s["no BN"] / s["BN"]

    def sums(self, name: str, k: int) -> list:
        """Table 1's :class:`gradprobe.measure.kernels.GradientSums` of paper layer ``k``, per seed."""
        return [p.sums[self.layers[k]] for p in self.passes[name]]


def _measure(S, nets: dict, x, y) -> tuple[dict, float]:
    """One :func:`gradprobe.measure.kernels.one_pass` per network on (x, y), and the unnormalized
    network's loss ratio after a step of :data:`FIG3_ALPHA` along its gradient."""
    L = paper_layers(S.depth)
    found, ratio = {}, math.nan
    for name, net in nets.items():
        found[name] = kernels.one_pass(net, x, y, moment_layers=figure5_layers(S.depth), kernel_layers=[L[55], L[45]],
                                       sum_layers=[L[18], L[54], L[90]], keep_grads=name == "no BN")
        if name == "no BN":
            ratio = float(step_loss_ratios(net, x, y, [FIG3_ALPHA], use_existing_grad=True)[0])
            net.zero_grad(set_to_none=True)
    return found, ratio


def measure_at_init(S, data: ProbeData, device) -> AtInit:
    """For each of ``S.init_seeds`` seeds and both networks, one forward and backward pass on the
    seed's mini-batch (:func:`gradprobe.measure.kernels.one_pass`): the moments of Figure 5's
    layers, the kernel gradients of layers 55 and 45 (Figures 2, 7), Table 1's sums at 18, 54, 90
    and the output gradients (Figure 6); for the unnormalized network also the loss ratio after a
    step of :data:`FIG3_ALPHA` along the gradient (Figure 3)."""
    passes, ratios = {name: [] for name in NETWORKS}, []
    for s in range(S.init_seeds):
        found, ratio = _measure(S, {name: network(S.depth, name, s, device, S.init) for name in NETWORKS},
                                *data.batches[s])
        for name in NETWORKS:
            passes[name].append(found[name])
        ratios.append(ratio)
    return AtInit(passes, ratios, S.depth, paper_layers(S.depth), [y.cpu() for _, y in data.batches[:S.init_seeds]])


def first_edition(S, data: ProbeData, device) -> AtInit:
    """The same measurements of the first edition's single pair of networks: the weights of
    ``gradprobe.seed(0)``, inputs with the channel mean (not the mean image) subtracted, on seed
    0's mini-batch."""
    from ..runtime import seed as seed_all
    x, y = data.batches[0]
    x = tensors.preprocess(_undo(x, data.inputs), "channel-mean")
    nets = {name: resnet.cifar_resnet(S.depth, norm, init=S.init, generator=seed_all(0).weights).to(device)
            for name, norm in NETWORKS.items()}
    found, ratio = _measure(S, nets, x, y)
    return AtInit({name: [p] for name, p in found.items()}, [ratio], S.depth, paper_layers(S.depth), [y.cpu()])


def _undo(x: torch.Tensor, inputs: str) -> torch.Tensor:
    """Images prepared as ``inputs`` back on the standardized scale of the loaded tensors."""
    if inputs == "standardized":
        return x
    mean, std = tensors.channel_stats()
    view = lambda v: torch.tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if inputs == "channel-mean":
        return x / view(std)
    return (x + tensors.pixel_mean().to(x.device, x.dtype) - view(mean)) / view(std)


# name -> (what it changes, how the inputs are prepared, options of cifar_resnet or an init name)
VARIANTS = {
    "standardized inputs": ("inputs with unit variance per channel", "standardized", {}),
    "pixels on 0–255": ("the same inputs, not divided by 255", "×255", {}),
    "PyTorch's classifier": ("the final Linear with PyTorch's default init", None, {"classifier_init": "torch"}),
    "PyTorch's conv biases": ("every conv with PyTorch's default bias", None, {"conv_bias": "torch"}),
    "He init": ("He et al.'s 2/fan-in variance instead of Xavier's", None, {"init": "he"}),
}


def measure_variants(S, data: ProbeData, device, at_init: AtInit) -> pd.DataFrame:
    """Which choice makes an unnormalized ResNet hot: the loss and the output scale at
    initialization of the chapter's network and of each :data:`VARIANTS` change to it, over the
    first ``S.variant_seeds`` seeds (the same weights and mini-batches). The 0–255 row is exact:
    without biases the network is positively homogeneous, so its logits are 255× the chapter's."""
    rows = []
    for s in range(min(S.variant_seeds, S.init_seeds)):
        x, y = data.batches[s]
        base = at_init.passes["no BN"][s]
        rows.append(dict(variant="this chapter", seed=s, loss=base.loss,
                         output_scale=float(base.logits.double().mean(0).abs().max())))
        for name, (_, inputs, options) in VARIANTS.items():
            options = dict(options)
            init = options.pop("init", S.init)
            if inputs == "×255":
                out = 255 * base.logits.double()
            else:
                xv = tensors.preprocess(_undo(x, data.inputs), inputs) if inputs else x
                with torch.no_grad():
                    out = network(S.depth, "no BN", s, device, init, **options)(xv).double()
            rows.append(dict(variant=name, seed=s, loss=float(F.cross_entropy(out, y)),
                             output_scale=float(out.mean(0).abs().max())))
    return pd.DataFrame(rows)


def _text(x: float) -> str:
    """A positive number to 3 significant digits; one that is not finite (an overflow) as "overflow"."""
    return f"{x:.3g}" if math.isfinite(x) else "overflow"


def _summary(values) -> str:
    """"median [min – max]" of a few positive values, 3 significant digits; a value that is not
    finite (a loss that overflowed) counts as infinite and shows as "overflow"."""
    v = np.asarray(values, dtype=float)
    v = np.where(np.isfinite(v), v, np.inf)
    return f"{_text(np.median(v))} [{_text(v.min())} – {_text(v.max())}]"


def variants_table(variants: pd.DataFrame) -> pd.DataFrame:
    """The calibration's variants: median [range] over seeds of the initial loss and output scale,
    and the median factor by which each changes the output scale of the chapter's network."""
    base = variants[variants.variant == "this chapter"].set_index("seed").output_scale
    rows = []
    for name, group in variants.groupby("variant", sort=False):
        g = group.set_index("seed")
        rows.append({"network without BN": name, "what changes": VARIANTS.get(name, ("Xavier, [0, 1] pixels "
                     "minus the mean image, no biases",))[0], "initial loss": _summary(g.loss),
                     "output scale": _summary(g.output_scale),
                     "× output scale": f"{np.median(g.output_scale / base):.3g}"})
    return pd.DataFrame(rows).set_index("network without BN")


def figure_calibration(variants: pd.DataFrame, first: AtInit) -> plt.Figure:
    """The calibration: the initial loss (left) and output scale (right) of the unnormalized
    network, one dot per seed, for the chapter's network and each variant, beside the paper's
    divergence threshold (10³), its "scales of up to 10²" (Sec. 4) and the first edition's network."""
    names = list(dict.fromkeys(variants.variant))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True, layout="constrained")
    for ax, what in zip(axes, ["loss", "output_scale"]):
        for i, name in enumerate(names):
            v = variants[variants.variant == name][what]
            ax.plot(v, np.full(len(v), i), "o", color="tab:orange" if i == 0 else "0.45", markersize=5)
        first_value = first.loss["no BN"][0] if what == "loss" else first.output_scale["no BN"][0]
        ax.plot(first_value, 0, "s", mfc="none", color="tab:red", markersize=9, label="first edition's network")
        ax.set_xscale("log")
        ax.set_xlabel("initial loss on a mini-batch" if what == "loss" else "largest |channel mean| of the output")
    axes[0].axvline(DIVERGENCE, **plots.PAPER, label="paper: divergence (loss 10³); output 'up to 10²'")
    axes[0].axvline(math.log(CLASSES), **plots.REFERENCE, label="uniform guess, ln 10")
    axes[1].axvline(100, **plots.PAPER)
    axes[0].set(yticks=range(len(names)), yticklabels=names, ylim=(len(names) - 0.5, -0.5))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize="small")
    fig.suptitle(f"ResNet-{first.depth} without BN at initialization: one dot per weight seed", fontsize="medium")
    return fig


def _geomean_ratio(at: AtInit, per_summand: bool) -> np.ndarray:
    """Per seed: the geometric mean over Table 1's twelve entries of our value / the paper's."""
    out = []
    for s in range(at.seeds):
        logs = []
        for (name, k), (pa, pb, _) in PAPER_TABLE1.items():
            g = at.passes[name][s].sums[at.layers[k]]
            a, b = g.per_summand if per_summand else (g.a, g.b)
            logs += [math.log10(a / pa), math.log10(b / pb)]
        out.append(10 ** np.mean(logs))
    return np.array(out)


def five_numbers(at: AtInit, first: AtInit) -> pd.DataFrame:
    """The five numbers that calibrate the unnormalized network against the paper: its initial
    loss, Figure 2's gradient ratio, Figure 3's loss ratio at α = 3·10⁻³, Table 1's values over
    the paper's and Figure 5's output scale; for the first edition's single network and, as median
    [range] over seeds, for this chapter's."""
    def row(what, paper, fn):
        return {"quantity": what, "paper": paper, "first edition (one network)": _text(fn(first)[0]),
                f"this chapter ({at.seeds} seeds)": _summary(fn(at))}
    rows = [row("initial loss, no BN", "below 10³ (the network trains at 10⁻⁴)", lambda a: a.loss["no BN"]),
            row("Fig. 2: gradient std at layer 55, no BN / BN", "≈ 10² ('almost two orders of magnitude')",
                lambda a: a.gradient_ratio(55)),
            row("Fig. 3: no-BN loss ratio after a step of 3·10⁻³", "≈ 10⁶ (read off the figure)",
                lambda a: np.array(a.step_ratio)),
            {"quantity": "Table 1: our a and b / the paper's (geometric mean of 12)",
             "paper": "1 (first edition: whole sums; this chapter: per summand)",
             "first edition (one network)": f"{_geomean_ratio(first, False)[0]:.3g}",
             f"this chapter ({at.seeds} seeds)": _summary(_geomean_ratio(at, True))},
            row("Fig. 5: largest |channel mean| of the output, no BN", "'up to 10²'",
                lambda a: a.output_scale["no BN"])]
    return pd.DataFrame(rows).set_index("quantity")


def _log10(values) -> np.ndarray:
    return np.log10(np.asarray(values, dtype=float))


def check_calibration(page, at: AtInit, first: AtInit, variants: pd.DataFrame) -> None:
    """The calibration's rows: what the paper's statements require of its unnormalized network at
    initialization, and which choices they exclude."""
    claims = page.claims
    loss, v = at.loss["no BN"], variants.set_index("variant")
    base = v.loc["this chapter"].set_index("seed").output_scale
    factor = lambda name: float(np.median(v.loc[name].set_index("seed").output_scale / base))
    for name, value, fmt in [("init_seeds", at.seeds, "d"), ("loss_median", np.median(loss), ".3g"),
                             ("loss_min", loss.min(), ".3g"), ("loss_max", loss.max(), ".3g"),
                             ("loss_above", int((loss > DIVERGENCE).sum()), "d"),
                             ("first_loss", first.loss["no BN"][0], ".3g"),
                             ("first_rank", int((loss < first.loss["no BN"][0]).sum()), "d"),
                             ("x_standardized", factor("standardized inputs"), ".2g"),
                             ("x_classifier", factor("PyTorch's classifier"), ".2g"),
                             ("x_bias", factor("PyTorch's conv biases"), ".2g"), ("x_he", factor("He init"), ".2g"),
                             ("variant_seeds", len(base), "d")]:
        page.glue(name, value, fmt)
    claims.section("bjorck2018-calibration", "Calibration: which unnormalized network")
    claims.add("The unnormalized ResNet-110 starts below the divergence threshold",
               at_most(_log10(at.loss["no BN"]), 3, paper="loss < 10³ at the start: the network trains"),
               kind=RECONSTRUCTION, source="bjorck2018, Secs. 2 and 3",
               quote="the initial learning rate ... needs to be decreased to α=0.0001 for convergence",
               note="log10 of the initial loss, over weight seeds: our Xavier network with [0, 1] pixels minus "
                    "the mean image")
    for name, why in (("pixels on 0–255", "the pixel scale is about [0, 1]"),
                      ("He init", "Xavier, as the paper says, not He et al.'s variance")):
        claims.add(f"Calibration: {name} would start the network above the threshold",
                   at_least(_log10(v.loc[name].loss), 3, paper="a network that trains starts below 10³"),
                   kind=RECONSTRUCTION, source="bjorck2018, Secs. 1.2 and 3",
                   note=f"log10 of the initial loss over seeds; so {why}")
    return None


# ---------------------------------------------------------------------------- Figure 1: the learning-rate window
def step_sizes(points: int) -> np.ndarray:
    """The step sizes α of the Figure 3 and Appendix H scans: ``points`` log-spaced from 10⁻⁵ to 1
    (11 points: every half decade, so 3.16·10⁻³ ≈ the paper's 3·10⁻³ is one of them)."""
    return np.logspace(-5, 0, int_at_least("points", points, 2))


@dataclass(frozen=True)
class WindowRun:
    """One short run of the learning-rate window: ResNet-``depth`` ``network`` trained at ``lr``
    from the weights and mini-batch order of ``seed`` for ``steps`` SGD steps of ``batch`` images
    (momentum 0.9, weight decay 10⁻⁴) on ``n_train`` training images (prepared as ``inputs``, drawn
    with ``data_seed``). With ``scan_points`` > 0, Figure 3's scan of that many step sizes at
    mini-batches 1, 4 and 7."""
    network: str
    lr: float
    seed: int
    depth: int
    steps: int
    batch: int
    n_train: int
    inputs: str = "pixel-mean"
    init: str = "xavier"
    data_seed: int = 0
    scan_points: int = 0
    device: str = "cpu"


def window_run(run: WindowRun) -> dict:
    """The :mod:`gradprobe.sweep` trial of a :class:`WindowRun`: each step's mini-batch loss,
    accuracy and logit spread (std over the images, mean over classes, before the step's update),
    the step at which the loss passed 10³ (−1: never) and Figure 3's loss ratios {mini-batch: ratios}."""
    gens = sweep.seed_trial(run, fields=("seed",))
    dev = torch.device(run.device)
    x, y, _, _ = _images(run.n_train, 1, run.inputs, run.data_seed)
    x, y = x.to(dev), y.to(dev)
    net = resnet.cifar_resnet(run.depth, WINDOW_NETWORKS[run.network], init=run.init, generator=gens.weights).to(dev)
    spread, ratios = [], {}
    alphas = step_sizes(run.scan_points) if run.scan_points else None

    def scan(step, model, xb, yb, loss):
        if alphas is not None and step + 1 in SCAN_BATCHES:
            ratios[step + 1] = step_loss_ratios(model, xb, yb, alphas, use_existing_grad=True)

    opt = torch.optim.SGD(net.parameters(), lr=run.lr, momentum=0.9, weight_decay=1e-4)
    h = fit(net, x, y, steps=run.steps, batch_size=run.batch, optimizer=opt, generator=gens.data, callback=scan,
            diverge_above=DIVERGENCE, on_forward=lambda s, out, yb: spread.append(float(out.double().std(0).mean())))
    return {"loss": np.array(h.loss), "accuracy": np.array(h.accuracy), "spread": np.array(spread),
            "diverged_at": -1 if h.diverged_at is None else h.diverged_at, "ratios": ratios}


def _collapsed(loss: float, spread: float, start_spread: float) -> bool:
    """A network that has collapsed to a uniform guess: its loss within :data:`UNIFORM_NATS` of
    ln 10 and its logits varying across images by less than :data:`COLLAPSE_SPREAD` of their
    variation at the start: its output no longer depends on its input."""
    return abs(loss - math.log(CLASSES)) < UNIFORM_NATS and spread < COLLAPSE_SPREAD * start_spread


def classify(result: dict) -> tuple[str, str]:
    """("diverged" | "collapsed" | "training", the evidence) of a :func:`window_run` result: diverged
    when a mini-batch loss passed 10³ or stopped being finite (the paper's definition), collapsed
    when at the last step the network is a uniform guess independent of its input
    (:func:`_collapsed`), else training: neither happened in the run's few steps."""
    loss, spread, k = result["loss"], result["spread"], int(result["diverged_at"])
    if k >= 0:
        return "diverged", f"loss {loss[0]:.3g} → {loss[k]:.3g} after {k} update{'s' * (k != 1)}"
    evidence = f"loss {loss[0]:.3g} → {loss[-1]:.3g}, logit spread {spread[0]:.2g} → {spread[-1]:.2g}"
    return ("collapsed" if _collapsed(loss[-1], spread[-1], spread[0]) else "training"), evidence


@dataclass
class Window:
    """The learning-rate window: ``results[(network, lr)]``: the :func:`window_run` results, one per
    seed; ``depth``, ``steps`` and ``batch`` of the runs."""
    results: dict
    depth: int
    steps: int
    batch: int

    def classes(self, network: str, lr: float) -> list[str]:
        return [classify(r)[0] for r in self.results[(network, lr)]]

    def diverged(self, network: str, lr: float) -> np.ndarray:
        """Per seed: 1 if the run diverged, else 0."""
        return np.array([float(c == "diverged") for c in self.classes(network, lr)])

    def largest_rate(self, network: str) -> np.ndarray:
        """Per seed: the largest rate of the grid below which the seed never diverged."""
        lrs = sorted(lr for n, lr in self.results if n == network)
        out = []
        for s in range(len(self.results[(network, lrs[0])])):
            ok = [lr for lr in lrs if self.diverged(network, lr)[s] == 0]
            first_bad = next((lr for lr in lrs if self.diverged(network, lr)[s] == 1), math.inf)
            out.append(max([lr for lr in ok if lr < first_bad], default=math.nan))
        return np.array(out)


def run_window(S, data_seed: int, device) -> Window:
    """Train the three networks (:data:`WINDOW_NETWORKS`) at every rate of ``S.window_lrs`` from
    ``S.window_seeds`` seeds, ``S.window_steps`` steps each (a :mod:`gradprobe.sweep` grid); the
    BN network at 0.1 and the unnormalized one at ``S.probe_lrs`` also scan Figure 3's step sizes."""
    probed = {("BN", 0.1)} | {("no BN", lr) for lr in S.probe_lrs}
    runs = [WindowRun(name, lr, s, S.depth, S.window_steps, S.window_batch, S.n_train, S.inputs, S.init, data_seed,
                      S.step_points if (name, lr) in probed else 0, str(device))
            for name in WINDOW_NETWORKS for lr in S.window_lrs for s in range(S.window_seeds)]
    done = sweep.run(window_run, runs, desc="learning-rate window")
    done.raise_failures()
    results = {}
    for r in runs:
        results.setdefault((r.network, r.lr), []).append(done.results[r])
    return Window(results, S.depth, S.window_steps, S.window_batch)


_MARKS = {"diverged": dict(marker="x", color="tab:red", markersize=8, mew=2),
          "collapsed": dict(marker="o", mfc="none", color="0.4", markersize=7, mew=1.5),
          "training": dict(marker="o", markersize=6)}


def figure_window(window: Window) -> plt.Figure:
    """The learning-rate window of each network: one mark per seed and rate (a red cross: diverged;
    an open circle: collapsed; a dot: training at the end of the run), beside the largest rate the
    paper trains each network at."""
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    names = list(WINDOW_NETWORKS)
    for i, name in enumerate(names):
        lrs = sorted(lr for n, lr in window.results if n == name)
        for lr in lrs:
            classes = window.classes(name, lr)
            for s, c in enumerate(classes):
                offset = (s - (len(classes) - 1) / 2) * 0.12
                ax.plot(lr, i + offset, linestyle="none", **{**_MARKS[c], **({"color": COLORS[name]}
                                                                             if c == "training" else {})})
    paper = {"BN": 0.1, "final BN only": 0.03, "no BN": 1e-4}
    triangle = {**plots.PAPER_POINT, "marker": "v", "markersize": 7}
    for i, name in enumerate(names):
        ax.plot(paper[name], i - 0.38, **triangle)
    ax.set(xscale="log", yticks=range(len(names)), yticklabels=[f"ResNet-{window.depth}, {n}" for n in names],
           ylim=(len(names) - 0.5, -0.6), xlabel="learning rate",
           title=f"{window.steps} mini-batches of {window.batch} images; one mark per seed")
    handles = [Line2D([], [], linestyle="none", **{**_MARKS[c], **({"color": "0.3"} if c == "training" else {})})
               for c in _MARKS] + [Line2D([], [], **triangle)]
    ax.legend(handles, [*_MARKS, "the paper's largest rate"], loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=4, fontsize="small")
    return fig


def window_table(window: Window) -> pd.DataFrame:
    """Every run of the window, classified, with its evidence: one row per network and rate,
    one column per seed."""
    rows = []
    for (name, lr), results in window.results.items():
        row = {"network": name, "lr": f"{lr:g}"}
        for s, r in enumerate(results):
            c, evidence = classify(r)
            row[f"seed {s}"] = f"{c}: {evidence}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["network", "lr"])


# ---------------------------------------------------------------------------- Figure 1: training runs
@dataclass(frozen=True)
class TrainRun:
    """One training run of Figure 1: ResNet-``depth`` ``network`` at ``lr`` from seed ``seed`` for
    ``steps`` SGD steps of ``batch`` images (momentum 0.9, weight decay 10⁻⁴; ``schedule`` "step":
    lr ÷10 at 50 % and 75 %, "constant": none; ``augment``: random crops and flips), tested on
    ``n_test`` images at ``eval_points`` evenly spaced steps (the last at the end)."""
    network: str
    lr: float
    seed: int
    depth: int
    steps: int
    batch: int
    n_train: int
    n_test: int
    inputs: str = "pixel-mean"
    init: str = "xavier"
    data_seed: int = 0
    schedule: str = "constant"
    augment: bool = False
    eval_points: int = 1
    device: str = "cpu"


def train_run(run: TrainRun) -> dict:
    """The :mod:`gradprobe.sweep` trial of a :class:`TrainRun`: every step's mini-batch loss and
    accuracy, the step at which the loss passed 10³ (−1: never) and ``evals``: (step, test loss,
    test accuracy). Long runs save a checkpoint every 2,000 steps and resume from it."""
    gens = sweep.seed_trial(run, fields=("seed",))
    dev = torch.device(run.device)
    x, y, x_test, y_test = (t.to(dev) for t in _images(run.n_train, run.n_test, run.inputs, run.data_seed))
    net = resnet.cifar_resnet(run.depth, WINDOW_NETWORKS[run.network], init=run.init, generator=gens.weights).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=run.lr, momentum=0.9, weight_decay=1e-4)
    decay = schedules.step_decay(run.steps) if run.schedule == "step" else _constant
    at = sorted({max(1, round(run.steps * (i + 1) / run.eval_points)) for i in range(run.eval_points)})
    history = {"loss": [], "accuracy": [], "evals": [], "diverged_at": -1}
    ckpt = sweep.checkpoint(2000, model=net, optimizer=opt, generators=[gens.data], extra=history)
    step = ckpt.restore()
    while step < run.steps and history["diverged_at"] < 0:
        stop = min([a for a in at if a > step] + [step + 2000, run.steps])
        for group in opt.param_groups:
            group["lr"] = run.lr                     # fit() scales the rate it finds by the schedule
        h = fit(net, x, y, steps=stop - step, batch_size=run.batch, optimizer=opt, generator=gens.data,
                schedule=functools.partial(_offset, decay, step), diverge_above=DIVERGENCE, augment_data=run.augment)
        history["loss"] += h.loss
        history["accuracy"] += h.accuracy
        if h.diverged:
            history["diverged_at"] = step + h.diverged_at
            break
        step = stop
        if step in at:
            history["evals"].append((step, *evaluate(net, x_test, y_test)))
        ckpt.maybe_save(step, final=step >= run.steps)
    return {"loss": np.array(history["loss"]), "accuracy": np.array(history["accuracy"]),
            "diverged_at": history["diverged_at"], "evals": [tuple(e) for e in history["evals"]]}


def _offset(schedule, start: int, step: int) -> float:
    return schedule(start + step)


def _constant(step: int) -> float:
    return 1.0


@dataclass
class Training:
    """Figure 1's runs: ``results[(network, lr)]``: the :func:`train_run` results, one per seed."""
    results: dict
    depth: int
    steps: dict

    def accuracy(self, network: str, lr: float) -> np.ndarray:
        """Per seed: the final test accuracy (NaN for a run that diverged)."""
        return np.array([r["evals"][-1][2] if r["diverged_at"] < 0 and r["evals"] else math.nan
                         for r in self.results[(network, lr)]])

    def has(self, network: str, lr: float) -> bool:
        return (network, lr) in self.results


def run_training(S, data_seed: int, device) -> Training:
    """Train each of ``S.train_runs`` from ``S.train_seeds`` seeds (a :mod:`gradprobe.sweep` grid)."""
    steps = dict(zip(S.train_runs, _steps_of(S)))
    runs = [TrainRun(name, lr, s, S.train_depth, steps[(name, lr)], S.train_batch, S.n_train, S.n_test, S.inputs,
                     S.init, data_seed, S.schedule, S.augment, 1 if steps[(name, lr)] < 10_000 else 10, str(device))
            for name, lr in S.train_runs for s in range(S.train_seeds)]
    done = sweep.run(train_run, runs, desc="training runs")
    done.raise_failures()
    results = {}
    for r in runs:
        results.setdefault((r.network, r.lr), []).append(done.results[r])
    return Training(results, S.train_depth, steps)


def figure1(training: Training) -> plt.Figure:
    """Figure 1 at this scale: the training loss (running mean over 20 steps; median and range
    over seeds) against the step, and each seed's final test accuracy, per run."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained", width_ratios=(3, 2))
    labels = []
    for i, ((name, lr), results) in enumerate(training.results.items()):
        color = COLORS[name] if sum(n == name for n, _ in training.results) == 1 else plt.cm.tab10(i)
        label = f"{name}, lr {lr:g}"
        kept = [r["loss"] for r in results if r["diverged_at"] < 0]
        if kept:
            w = min(20, len(kept[0]))
            smooth = np.array([np.convolve(v, np.ones(w) / w, mode="valid") for v in kept])
            plots.band(axes[0], np.arange(w, len(kept[0]) + 1), smooth, label, color=color)
        acc = training.accuracy(name, lr)
        axes[1].plot(acc, np.full(len(acc), i), "o", color=color, alpha=0.7)
        axes[1].plot(np.nanmean(acc), i, "|", color="k", markersize=14, mew=2)
        labels.append(label)
    axes[0].axhline(math.log(CLASSES), **plots.REFERENCE, label="uniform guess, ln 10")
    axes[0].set(xlabel="SGD step", ylabel="training loss (running mean)",
                title=f"ResNet-{training.depth}, median and range over seeds")
    axes[0].legend(fontsize="small")
    axes[1].axvline(1 / CLASSES, **plots.REFERENCE)
    axes[1].set(yticks=range(len(labels)), yticklabels=labels, ylim=(len(labels) - 0.5, -0.5),
                xlabel="test accuracy at the end (dots: seeds; bar: mean)")
    return fig


def training_table(training: Training) -> pd.DataFrame:
    """Per run: steps, seeds that diverged, final training loss (mean of the last 20 steps) and
    final test accuracy, mean ± SE over seeds."""
    rows = []
    for (name, lr), results in training.results.items():
        acc = Estimate.of(training.accuracy(name, lr))
        rows.append({"network": name, "lr": f"{lr:g}", "steps": training.steps[(name, lr)],
                     "diverged": sum(r["diverged_at"] >= 0 for r in results),
                     "final training loss": f"{np.mean([np.mean(r['loss'][-20:]) for r in results]):.3g}",
                     "test accuracy": acc.text()})
    return pd.DataFrame(rows).set_index(["network", "lr"])


# the paper's final test accuracies (Figure 1, read off its right panel; Appendix E from Sec. 4)
PAPER_ACCURACY = {("BN", 0.1): 0.93, ("BN", 0.003): 0.905, ("BN", 1e-4): 0.81, ("no BN", 1e-4): 0.82,
                  ("final BN only", 0.03): 0.901}


def check_figure1(page, S, window: Window, training: Training) -> None:
    """Figure 1, Sections 2 and 4 and Appendix E: which rates each network survives (the window,
    decided over seeds), the matched-rate comparison, and the paper's accuracies."""
    claims = page.claims
    claims.section("bjorck2018-fig1", "Figure 1 and Appendix E: learning rates and accuracy")
    d = window.diverged
    short = f"{window.steps} steps of ResNet-{window.depth}, fraction of {len(d('BN', 0.1))} seeds that diverged"
    claims.add("Fig. 1: BN trains at lr 0.1, the unnormalized network diverges there",
               all_of({"BN": at_most(d("BN", 0.1), 0.5), "no BN": at_least(d("no BN", 0.1), 0.5)}),
               source="bjorck2018, Sec. 1.2", quote="The original network can be trained with initial learning "
               "rate 0.1 over 165 epochs, however which fails without BN", note=short)
    claims.add("Fig. 1: larger rates diverge without BN (0.003)", at_least(d("no BN", 0.003), 0.5),
               source="bjorck2018, Fig. 1", quote="larger learning rates yield higher test accuracy for BN "
               "networks, and diverge for unnormalized networks", note=short)
    claims.add("Sec. 2: the unnormalized network does not diverge at 10⁻⁴", at_most(d("no BN", 1e-4), 0.5),
               source="bjorck2018, Sec. 2", quote="the initial learning rate of the Resnet model needs to be "
               "decreased to α=0.0001 for convergence", note=short + "; a short run cannot show convergence")
    claims.add("Sec. 2: above 10⁻⁴ the unnormalized network fails (3·10⁻⁴)", at_least(d("no BN", 3e-4), 0.5),
               source="bjorck2018, Sec. 2", quote="needs to be decreased to α=0.0001 for convergence",
               note="failing to converge in 2400 epochs need not show as divergence in a few steps", needs="paper")
    claims.add("App. E: one BN at the end allows rates up to 0.03", at_most(d("final BN only", 0.03), 0.5),
               source="bjorck2018, Sec. 4 and App. E",
               quote="Such an architecture allows for learning rates up to 0.03", note=short)
    claims.add("App. E: ... and not above (0.1)", at_least(d("final BN only", 0.1), 0.5),
               source="bjorck2018, Sec. 4 and App. E", quote="allows for learning rates up to 0.03",
               note="a rate that fails late need not diverge in a few steps", needs="paper")
    page.glue("window_seeds", len(d("BN", 0.1)), "d")
    page.glue("window_steps", window.steps, "d")
    page.glue("nobn_largest", ", ".join(f"{lr:g}" for lr in window.largest_rate("no BN")))
    width = _log10(window.largest_rate("BN")) - _log10(window.largest_rate("no BN"))
    claims.add("BN's window reaches ≥ 10× larger rates than the unnormalized network's",
               at_least(width, 1, paper="0.1 vs 10⁻⁴: 10³×"), source="bjorck2018, Sec. 1 and Fig. 1",
               quote="BN is much more forgiving to very large learning rates",
               note="log10 of the ratio of the largest rates below which each seed never diverged (the grid "
                    "ends at 0.1)")
    _check_training(page, S, training)


def _check_training(page, S, training: Training) -> None:
    """The matched-rate comparison and the paper's accuracies (testable only at the paper's scale)."""
    claims = page.claims
    pairs = [lr for (name, lr) in training.results if name == "BN" and training.has("no BN", lr)]
    for lr in pairs[:1]:
        bn, plain = training.accuracy("BN", lr), training.accuracy("no BN", lr)
        steps = training.steps[("BN", lr)]
        for name, value, fmt in [("matched_lr", lr, "g"), ("matched_steps", steps, "d"),
                                 ("acc_bn", np.mean(bn), ".1%"), ("acc_nobn", np.mean(plain), ".1%"),
                                 ("train_seeds", len(bn), "d")]:
            page.glue(name, value, fmt)
        setting = f"ResNet-{training.depth}, lr {lr:g}, {steps} steps of {S.train_batch}, {S.n_test} test images"
        kind = PAPER if (training.depth, lr) == (110, 1e-4) else RECONSTRUCTION
        claims.add(f"Matched rate {lr:g}: both networks leave chance (≥ 20 % test accuracy)",
                   all_of({"BN": at_least(bn, 0.2), "no BN": at_least(plain, 0.2)}), kind=kind,
                   source="bjorck2018, Fig. 1", note=setting)
        claims.add(f"Matched rate {lr:g}: BN and no BN reach comparable accuracy (within 5 points)",
                   all_of({"BN − no BN ≤ 0.05": difference_at_least(plain, bn, -0.05, paired=True),
                           "no BN − BN ≤ 0.05": difference_at_least(bn, plain, -0.05, paired=True)}),
                   kind=kind, source="bjorck2018, Fig. 1", quote="with matching learning rates, both networks, "
                   "with BN and without, result in comparable testing accuracies",
                   note=setting + ("" if kind == PAPER else "; the paper's statement is about the end of "
                                   "training (2400 epochs at 10⁻⁴): a short run compares how fast they start"))
    bn_rates = (1e-4, 0.003, 0.1)
    what = "Fig. 1: with BN, larger rates give higher test accuracy (10⁻⁴ < 0.003 < 0.1)"
    quote = "larger learning rates yield higher test accuracy for BN networks"
    if all(training.has("BN", lr) for lr in bn_rates) and training.depth == 110:
        claims.add(what, ordered({f"lr {lr:g}": training.accuracy("BN", lr) for lr in bn_rates}), source="bjorck2018, "
                   "Fig. 1", quote=quote, note="final test accuracy over seeds", needs="paper")
    else:
        claims.add(what, not_testable("81 % < 90.5 % < 93 %", "paper", reason="ResNet-110 trained for 165–2400 "
                   "epochs"), source="bjorck2018, Fig. 1", quote=quote)
    for (name, lr), paper in PAPER_ACCURACY.items():
        if name == "final BN only":
            what, source, quote = (f"App. E: one BN at the end, lr {lr:g}, reaches {paper:.1%}",
                                   "bjorck2018, Sec. 4 and App. E", "yields a final test accuracy of 90.1%")
            note, tol = "±1 point", 0.01
        else:
            what, source, quote = (f"Fig. 1: {name} at lr {lr:g} reaches {paper:.1%} test accuracy",
                                   "bjorck2018, Fig. 1", "")
            note, tol = "read off the paper's Figure 1; ±1.5 points", 0.015
        if training.has(name, lr) and training.depth == 110:
            claims.add(what, close(paper, training.accuracy(name, lr), abs=tol), source=source, quote=quote,
                       note=note + ", over seeds", needs="paper")
        else:
            claims.add(what, not_testable(f"{paper:.1%}", "paper", reason="ResNet-110 trained for 165–2400 epochs"),
                       source=source, quote=quote, note=note)


# ---------------------------------------------------------------------------- Figure 2
def figure2(at: AtInit, paper_layer: int = 55) -> plt.Figure:
    """Figure 2: histograms (log counts) of the kernel-gradient entries of ``paper_layer`` with and
    without BN for the first seed, each titled with its std and kurtosis, and the std ratio
    no BN / BN of every seed beside the paper's ≈ 10²."""
    k = at.layers[paper_layer]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3), layout="constrained", width_ratios=(1, 1, 0.8))
    for ax, name in zip(axes, NETWORKS):
        g = at.passes[name][0].kernel_grads[k].flatten().cpu().numpy()
        ax.hist(g, bins=80, color=COLORS[name])
        ax.set(yscale="log", xlabel=f"∂L/∂K, layer {k} (paper's {paper_layer})",
               title=f"{name}, seed 0: std {g.std():.2g}, kurtosis {kurtosis(g):.3g}")
    axes[0].set_ylabel("count (log)")
    ratio = at.gradient_ratio(paper_layer)
    axes[2].plot(np.arange(len(ratio)), ratio, "o", color="0.3", label="this book, one per seed")
    axes[2].axhline(100, **plots.PAPER, label="paper: ≈ 10²")
    axes[2].set(yscale="log", xlabel="weight seed", ylabel="gradient std, no BN / BN", title="every seed",
                ylim=(min(ratio.min(), 100) / 3, max(ratio.max(), 100) * 30))
    axes[2].legend(fontsize="x-small", loc="upper left")
    return fig


def check_figure2(page, at: AtInit) -> None:
    """Figure 2 over seeds: the ratio of gradient scales, and the heavy tails."""
    claims = page.claims
    claims.section("bjorck2018-fig2", "Figure 2: gradients at initialization")
    ratio = at.gradient_ratio(55)
    page.glue("fig2_ratio", np.median(ratio), ".3g")
    page.glue("fig2_min", ratio.min(), ".3g")
    page.glue("fig2_max", ratio.max(), ".3g")
    claims.add("Fig. 2: the unnormalized network's gradients at layer 55 are ≈ 10² times larger",
               close(2.0, _log10(ratio), abs=0.5), source="bjorck2018, Fig. 2",
               quote="the gradients for the unnormalized network are almost two orders of magnitude larger",
               note="log10 of the std ratio no BN / BN over weight seeds, within half a decade of 2; the paper's "
                    "own Table 1 implies ≈ 500 at layer 54 (log10 2.7)")
    k = at.layers[55]
    kurt = {name: np.array([kurtosis(p.kernel_grads[k].flatten().cpu().numpy()) for p in ps])
            for name, ps in at.passes.items()}
    claims.add("Fig. 2: without BN the gradients are heavy-tailed, with BN concentrated",
               difference_at_least(kurt["no BN"], kurt["BN"], 3.0, paired=True, paper="heavy tails vs concentrated"),
               source="bjorck2018, Fig. 2", quote="For the unnormalized network, the gradients are distributed with "
               "heavy tails, whereas for the normalized networks the gradients are concentrated around the mean",
               note="kurtosis (3 for a Gaussian), no BN − BN, paired over seeds, ≥ 3")


# ---------------------------------------------------------------------------- Figure 3 and Appendix H
@dataclass
class Probe:
    """Figure 3's probe runs (from the window): ``runs[(network, lr)]``: per seed the
    :func:`window_run` result with its scans; ``rate``: the unnormalized network's rate chosen by
    :func:`probe` and ``why``."""
    runs: dict
    alphas: np.ndarray
    rate: float
    why: str

    def useful(self, network: str, lr: float, batch: int) -> np.ndarray:
        """Per seed: the largest step of the scan at ``batch`` that lowers the loss (NaN where the
        run diverged before that mini-batch)."""
        return np.array([largest_useful_step(self.alphas, r["ratios"][batch]) if batch in r["ratios"] else math.nan
                         for r in self.runs[(network, lr)]])


def _collapse_step(result: dict, upto: int = max(SCAN_BATCHES)) -> int | None:
    """The first mini-batch (1-based) up to ``upto`` at which the run had diverged or collapsed, or None."""
    loss, spread = result["loss"], result["spread"]
    for k in range(min(upto, len(loss))):
        if not math.isfinite(loss[k]) or loss[k] > DIVERGENCE or _collapsed(loss[k], spread[k], spread[0]):
            return k + 1
    return None if len(loss) >= upto else len(loss)


def probe(window: Window, S) -> Probe:
    """Figure 3's probe: the BN network at 0.1 and the unnormalized one at the first rate of
    ``S.probe_lrs`` (the paper's 10⁻⁴ first) at which no seed diverged or collapsed within the seven
    probed mini-batches; the last of them if every one did."""
    runs = {("BN", 0.1): window.results[("BN", 0.1)]}
    runs.update({("no BN", lr): window.results[("no BN", lr)] for lr in S.probe_lrs})
    rate, why = S.probe_lrs[-1], "every candidate rate collapsed or diverged in some seed"
    for lr in S.probe_lrs:
        bad = [s for s, r in enumerate(runs[("no BN", lr)]) if _collapse_step(r) is not None]
        if not bad:
            rate, why = lr, f"no seed diverged or collapsed in the first {max(SCAN_BATCHES)} mini-batches"
            break
    return Probe(runs, step_sizes(S.step_points), rate, why)


def figure3_trajectory(found: Probe) -> plt.Figure:
    """The probe runs step by step: the mini-batch loss (left) and the logits' spread across the
    mini-batch's images (right), one line per seed, with the uniform guess ln 10."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    styles = {0: "-", 1: "--", 2: ":"}
    for i, ((name, lr), results) in enumerate(found.runs.items()):
        color = COLORS[name] if name == "BN" else ("tab:orange" if lr == found.rate else "tab:brown")
        for s, r in enumerate(results):
            steps = np.arange(1, len(r["loss"]) + 1)
            label = f"{name}, lr {lr:g}" if s == 0 else None
            axes[0].plot(steps, r["loss"], styles.get(i, "-"), color=color, marker=".", label=label)
            axes[1].plot(steps, r["spread"], styles.get(i, "-"), color=color, marker=".")
    axes[0].axhline(math.log(CLASSES), **plots.REFERENCE, label="uniform guess, ln 10")
    axes[0].set(yscale="log", xlabel="mini-batch", ylabel="loss before the update")
    axes[1].set(yscale="log", xlabel="mini-batch", ylabel="logit spread across images")
    axes[0].legend(fontsize="x-small")
    return fig


def figure3(found: Probe) -> plt.Figure:
    """Figure 3: new loss / old loss after a step of size α along −∇L at mini-batches 1, 4, 7 (one
    panel each), one line per seed: the BN network at 0.1 and the unnormalized one at each probed
    rate; a missing line is a run that had diverged before that mini-batch."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True, layout="constrained")
    for ax, b in zip(axes, SCAN_BATCHES):
        for (name, lr), results in found.runs.items():
            color = COLORS[name] if name == "BN" else ("tab:orange" if lr == found.rate else "tab:brown")
            for s, r in enumerate(results):
                if b in r["ratios"]:
                    ratio = np.where(np.isfinite(r["ratios"][b]), r["ratios"][b], np.nan)
                    ax.plot(found.alphas, ratio, color=color, marker=".", linewidth=1,
                            label=f"{name}, lr {lr:g}" if s == 0 else None)
        ax.axhline(1, **plots.REFERENCE)
        ax.set(xscale="log", yscale="log", title=f"mini-batch {b}", xlabel="step size α along −∇L",
               ylim=(1e-3, 1e10))
    axes[0].set_ylabel("new loss / old loss (cut at 10¹⁰)")
    axes[0].legend(fontsize="x-small")
    return fig


def _first_batch(S, seed: int, data_seed: int, device):
    """The first mini-batch of the window's runs with ``seed`` (the one Figure 3 scans first)."""
    x, y, _, _ = _images(S.n_train, 1, S.inputs, data_seed)
    idx = torch.randperm(len(x), generator=sweep.seed_trial({"seed": seed}, fields=("seed",)).data)[:S.window_batch]
    return x[idx].to(device), y[idx].to(device)


def scan_appendix_h(S, found: Probe, data_seed: int, device) -> dict:
    """Appendix H: the largest step that lowers the loss at initialization of the unnormalized
    ResNet of each depth of ``S.appH_depths``, per seed of the window, on that seed's first
    mini-batch: {depth: per-seed values}. At ``S.depth`` these are Figure 3's scans at mini-batch
    1 (``found``), which also give the BN network's (key "BN")."""
    alphas, out = step_sizes(S.step_points), {}
    for depth in S.appH_depths:
        if depth == S.depth:
            out[depth] = found.useful("no BN", found.rate, 1)
            continue
        values = []
        for s in range(S.window_seeds):
            x, y = _first_batch(S, s, data_seed, device)
            values.append(largest_useful_step(alphas, step_loss_ratios(network(depth, "no BN", s, device, S.init),
                                                                       x, y, alphas)))
        out[depth] = np.array(values)
    out["BN"] = found.useful("BN", 0.1, 1)
    return out


def appendix_h(depth_steps: dict, S) -> plt.Figure:
    """Appendix H: the largest useful step against depth without BN (median and range over seeds),
    beside the BN network's and the end of the scanned range."""
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    depths = [d for d in depth_steps if d != "BN"]
    plots.band(ax, depths, np.array([depth_steps[d] for d in depths]).T, "no BN: median and range over seeds",
               color=COLORS["no BN"], marker="o")
    bn = depth_steps["BN"]
    ax.plot([S.depth] * len(bn), bn, "s", color=COLORS["BN"], label=f"BN ResNet-{S.depth}, each seed")
    ax.axhline(step_sizes(S.step_points)[-1], **plots.REFERENCE, label="end of the scanned range")
    ax.set(xlabel="ResNet depth (weight layers)", ylabel="largest step that lowers the loss", yscale="log",
           title="Appendix H: at initialization, first mini-batch")
    ax.legend(fontsize="small")
    return fig


def check_figure3(page, found: Probe, depth_steps: dict) -> None:
    """Figure 3 and Appendix H over seeds: the range of useful steps with and without BN at the
    probed mini-batches, the size of the loss jump, and the trend with depth."""
    claims = page.claims
    claims.section("bjorck2018-fig3", "Figure 3 and Appendix H: how large a step can be")
    page.glue("probe_rate", found.rate, "g")
    page.glue("probe_why", found.why)
    bn = lambda b: _log10(found.useful("BN", 0.1, b))
    plain = lambda b: _log10(found.useful("no BN", found.rate, b))
    note = f"log10 of the ratio of the largest useful steps, BN at 0.1 / no BN at {found.rate:g}, over seeds"
    claims.add("Fig. 3: at the first mini-batch, BN tolerates ≥ 10× larger steps",
               at_least(bn(1) - plain(1), 1, paper="no BN: only small steps lower the loss"),
               source="bjorck2018, Fig. 3", quote="For unnormalized networks only small gradient steps lead to "
               "reductions in loss, whereas networks with BN can use a far broader range of learning rates",
               note=note)
    claims.add("Fig. 3: ... and still at mini-batches 4 and 7",
               all_of({f"batch {b}": at_least(bn(b) - plain(b), 1) for b in SCAN_BATCHES[1:]},
                      paper="BN far more forgiving throughout"),
               source="bjorck2018, Fig. 3", quote="Throughout all cases the network with BN (bottom row) is far "
               "more forgiving and the loss decreases over larger ranges of α", note=note + f"; {found.why}")
    alpha = int(np.argmin(np.abs(np.log10(found.alphas) + 2)))           # the scanned step nearest 10⁻²
    jumps = {name: np.array([float(not np.isfinite(r["ratios"][1][alpha]) or r["ratios"][1][alpha] >= 1e3)
                             for r in found.runs[key]]) for name, key in (("no BN", ("no BN", found.rate)),
                                                                          ("BN", ("BN", 0.1)))}
    claims.add(f"Fig. 3: without BN a step of {found.alphas[alpha]:.2g} raises the loss ≥ 10³×, with BN not",
               all_of({"no BN": at_least(jumps["no BN"], 0.5), "BN": at_most(jumps["BN"], 0.5)},
                      paper="no BN: > 10⁶ by α ≈ 3·10⁻³ (read off)"),
               source="bjorck2018, Fig. 3", quote="Networks without BN show divergence for larger step sizes",
               note="fraction of seeds whose loss ratio at mini-batch 1 is ≥ 10³ or overflows")
    depths = [d for d in depth_steps if d != "BN"]
    med = {f"ResNet-{d}": Estimate.of(_log10(depth_steps[d])) for d in (depths[0], depths[-1])}
    claims.add("App. H: shallower unnormalized networks allow larger steps",
               ordered(med, increasing=False, paper="shallower networks allow larger learning rates"),
               source="bjorck2018, Sec. 3 and App. H", quote="shallower networks allow for larger learning rates, "
               "which we verify in Appendix H", note="log10 of the largest useful step at initialization, over "
               "seeds (the scan ends at 1)")


# ---------------------------------------------------------------------------- Figure 4
FIGURE4_LAYERS = (8, 44, 80)
PAPER_FIGURE4_BARS = {"mean": (1.3, 3e3, 3e8), "variance": (1.0, 5e6, 5e16)}   # read off its colour bars


@dataclass
class Anatomy:
    """Figure 4 per seed: the first update of an unnormalized run at ``lr`` that sent the loss
    above 10³ (``updates``, None where none did in ``find_steps`` steps) and the sweep along it
    (``sweeps``) at ``layers`` ({paper layer 8, 44, 80: its layer here})."""
    updates: list
    sweeps: list
    lr: float
    depth: int
    find_steps: int
    layers: dict

    def final(self, what: str) -> dict[int, np.ndarray]:
        """Per paper layer, per seed: the largest finite |channel mean| (``what="mean"``) or channel
        variance at the end of the update (NaN for a seed without a diverging update)."""
        out = {}
        for k in FIGURE4_LAYERS:
            vals = []
            for sw in self.sweeps:
                if sw is None:
                    vals.append(math.nan)
                    continue
                v = np.abs(sw.means[self.layers[k]][-1]) if what == "mean" else sw.variances[self.layers[k]][-1]
                v = v[np.isfinite(v)]
                vals.append(float(v.max()) if v.size else math.nan)
            out[k] = np.array(vals)
        return out


def find_figure4_updates(S, data: ProbeData, device) -> Anatomy:
    """For each of ``S.fig4_seeds`` seeds, train the unnormalized ResNet-``S.depth`` at
    ``S.diverge_lr`` (mini-batches of ``S.window_batch`` in the seed's order, the window's) until
    an update sends its mini-batch's loss above 10³ (:func:`gradprobe.measure.steps.find_diverging_update`),
    then record the loss and the channel moments of the paper's layers 8, 44, 80 at
    ``S.sweep_points`` fractions of that update (:func:`gradprobe.measure.steps.interpolation_sweep`)."""
    L = paper_layers(S.depth)
    here = {k: L[k] for k in FIGURE4_LAYERS}
    updates, sweeps = [], []
    for s in range(S.fig4_seeds):
        net = network(S.depth, "no BN", s, device, S.init)
        gen = sweep.seed_trial({"seed": s}, fields=("seed",)).data
        update = find_diverging_update(net, data.x, data.y, lr=S.diverge_lr, batch_size=S.window_batch,
                                       max_steps=S.find_steps, generator=gen)
        updates.append(update)
        sweeps.append(None if update is None else
                      interpolation_sweep(net, update, np.linspace(0, 1, S.sweep_points), list(here.values())))
    return Anatomy(updates, sweeps, S.diverge_lr, S.depth, S.find_steps, here)


def figure4(anatomy: Anatomy) -> plt.Figure:
    """Figure 4 for the first seed with a diverging update: channel means (top) and variances
    (bottom) of layers 8, 44, 80 against the % of the update applied, one colour scale per panel."""
    s = next((i for i, sw in enumerate(anatomy.sweeps) if sw is not None), None)
    fig, axes = plt.subplots(2, 3, figsize=(10, 6), layout="constrained")
    if s is None:
        for ax in axes.ravel():
            ax.set_axis_off()
        axes[0, 1].text(0.5, 0.5, f"no update diverged at lr {anatomy.lr:g} in {anatomy.find_steps} steps\n"
                        f"of ResNet-{anatomy.depth} without BN: nothing to dissect", ha="center", va="center")
        return fig
    sw = anatomy.sweeps[s]
    half = 50 / (len(sw.fractions) - 1)
    for col, k in enumerate(FIGURE4_LAYERS):
        for row, (what, values) in enumerate([("mean", sw.means[anatomy.layers[k]]),
                                              ("variance", sw.variances[anatomy.layers[k]])]):
            ax = axes[row, col]
            im = ax.imshow(np.ma.masked_invalid(values), aspect="auto", origin="lower", cmap="viridis",
                           extent=(-0.5, values.shape[1] - 0.5, -half, 100 + half), interpolation="nearest")
            big = np.nanmax(np.abs(np.where(np.isfinite(values), values, np.nan))) > 100
            fig.colorbar(im, ax=ax, format="%.0e" if big else "%.2f")
            ax.grid(False)
            ax.set(title=f"layer {k}: channel {what}", xlabel="channel")
    for ax in axes[:, 0]:
        ax.set_ylabel("% of the update applied")
    fig.suptitle(f"ResNet-{anatomy.depth} without BN, lr {anatomy.lr:g}, seed {s}: "
                 f"update {anatomy.updates[s].step + 1}", fontsize="medium")
    return fig


def figure4_table(anatomy: Anatomy) -> pd.DataFrame:
    """Figure 4 seed by seed: the diverging update, the loss on its mini-batch before and after it,
    and the largest channel variance of layers 8, 44, 80 before (0 %) and after (100 %) it, beside
    the paper's colour bars."""
    rows = []
    for s, (u, sw) in enumerate(zip(anatomy.updates, anatomy.sweeps)):
        row = {"run": f"seed {s}", "update": "none" if u is None else u.step + 1,
               "loss before → after": "—" if u is None else f"{u.loss_before:.3g} → {_text(u.loss_after)}"}
        for k in FIGURE4_LAYERS:
            v = None if sw is None else sw.variances[anatomy.layers[k]]
            big = lambda a: _text(float(a[np.isfinite(a)].max()) if np.isfinite(a).any() else math.inf)
            row[f"layer {k}: largest variance, 0 % → 100 %"] = "—" if v is None else f"{big(v[0])} → {big(v[-1])}"
        rows.append(row)
    bars = dict(zip(FIGURE4_LAYERS, PAPER_FIGURE4_BARS["variance"]))
    rows.append({"run": "paper (colour bars)", "update": "—", "loss before → after": "→ > 10³",
                 **{f"layer {k}: largest variance, 0 % → 100 %": f"up to {b:g}" for k, b in bars.items()}})
    return pd.DataFrame(rows).set_index("run")


def check_figure4(page, anatomy: Anatomy) -> None:
    """Figure 4 over seeds: the later layer's variance explodes by orders of magnitude more."""
    claims = page.claims
    claims.section("bjorck2018-fig4", "Figure 4: anatomy of a diverging update")
    var = anatomy.final("variance")
    grew = [sw is not None and np.nanmax(np.where(np.isfinite(v := sw.variances[anatomy.layers[80]][-1]), v, np.inf))
            >= 1e3 * np.nanmax(sw.variances[anatomy.layers[80]][0]) for sw in anatomy.sweeps]
    page.glue("fig4_grew", int(sum(grew)), "d")
    page.glue("fig4_seeds", len(anatomy.sweeps), "d")
    page.glue("diverge_lr", anatomy.lr, "g")
    note = f"ResNet-{anatomy.depth} without BN, first diverging update at lr {anatomy.lr:g}; over seeds"
    claims.add("Fig. 4: at the end of the diverging update, layer 80's variance ≥ 10⁶ × layer 8's",
               at_least(_log10(var[80]) - _log10(var[8]), 6, paper="colour bars: 5·10¹⁶ vs 1"),
               source="bjorck2018, Fig. 4", quote="The moments explode in the higher layer (note the scale of the "
               "color bars)", note="log10 of the variance ratio; " + note)
    claims.add("Fig. 4: the variances reach the paper's colour bars (within 10² at layers 44 and 80)",
               all_of({f"layer {k}": close(math.log10(p), _log10(var[k]), abs=2)
                       for k, p in zip(FIGURE4_LAYERS[1:], PAPER_FIGURE4_BARS["variance"][1:])}),
               source="bjorck2018, Fig. 4", quote="the scale of the later layer's activations and variances is "
               "orders of magnitudes higher than the earlier layer", note="log10 of the largest channel variance; "
               + note + "; the paper's update is one of its own runs")


# ---------------------------------------------------------------------------- Figure 5
def figure5(at: AtInit) -> plt.Figure:
    """Figure 5: |channel mean| and channel std (each the mean over channels) against the paper's
    layer number, median and range over seeds, with and without BN; the paper's output 'up to 10²'."""
    layers = figure5_layers(at.depth)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True, layout="constrained")
    for ax, what in zip(axes, ["|channel mean|", "channel std"]):
        for name, ps in at.passes.items():
            runs = [[float((p.moments[k].mean.abs() if what[0] == "|" else p.moments[k].var.sqrt()).mean())
                     for k in layers] for p in ps]
            plots.band(ax, list(FIGURE5_LAYERS), runs, name, color=COLORS[name], marker="o", markersize=4)
        ax.set(yscale="log", xlabel=f"layer (paper's numbering; here ResNet-{at.depth})",
               title=f"{what}, mean over channels")
    axes[0].plot(110, 100, **plots.PAPER_POINT, label="paper: output 'up to 10²'")
    axes[0].set_ylabel("magnitude")
    axes[0].legend(fontsize="small")
    return fig


def check_figure5(page, at: AtInit) -> None:
    """Figure 5 over seeds: the output scale, and the growth with depth."""
    claims = page.claims
    claims.section("bjorck2018-fig5", "Figure 5: moments at initialization")
    scale = at.output_scale
    page.glue("out_nobn", np.median(scale["no BN"]), ".3g")
    page.glue("out_nobn_min", scale["no BN"].min(), ".3g")
    page.glue("out_nobn_max", scale["no BN"].max(), ".3g")
    page.glue("out_bn", np.median(scale["BN"]), ".3g")
    claims.add("Fig. 5: the unnormalized network's output reaches ≈ 10²",
               close(2.0, _log10(at.output_scale["no BN"]), abs=0.5), source="bjorck2018, Sec. 4 and Fig. 5",
               quote="the network transforms normalized inputs into an output that reaches scales of up to 10^2 "
               "for the largest output channels", note="log10 of the largest |channel mean| of the output, over "
               "weight seeds, within half a decade of 2")
    layers = figure5_layers(at.depth)
    rms = lambda p, k: float((p.moments[k].mean ** 2 + p.moments[k].var).mean().sqrt())
    growth = at.per_seed(lambda p: math.log10(rms(p, layers[-2]) / rms(p, layers[0])))
    claims.add("Fig. 5: the moments grow with depth without BN, far less with BN",
               all_of({"no BN ≥ 10²×": at_least(growth["no BN"], 2), "BN ≤ 10×": at_most(growth["BN"], 1)}),
               source="bjorck2018, Fig. 5", quote="For an unnormalized network, they seem to grow almost "
               "exponentially with depth", note="log10 of the RMS output of layer 102 over that of layer 6, over "
               "seeds")


# ---------------------------------------------------------------------------- Figure 6
def dominant_class(grads: torch.Tensor, labels: torch.Tensor) -> tuple[int, float]:
    """Figure 6's "distinctly yellow column", with its magnitude: the class j* with the largest
    mean predicted probability, and the mean probability the network gives it on the images of
    other classes (their ∂L_b/∂O_{b,j*}). 1: every image is put in class j*; 0.1: a uniform guess."""
    if grads.dim() != 2 or len(grads) != len(labels):
        raise ValueError(f"expected output gradients [B, classes] and B labels, got {tuple(grads.shape)} and "
                         f"{len(labels)}")
    g, y = grads.double().cpu(), labels.cpu()
    probs = g + F.one_hot(y, g.shape[1]).double()
    cls = int(probs.mean(0).argmax())
    others = y != cls
    return cls, float(g[others, cls].mean()) if others.any() else math.nan


def sign_agreement(grads: torch.Tensor) -> float:
    """How much the images of a mini-batch agree on each class's output gradient: the mean over
    classes j of |Σ_b ∂L_b/∂O_{b,j}| / Σ_b |∂L_b/∂O_{b,j}| (Table 1's b/a for the output layer):
    1 when every image pushes a class the same way, near 0 when the images' pushes cancel. A class
    that no image pushes at all (a column of exact zeros: a saturated softmax) is left out."""
    g = grads.double()
    total = g.abs().sum(0)
    pushed = total > 0
    return float((g.sum(0).abs()[pushed] / total[pushed]).mean()) if pushed.any() else math.nan


def _figure6_stats(at: AtInit) -> dict[str, dict[str, np.ndarray]]:
    """Per network, per seed: the dominant class's probability and the sign agreement."""
    out = {}
    for name, ps in at.passes.items():
        out[name] = {"dominant": np.array([dominant_class(p.output_grads, y)[1] for p, y in zip(ps, at.labels)]),
                     "agreement": np.array([sign_agreement(p.output_grads) for p in ps])}
    return out


def figure6(at: AtInit) -> plt.Figure:
    """Figure 6: heat maps of ∂L_b/∂O_{b,j} (one row per image, one column per class) of the first
    seed without and with BN, colour scale −1 … 1; right: every seed's dominant-class probability."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 4.2), layout="constrained", width_ratios=(1, 1, 0.9))
    for ax, name in zip(axes, ["no BN", "BN"]):
        im = ax.imshow(at.passes[name][0].output_grads.cpu().numpy(), aspect="auto", cmap="viridis", vmin=-1,
                       vmax=1, interpolation="nearest")
        ax.set(title=f"{name}, seed 0", xlabel="class j", xticks=range(0, CLASSES, 3))
        ax.grid(False)
    axes[0].set_ylabel("image b in the mini-batch")
    fig.colorbar(im, ax=axes[1], label="∂L_b/∂O_{b,j}")
    stats = _figure6_stats(at)
    for i, name in enumerate(["no BN", "BN"]):
        v = stats[name]["dominant"]
        axes[2].plot(v, np.full(len(v), i), "o", color=COLORS[name], alpha=0.7)
    axes[2].axvline(1 / CLASSES, **plots.REFERENCE, label="uniform guess")
    axes[2].set(yticks=[0, 1], yticklabels=["no BN", "BN"], ylim=(1.5, -0.5), xlim=(0, 1.02),
                xlabel="dominant class's probability,\nimages of other classes", title="every seed")
    axes[2].legend(fontsize="x-small", loc="upper left")
    return fig


def check_figure6(page, at: AtInit) -> None:
    """Figure 6 over seeds, with magnitude-aware statistics."""
    claims = page.claims
    claims.section("bjorck2018-fig6", "Figure 6: one class for every input")
    stats = _figure6_stats(at)
    for name, key in (("no BN", "nobn"), ("BN", "bn")):
        page.glue(f"dominant_{key}", np.median(stats[name]["dominant"]), ".2f")
        page.glue(f"agreement_{key}", np.median(stats[name]["agreement"]), ".2f")
    claims.add("Fig. 6: without BN the network puts almost every image in one class",
               at_least(stats["no BN"]["dominant"], 0.9, paper="one yellow column"), source="bjorck2018, Fig. 6",
               quote="the network tends to almost always predict the same (typically wrong) class",
               note="mean probability of the dominant class on images of other classes, over seeds")
    claims.add("Fig. 6: with BN no class takes most of the probability",
               at_most(stats["BN"]["dominant"], 0.5, paper="positive gradients throughout all classes"),
               source="bjorck2018, Fig. 6", quote="the network with BN does not exhibit the same behavior, instead "
               "positive gradients are distributed throughout all classes", note="the same statistic, over seeds")
    claims.add("Fig. 6: without BN the images' output gradients agree in sign, with BN far less",
               all_of({"no BN ≥ 0.9": at_least(stats["no BN"]["agreement"], 0.9),
                       "no BN − BN ≥ 0.2": difference_at_least(stats["no BN"]["agreement"],
                                                               stats["BN"]["agreement"], 0.2, paired=True)}),
               source="bjorck2018, Sec. 4", quote="the rows of the heatmap ... are highly correlated ... The "
               "gradients, summed across all images in the minibatch, therefore consist of a sum of terms with "
               "matching signs", note="|Σ_b g_bj| / Σ_b |g_bj|, mean over classes j, over seeds")


# ---------------------------------------------------------------------------- Table 1
# bjorck2018, Table 1: (network, layer) -> (a, b, a/b)
PAPER_TABLE1 = {("BN", 18): (7.5e-05, 3.0e-07, 251.8), ("BN", 54): (1.9e-05, 1.7e-07, 112.8),
                ("BN", 90): (6.6e-06, 1.6e-07, 40.7), ("no BN", 18): (6.3e-05, 3.6e-05, 1.7),
                ("no BN", 54): (2.2e-04, 8.4e-05, 2.6), ("no BN", 90): (2.6e-04, 1.2e-04, 2.1)}


def table1(at: AtInit) -> pd.DataFrame:
    """Table 1: a = Σ|d| and b = |Σ d| of the kernel gradient's summands (Eq. 4) per summand
    (divided by B·H·W), median over seeds, and a/b (mean ± SE over seeds), beside the paper's."""
    rows = []
    for (name, k), (pa, pb, pr) in PAPER_TABLE1.items():
        sums = at.sums(name, k)
        a = np.array([s.per_summand[0] for s in sums])
        b = np.array([s.per_summand[1] for s in sums])
        rows.append({"network": name, "layer": k, "summands B·H·W": sums[0].summands,
                     "a per summand": f"{np.median(a):.2g}", "paper a": f"{pa:.2g}",
                     "b per summand": f"{np.median(b):.2g}", "paper b": f"{pb:.2g}",
                     "a/b": Estimate.of(np.array([s.ratio for s in sums])).text(), "paper a/b": f"{pr:g}"})
    return pd.DataFrame(rows).set_index(["network", "layer"])


def check_table1(page, at: AtInit) -> None:
    """Table 1 over seeds: a/b near the paper's at each layer, the gap between BN and no BN, and
    the paper's absolute values read as per-summand values."""
    claims = page.claims
    claims.section("bjorck2018-table1", "Table 1: the summands of the kernel gradient")
    page.glue("t1_ratio", np.median(_geomean_ratio(at, True)), ".2g")
    page.glue("t1_whole", np.median(_geomean_ratio(at, False)), ".1e")
    b = {k: np.median([s.per_summand[1] * math.sqrt(s.summands) for s in at.sums("BN", k)]) for k in (18, 54, 90)}
    page.glue("t1_bn_sqrt", ", ".join(f"{b[k]:.2g}" for k in (18, 54, 90)))
    ratio = {key: _log10([s.ratio for s in at.sums(*key)]) for key in PAPER_TABLE1}
    for name, words in (("no BN", "agree to within a factor 2 or less"), ("BN", "differ by a factor of 10^2")):
        claims.add(f"Table 1: {name}, a/b within a factor 2 of the paper's at layers 18, 54, 90",
                   all_of({f"layer {k}": close(math.log10(PAPER_TABLE1[(name, k)][2]), ratio[(name, k)],
                                               abs=math.log10(2)) for k in (18, 54, 90)},
                          paper=", ".join(f"{PAPER_TABLE1[(name, k)][2]:g}" for k in (18, 54, 90))),
                   source="bjorck2018, Table 1 and Sec. 4.1", quote=f"these expressions {words}",
                   note="log10 a/b over weight seeds, within log10 2 of the paper's value")
    claims.add("Table 1: the summands cancel with BN, not without: a/b ≥ 10× larger with BN at every layer",
               all_of({f"layer {k}": difference_at_least(ratio[("BN", k)], ratio[("no BN", k)], 1, paired=True)
                       for k in (18, 54, 90)}, paper="10² vs ≤ 2"), source="bjorck2018, Sec. 4.1",
               quote="For an unnormalized networks the absolute value of (4) and the sum of the absolute values of "
               "the summands generally agree to within a factor 2 or less. For a batch normalized network, these "
               "expressions differ by a factor of 10^2", note="log10 a/b, BN − no BN, paired over seeds")
    claims.add("Table 1's a and b read as per-summand values: ours within 10× of the paper's",
               close(0.0, _log10(_geomean_ratio(at, True)), abs=1.0),
               kind=RECONSTRUCTION, source="bjorck2018, Table 1",
               note="log10 of the geometric mean over the 12 entries of ours / the paper's, over seeds; the paper "
                    "does not say how a and b are normalized")


# ---------------------------------------------------------------------------- Figure 7
def _maps(at: AtInit, name: str) -> list[torch.Tensor]:
    """M_{i,o} = Σ_{x',y'} |∂L/∂K_{o,i,x',y'}| at paper layer 45, per seed [in, out]."""
    return [p.kernel_grads[at.layers[45]].abs().sum(dim=(2, 3)).T.cpu() for p in at.passes[name]]


def figure7(at: AtInit) -> plt.Figure:
    """Figure 7: the channel-gradient maps M of the first seed, without and with BN, titled with
    the share of ‖M‖² in the top singular value."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
    for ax, name in zip(axes, ["no BN", "BN"]):
        m = _maps(at, name)[0]
        im = ax.imshow(m.numpy(), cmap="viridis", interpolation="nearest")
        ax.grid(False)
        fig.colorbar(im, ax=ax, format="%.2g")
        ax.set(title=f"{name}, seed 0: top share {kernels.top_singular_share(m):.1%}",
               xlabel="output channel o", ylabel="input channel i")
    return fig


def check_figure7(page, at: AtInit) -> None:
    """Figure 7 over seeds: the top singular share of M."""
    claims = page.claims
    claims.section("bjorck2018-fig7", "Figure 7: low-rank gradients across channels")
    share = {name: np.array([kernels.top_singular_share(m) for m in _maps(at, name)]) for name in NETWORKS}
    page.glue("share_nobn", np.median(share["no BN"]), ".1%")
    page.glue("share_bn", np.median(share["BN"]), ".1%")
    claims.add("Fig. 7: without BN the channel-gradient map at layer 45 is close to rank one",
               at_least(share["no BN"], 0.9, paper="a dominant low-rank structure"), source="bjorck2018, Fig. 7",
               quote="For an unnormalized network, we observe a dominant low-rank structure",
               note="share of ‖M‖² in the top singular value over seeds (≈ 0.64 for a large random positive "
                    "matrix)")
    claims.add("Fig. 7: the structure is less pronounced with BN",
               difference_at_least(share["no BN"], share["BN"], 0.0, paired=True), source="bjorck2018, Fig. 7",
               quote="This structure is less pronounced with batch normalization", note="top share, no BN − BN, "
               "paired over seeds")


# ---------------------------------------------------------------------------- Figures 8, 9 and Appendix K
THEOREM1_MS = (1, 3, 5)    # the numbers of factors M of Figures 8 and 9


def figure8(Ms=THEOREM1_MS) -> plt.Figure:
    """Figure 8: Theorem 1's Fuss–Catalan densities ρ_M(x) for each M of ``Ms``, log-log, beside
    the closed-form Marchenko–Pastur law (M = 1)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    xs = np.concatenate([np.logspace(-4, 0, 200), np.linspace(1, 15, 400)])
    for M in Ms:
        ax.plot(xs, rm.fuss_catalan_density(xs, M), label=f"M = {M} (support up to {rm.fuss_catalan_support(M):.3g})")
    mp = xs[xs < 4]
    ax.plot(mp, np.sqrt((4 - mp) / mp) / (2 * np.pi), **plots.THEORY, label="Marchenko–Pastur (= M = 1)")
    ax.set(xscale="log", yscale="log", ylim=(1e-3, 30), xlabel="squared singular value x", ylabel="density ρ_M(x)",
           title="Theorem 1: Fuss–Catalan densities")
    ax.legend(fontsize="small")
    return fig


@dataclass
class Theorem1Moments:
    """{k: {M: E[x^k] under ρ_M}} for k = 0 (the total mass), 1 and 2, by quadrature."""
    moments: dict

    def __str__(self) -> str:
        fmt = lambda k, digits: str({M: f"{v:.{digits}f}" for M, v in self.moments[k].items()})
        return " ".join(["∫ρ_M:", fmt(0, 10), " E[x]:", fmt(1, 6), " E[x²]:", fmt(2, 6)])


def theorem1_moments(Ms=THEOREM1_MS) -> Theorem1Moments:
    """The mass (1), mean (1) and second moment (M + 1) of ρ_M for each M of ``Ms``
    (:func:`gradprobe.theory.random_matrices.fuss_catalan_moment`)."""
    return Theorem1Moments({k: {M: rm.fuss_catalan_moment(k, M) for M in Ms} for k in (0, 1, 2)})


@dataclass
class Figure9:
    """Figure 9: {M: squared singular values [repeats, N]} of products of M Gaussian N × N matrices;
    ``ks[M]``: the KS distance of each repeat to Theorem 1; ``wrong[M]``: that of all repeats to
    the law of M + 1 factors (how far a wrong law lies)."""
    squared: dict
    ks: dict
    wrong: dict
    N: int

    @property
    def tolerance(self) -> float:
        """5/N: a sample of N eigenvalues of one matrix lies within a few spacings of its quantiles."""
        return 5 / self.N


def sample_figure9(N: int, repeats: int, generator: torch.Generator, Ms=THEOREM1_MS) -> Figure9:
    """Figure 9: ``repeats`` products of M N × N Gaussian matrices for each M of ``Ms``
    (:func:`gradprobe.theory.random_matrices.product_squared_singular_values`) and their KS distances."""
    squared = {M: rm.product_squared_singular_values(N, M, repeats, generator=generator) for M in Ms}
    return Figure9(squared, {M: np.array([rm.ks_distance(r, M) for r in v]) for M, v in squared.items()},
                   {M: rm.ks_distance(v, M + 1) for M, v in squared.items()}, N)


def figure9(found: Figure9) -> plt.Figure:
    """Figure 9: histograms (counts over all repeats, 50 bins) of the singular values s of each M,
    overlaid in the first panel as in the paper, then one panel each beside Theorem 1's density."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4), layout="constrained")
    repeats = next(iter(found.squared.values())).shape[0]
    for M, sq in found.squared.items():
        axes[0, 0].hist(np.sqrt(sq.ravel()), bins=50, histtype="step", linewidth=1.5, label=f"M = {M}")
    axes[0, 0].set(title="all three (the paper's left panel)", xlabel="singular value s",
                   ylabel=f"count ({repeats} repeats)")
    axes[0, 0].legend(fontsize="small")
    for ax, (M, sq) in zip(axes.ravel()[1:], found.squared.items()):
        s = np.sqrt(sq.ravel())
        heights, _, _ = ax.hist(s, bins=50, density=True, color="tab:blue", alpha=0.6, label=f"N = {found.N}")
        grid = np.linspace(1e-3, s.max() * 1.02, 400)
        ax.plot(grid, rm.singular_value_density(grid, M), **plots.THEORY, label="Theorem 1, 2s ρ_M(s²)")
        ax.set_ylim(0, 1.3 * heights.max())        # for M > 1 the density diverges at s → 0
        ax.set(title=f"M = {M}: KS {np.mean(found.ks[M]):.2g} per repeat", xlabel="singular value s",
               ylabel="density")
        ax.legend(fontsize="x-small")
    return fig


@dataclass
class Conditioning:
    """Appendix K: condition numbers κ [len(Ms), repeats] of nested products (one chain per repeat)
    of M N × N Gaussian matrices; ``slopes``: per chain, the fitted growth of ln κ per factor."""
    Ms: tuple
    N: int
    kappa: np.ndarray

    @property
    def slopes(self) -> np.ndarray:
        return np.polyfit(np.asarray(self.Ms, dtype=float), np.log(self.kappa), 1)[0]

    @property
    def theory(self) -> float:
        """ln of the growth per factor for many factors (:func:`gradprobe.theory.random_matrices.condition_growth`)."""
        return math.log(rm.condition_growth(self.N))


def measure_appendix_k(Ms, N: int, repeats: int, generator: torch.Generator) -> Conditioning:
    """Appendix K: ``repeats`` chains X_1, X_1X_2, … and their condition numbers at each M of ``Ms``
    (:func:`gradprobe.theory.random_matrices.condition_numbers` with ``nested=True``)."""
    if len(Ms) < 2:
        raise ValueError(f"Appendix K's growth needs at least two numbers of factors, got Ms={Ms!r}")
    return Conditioning(tuple(Ms), N, rm.condition_numbers(Ms, N, repeats, generator=generator, nested=True))


def appendix_k(found: Conditioning) -> plt.Figure:
    """Appendix K: the condition numbers of every chain (grey), their geometric mean, and the
    theory's growth per factor drawn through the geometric mean at the first M."""
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    Ms = np.asarray(found.Ms)
    ax.plot(Ms, found.kappa, color="0.75", linewidth=0.5)
    mean = np.exp(np.log(found.kappa).mean(axis=1))
    ax.plot(Ms, mean, **plots.OURS, color="tab:blue", label=f"geometric mean of {found.kappa.shape[1]} chains")
    ax.plot(Ms, mean[0] * np.exp(found.theory * (Ms - Ms[0])), **plots.THEORY,
            label=f"theory: × {math.exp(found.theory):.3g} per factor")
    ax.set(yscale="log", xlabel="number of factors M", ylabel="condition number s_max/s_min",
           title=f"Appendix K: N = {found.N}")
    ax.legend(fontsize="small")
    return fig


def check_random_matrices(page, theorem1: Theorem1Moments, fig9: Figure9, cond: Conditioning) -> None:
    """Theorem 1, Figures 8 and 9 and Appendix K: the theory checked by quadrature (machinery), the
    samples against it with a tolerance of their own precision, and the growth of the condition number."""
    claims = page.claims
    claims.section("bjorck2018-fig9", "Figures 8, 9 and Appendix K: products of random matrices")
    m = theorem1.moments
    page.glue("ks_max", max(float(np.mean(v)) for v in fig9.ks.values()), ".2g")
    page.glue("ks_tolerance", fig9.tolerance, ".2g")
    page.glue("rm_N", fig9.N, "d")
    page.glue("k_measured", math.exp(float(np.mean(cond.slopes))), ".3g")
    page.glue("k_theory", math.exp(cond.theory), ".3g")
    page.glue("cond_N", cond.N, "d")
    claims.add("Thm. 1: ρ_M has mass 1, mean 1 and second moment M + 1 (M = 1, 3, 5)",
               all_of({f"M={M}": all_of({"mass": close(1.0, m[0][M], abs=1e-5), "mean": close(1.0, m[1][M], abs=1e-5),
                                         "E[x²]": close(M + 1.0, m[2][M], abs=1e-4)}) for M in m[0]}),
               kind=MACHINERY, source="bjorck2018, Thm. 1", note="quadrature of Eq. (5), error below 1e-8")
    claims.add("Fig. 9's test can fail: the samples lie far from the law of one more factor",
               all_of({f"M={M}": at_least(w, 2 * fig9.tolerance) for M, w in fig9.wrong.items()}),
               kind=MACHINERY, source="bjorck2018, Fig. 9", note="KS of all repeats to ρ_{M+1}, ≥ 2× the tolerance")
    claims.add(f"Fig. 9: the singular values of N = {fig9.N} products follow Theorem 1",
               all_of({f"M={M}": at_most(Estimate.of(ks, "repeats"), fig9.tolerance) for M, ks in fig9.ks.items()}),
               source="bjorck2018, Figs. 8 and 9", quote="In Figure 9 we investigate the singular value distribution "
               "for practically sized matrices", note=f"KS distance of each repeat, ≤ 5/N = {fig9.tolerance:.2g}")
    near0 = {f"M={M}": Estimate.of((sq < 0.01).mean(axis=1), "repeats") for M, sq in fig9.squared.items()}
    claims.add("Fig. 9: more factors, more singular values near 0 (heavier tails)", ordered(near0),
               source="bjorck2018, Sec. 5", quote="By multiplying more matrices ... the singular values distribution "
               "becomes significantly more heavy-tailed", note="fraction of squared singular values below 0.01")
    claims.add("App. K: the condition number grows with depth, at the theory's rate per factor",
               close(cond.theory, Estimate.of(cond.slopes, "chains"), rel=0.1), source="bjorck2018, Sec. 5 and App. K",
               quote="the ratio between the largest and smallest singular value (the condition number) will "
               "increase with depth", note=f"ln κ per factor, fitted per chain (N = {cond.N}); the paper's column: "
               "the Lyapunov gap ½(ψ(N/2) − ψ(1/2)) of many factors, approached from above at M ≤ 8")
