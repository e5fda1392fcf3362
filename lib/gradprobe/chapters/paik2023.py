"""Chapter *Disharmony between ReLU and BN* (Paik & Choi 2023): the drivers, figures and claims of
notebook ``04_paik2023``, in the order of its sections.

0. :func:`settings` (the three scales) and :func:`cost` (the chapter's work, for time estimates).
1. The theory: batched BN/LN MLPs at initialization (:class:`MLPSetting`, :func:`mlp_trial`,
   :func:`run_theory`, :func:`figure_forward_backward`), the n_out/n_in factor
   (:func:`width_trial`), :func:`check_theory` (with the quadrature and sampler checks).
2. Figure 1(b), activations in a 51-layer VGG-like network (:class:`DeepSetting`,
   :func:`deep_trial`, :func:`run_figure1b`, :func:`figure1b`, :func:`check_figure1b`), the
   depth and width of the prediction's error (:func:`run_depth_width`, :func:`figure_depth_width`).
3. Figure 1(a), architectures per effective depth (:class:`ArchSetting`, :func:`arch_trial`,
   :func:`run_figure1a`, :func:`figure1a`, :func:`check_figure1a`).
4. Alleviation during training and its mechanism (:class:`AlleviationSetting`,
   :func:`alleviation_trial`, :func:`run_alleviation`, :func:`figure_alleviation`,
   :func:`figure_mechanism`, :func:`check_alleviation`).
5. LALC, reconstructed (it is LARC's clip mode): training trials (:class:`TrainSetting`,
   :func:`train_trial`), learning rates tuned on seeds of their own (:func:`run_tuning`), the
   small- and large-batch comparisons (:func:`run_small_batch`, :func:`run_large_batch`, their
   figures and :func:`check_lalc`).
6. One rate, three measurements (:func:`measure_three_ways`, :func:`check_three_ways`).

Every multi-trial experiment is a :mod:`gradprobe.sweep` of frozen configurations run by a
``*_trial`` function of this module; a trial seeds itself from its configuration
(:func:`gradprobe.sweep.seed_trial`), so its result depends neither on the order of the trials nor
on the worker that ran it. Batched trials (:func:`mlp_trial`) compute all their repeats in one
pass of large products. Checks take the page (:class:`gradprobe.book.page.Page`), add the
section's rows to ``page.claims`` and glue the numbers the prose quotes.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import sweep
from ..book import plots
from ..book.claims import MACHINERY, RECONSTRUCTION, all_of, at_most, close, difference_at_least, ordered
from ..book.scales import settings as make_settings
from ..checks import int_at_least, one_of, positive_int
from ..data.cifar10 import cifar10, to_tensor
from ..data.tensors import channel_stats, cifar10_tensors
from ..diagnose import diagnose
from ..measure import correlation, repeats
from ..measure.gsc import gsc_profile
from ..measure.hooks import rate_layers, record
from ..measure.rates import fit_rate, gradient_variances, network_rate, segments_of
from ..measure.stats import network_ratios, variance
from ..networks import resnet, swin, vgg, vit
from ..networks.layers import Layer, activation_fn
from ..networks.mlp import mlp
from ..theory import gaussian
from ..train.loop import evaluate, fit
from ..train.optim import LALC, LARC, make_optimizer
from ..train.schedules import linear_warmup

__all__ = ["settings", "cost", "relu_moments", "MLPSetting", "mlp_trial", "WidthSetting", "width_trial", "Theory",
           "run_theory", "figure_forward_backward", "check_theory", "FIGURE1B_ACTIVATIONS", "deep_config",
           "DeepSetting", "deep_trial", "Figure1b", "run_figure1b", "figure1b", "check_figure1b", "DepthWidth",
           "run_depth_width", "figure_depth_width", "check_depth_width", "ArchSetting", "arch_settings",
           "arch_trial", "Figure1a", "run_figure1a", "figure1a", "check_figure1a", "AlleviationSetting",
           "alleviation_trial", "Alleviation", "run_alleviation", "figure_alleviation", "figure_mechanism",
           "check_alleviation", "TrainSetting", "train_trial", "RULES", "Tuning", "run_tuning", "Comparison",
           "run_small_batch", "run_large_batch", "figure_lalc_small_batch", "figure_lalc_large_batch",
           "check_lalc", "measure_three_ways", "check_three_ways"]

SOURCE = "paik2023"
R_RELU = gaussian.RELU_RATE                       # π/(π−1)
VAR_RELU = gaussian.forward_ratio("relu")         # (π−1)/(2π)
APPROX = 0.05   # "approximately": within 5% of the paper's variance rate (2.5% of its norm rate)

# =============================================================================================
# 0. Settings and cost
# =============================================================================================

_NOTES = {
    "depth": "BN/LN MLPs of the theory checks, Gaussian inputs, random output gradient (ours)",
    "repeats": "fresh networks per activation, computed together in one batched pass",
    "deep_stages": "Fig. 1(b): (width, convs) per stage, a max-pool between (the paper says only "
                   "'51-layer VGG-like'; ours)",
    "map_sizes": "map size of the long stage in the padding study (ours)",
    "dw_widths": "widths × depths of the prediction-error study (ours)",
    "arch_vgg": "Fig. 1(a): torchvision's VGG-16 layout, widths divided by the number (ours)",
    "gn_group": "channels per GroupNorm group (ours; 4 keeps it GroupNorm at every width)",
    "swin": "(blocks per stage, width of stage 1) of the Swin-style network (ours)",
    "arch_seeds": "fresh weights and a fresh CIFAR-10 batch per seed",
    "train_depth": "alleviation: BN–ReLU MLP, plain SGD, CIFAR-10 at 8×8 (ours)",
    "opt_depth": "LALC experiments: BN–ReLU MLP on CIFAR-10 at 8×8 (ours)",
    "small_lr": "high enough that plain SGD without warm-up trains worse (the condition of the claim)",
    "lr_grids": "learning rates tried per rule, on the tuning seeds, by validation accuracy",
    "opt_seeds": "seeds of the verdict (the tuning seeds are others)",
}


def settings(scale: str):
    """The chapter's settings at ``scale`` (:func:`gradprobe.book.scales.settings`): book scale in
    full, smoke and paper as overrides."""
    return make_settings(
        scale,
        book=dict(mc_samples=1_000_000, depth=30, width=256, batch=256, repeats=8,
                  deep_stages=((16, 2), (32, 48)), deep_batch=64, deep_seeds=5,
                  map_sizes=(8, 16, 32), map_batch=32, map_seeds=4,
                  dw_widths=(64, 128, 256, 512, 1024), dw_depths=(10, 20, 40), dw_samples=2048,
                  arch_vgg=("vgg16", 2), resnets=(20, 56), vit=(6, 128), swin=((2, 2, 2), 32), gn_group=4,
                  arch_batch=64, arch_seeds=5,
                  train_depth=30, train_width=256, train_batch=128, train_steps=200, train_lr=0.1, train_seeds=5,
                  probe=256, n_train=20_000, n_val=2_000, n_test=2_000, pool=4,
                  opt_depth=16, opt_width=128, small_batch=128, small_steps=800, small_lr=0.5, warmup=160,
                  etas=(0.0003, 0.001, 0.003, 0.01), large_batch=1024, large_steps=150, large_warmup=30,
                  lr_grids=(("sgd", (0.125, 0.25, 0.5, 1.0)), ("lars", (1.0, 2.0, 4.0)),
                            ("lamb", (0.004, 0.008, 0.016)), ("lalc", (0.4, 0.8, 1.6, 3.2))),
                  opt_seeds=5, tune_seeds=1, three_ways=3),
        smoke=dict(mc_samples=400_000, depth=12, width=64, batch=64, repeats=2,
                   deep_stages=((8, 1), (16, 10)), deep_batch=16, deep_seeds=2,
                   map_sizes=(8, 16), map_batch=8, map_seeds=2,
                   dw_widths=(32, 64), dw_depths=(6, 12), dw_samples=128,
                   arch_vgg=("vgg16", 8), resnets=(8, 14), vit=(2, 32), swin=((2, 2), 16), arch_batch=16,
                   arch_seeds=2, train_depth=8, train_width=64, train_batch=32, train_steps=12, train_seeds=2,
                   probe=64, n_train=1024, n_val=128, n_test=256, opt_depth=4, opt_width=32, small_batch=32,
                   small_steps=16, warmup=4, etas=(0.01,), large_batch=128, large_steps=8, large_warmup=2,
                   lr_grids=(("sgd", (1.0,)), ("lars", (4.0,)), ("lamb", (0.004,)), ("lalc", (1.6,))),
                   opt_seeds=2, three_ways=2),
        paper=dict(mc_samples=10_000_000, depth=50, width=512, batch=512, repeats=32,
                   deep_stages=((64, 2), (128, 48)), deep_batch=128, deep_seeds=10, map_batch=64, map_seeds=5,
                   dw_widths=(64, 128, 256, 512, 1024, 2048), dw_depths=(10, 20, 40, 80), dw_samples=8192,
                   arch_vgg=("vgg16", 1), resnets=(56, 110), vit=(12, 384), swin=((2, 2, 6), 64),
                   arch_batch=128, arch_seeds=10, train_width=512, train_steps=2000, train_seeds=10, probe=512,
                   n_train=45_000, n_val=5_000, n_test=10_000, pool=1, opt_depth=30, opt_width=512,
                   small_steps=20_000, warmup=4000, large_batch=4096, large_steps=2400, large_warmup=480,
                   opt_seeds=10, tune_seeds=2, three_ways=8),
        notes=_NOTES)


def cost(S) -> float:
    """The chapter's work at settings ``S`` in GFLOP of matrix products (6·batch·fan_in·fan_out per
    layer and pass, forward and backward), section by section, plus a fixed
    :data:`TRIAL_OVERHEAD` per sweep trial; the time estimates of the opening box are this run's
    seconds per unit times each scale's units."""
    flops = lambda batch, fan_in, fan_out, layers=1: 6.0 * batch * fan_in * fan_out * layers
    theory = 20 * S.repeats * flops(S.batch, S.width, S.width, S.depth)
    deep_convs = sum(n for _, n in S.deep_stages)
    deep = (8 * S.deep_seeds + 1) * flops(S.deep_batch, 9 * S.deep_stages[-1][0], S.deep_stages[-1][0] * 256,
                                           deep_convs)
    deep += len(S.map_sizes) * S.map_seeds * flops(S.map_batch, 9 * S.deep_stages[-1][0],
                                                   S.deep_stages[-1][0] * max(S.map_sizes) ** 2, deep_convs)
    dw = 2 * sum(max(2, S.dw_samples // w) * flops(S.batch, w, w, d) for w in S.dw_widths for d in S.dw_depths)
    arch = 7 * S.arch_seeds * flops(S.arch_batch, 9 * 64 // S.arch_vgg[1], 64 // S.arch_vgg[1] * 1024, 16)
    in_dim = 3 * (32 // S.pool) ** 2
    allev = S.train_seeds * S.train_steps * 1.5 * flops(S.train_batch, S.train_width, S.train_width, S.train_depth)
    per_step = lambda batch: flops(batch, S.opt_width, S.opt_width, S.opt_depth) + flops(batch, in_dim, S.opt_width)
    runs_small = (3 * S.opt_seeds + len(S.etas) * S.tune_seeds) * S.small_steps * per_step(S.small_batch)
    runs_large = (4 * S.opt_seeds + sum(len(g) for _, g in S.lr_grids) * S.tune_seeds) * S.large_steps \
        * per_step(S.large_batch)
    return (theory + deep + dw + arch + allev + runs_small + runs_large) / 1e9 + TRIAL_OVERHEAD * _trials(S)


TRIAL_OVERHEAD = 2.5   # GFLOP-equivalents per sweep trial: building, storing, loading (about 50 ms on a CPU)


def _trials(S) -> int:
    """How many sweep trials the chapter runs at settings ``S``."""
    return (2 * len(THEORY_ACTIVATIONS) + 1 + len(FIGURE1B_ACTIVATIONS) * (S.deep_seeds + 1)
            + len(S.map_sizes) * S.map_seeds + 2 * len(S.dw_widths) * len(S.dw_depths) + 7 * S.arch_seeds
            + S.train_seeds + (len(S.etas) + sum(len(g) for _, g in S.lr_grids)) * S.tune_seeds + 7 * S.opt_seeds)


# =============================================================================================
# 1. The theory
# =============================================================================================

def relu_moments(samples: int, generator: torch.Generator | None = None) -> pd.DataFrame:
    """The three moments of relu(z), z ~ N(0, 1), behind He's initialization and r(ReLU):
    E[relu(z)²] (He's assumption ½), Var[relu(z)] = (π−1)/(2π) (what BN sees) and E[relu'(z)²] = ½
    (backward): closed form (first row) beside a Monte Carlo estimate from ``samples`` float64 draws
    of ``generator`` (second row)."""
    positive_int("samples", samples)
    z = torch.randn(samples, generator=generator, dtype=torch.float64)
    r_z = torch.relu(z)
    return pd.DataFrame(
        {"E[relu(z)²] (He's assumption)": [0.5, float((r_z ** 2).mean())],
         "Var[relu(z)] (what BN sees)": [VAR_RELU, float(r_z.var())],
         "E[relu'(z)²] (backward)": [gaussian.backward_ratio("relu"), float((z > 0).double().mean())]},
        index=["closed form", f"Monte Carlo, {samples:,} samples"])


@dataclass(frozen=True)
class MLPSetting:
    """``repeats`` fresh ``Linear -> norm -> activation`` networks (``depth`` layers of ``width``,
    He init, no affine parameters) on Gaussian batches of ``batch``, with a random output gradient
    ∂ℓ/∂x^(L) ~ N(0, I/width): :func:`mlp_trial`."""

    activation: str
    norm: str
    depth: int
    width: int
    batch: int
    repeats: int
    seed: int = 0


MLP_CHUNK = 8   # networks per batched pass of mlp_trial


def mlp_trial(c: MLPSetting) -> dict:
    """All ``c.repeats`` networks of :class:`MLPSetting` at once
    (:func:`gradprobe.measure.repeats.batched_variances`): ``forward`` Var[h_n] and ``backward``
    Var[g_n], each [repeats, depth], and ``rates`` [repeats], the growth of Var[g_n] per layer toward
    the input fitted on layers 2…L (:func:`gradprobe.measure.rates.fit_rate`; layer 1 is fed by the
    data, not by an activation)."""
    gens = sweep.seed_trial(c)
    parts = []
    for start in range(0, c.repeats, MLP_CHUNK):        # chunks bound the memory; draws go repeat by repeat
        draws = repeats.draw(min(MLP_CHUNK, c.repeats - start), c.depth, c.width, c.batch, generator=gens.weights)
        parts.append(repeats.batched_variances(draws, c.activation, c.norm, generator=gens.data))
    forward, backward = (torch.cat([p[i] for p in parts]) for i in (0, 1))
    backward = backward.double()
    fitted = [fit_rate(b[1:], reverse=True).rate for b in backward]
    return {"forward": forward.double(), "backward": backward, "rates": torch.tensor(fitted, dtype=torch.float64)}


@dataclass(frozen=True)
class WidthSetting:
    """BN–ReLU MLPs whose widths alternate between ``width``/2 and 3·``width``/2 (``depth`` layers, He
    init, a linear head to 10 classes), ``repeats`` networks on Gaussian batches with random labels:
    :func:`width_trial`."""

    depth: int
    width: int
    batch: int
    repeats: int
    seed: int = 0


def width_trial(c: WidthSetting) -> dict:
    """Measured over predicted Var(g_n)/Var(g_{n+1}) = r(ReLU)·n_out/n_in for the pairs fed by ReLU
    where the next layer widens (n_out/n_in = 3) and where it narrows (1/3): ``up`` and ``down``,
    one mean per network [repeats]."""
    int_at_least("depth", c.depth, 6)
    gens = sweep.seed_trial(c)
    widths = [c.width // 2, 3 * c.width // 2] * (c.depth // 2)
    up, down = [], []
    for _ in range(c.repeats):
        layers = [Layer(a, b, activation="relu", norm="batch", generator=gens.weights) for a, b in zip(widths, widths[1:])]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10))
        x = torch.randn(c.batch, widths[0], generator=gens.data)
        y = torch.randint(0, 10, (c.batch,), generator=gens.data)
        v, _, _ = gradient_variances(net, x, y, layers=[m.linear for m in layers])
        v = v.numpy()
        ratio = {"up": [], "down": []}
        for n in range(1, len(layers) - 1):                       # pairs fed by ReLU (layer 1 sees the data)
            w_ratio = layers[n + 1].linear.out_features / layers[n + 1].linear.in_features
            ratio["up" if w_ratio > 1 else "down"].append(v[n] / v[n + 1] / (R_RELU * w_ratio))
        up.append(np.mean(ratio["up"]))
        down.append(np.mean(ratio["down"]))
    return {"up": np.array(up), "down": np.array(down)}


@dataclass
class Theory:
    """Section 1's measurements: ``mlps`` (norm, activation) -> :func:`mlp_trial` result; ``table``
    per activation, predicted and measured rate (mean, SE over networks) with BN and with LN;
    ``widths``: :func:`width_trial` result."""

    mlps: dict
    table: pd.DataFrame
    widths: dict
    depth: int
    width: int


THEORY_ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "tanh", "softplus", "identity",
                      "dropout")


def run_theory(S, scheduler=None) -> Theory:
    """Section 1: every activation of :data:`THEORY_ACTIVATIONS` with BatchNorm and with LayerNorm
    (:func:`mlp_trial`, ``S.repeats`` networks of ``S.depth`` × ``S.width``, batch ``S.batch``), and
    the width factor (:func:`width_trial`, ``S.repeats`` networks), as sweeps."""
    configs = [MLPSetting(a, n, S.depth, S.width, S.batch, S.repeats) for n in ("batch", "layer")
               for a in THEORY_ACTIVATIONS]
    done = sweep.run(mlp_trial, configs, scheduler=scheduler, desc="theory MLPs")
    done.raise_failures()
    mlps = {(c.norm, c.activation): done[c] for c in configs}
    rows = []
    for a in THEORY_ACTIVATIONS:
        bn, ln = mlps["batch", a]["rates"].numpy(), mlps["layer", a]["rates"].numpy()
        rows.append((a, gaussian.predicted_rate(a, "batch"), bn.mean(), _se(bn),
                     gaussian.predicted_rate(a, "layer"), ln.mean(), _se(ln)))
    table = pd.DataFrame(rows, columns=["activation", "BN: predicted r(φ)", "BN: measured", "BN: SE",
                                        "LN: predicted", "LN: measured", "LN: SE"]).set_index("activation")
    width_config = WidthSetting(S.depth, S.width, S.batch, S.repeats)
    widths = sweep.run(width_trial, [width_config], scheduler=scheduler, desc="width factor")
    widths.raise_failures()
    return Theory(mlps, table, widths[width_config], S.depth, S.width)


def _se(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan


def figure_forward_backward(theory: Theory) -> plt.Figure:
    """The theory's two halves on BN–ReLU MLPs at initialization (the networks of
    :func:`run_theory`): left, the forward Var[h_n] per layer (median and range over networks)
    against 2·Var[relu(z)] and He's 1; right, the backward Var[g_n] against the last layer's value
    × (π/(π−1))^(L−n)."""
    result = theory.mlps["batch", "relu"]
    depth = theory.depth
    k = np.arange(1, depth + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    plots.band(ax1, k, result["forward"].numpy(), "measured (median, range)", **plots.OURS)
    ax1.axhline(2 * VAR_RELU, **plots.THEORY, label=f"2·Var[relu(z)] = {2 * VAR_RELU:.3f}")
    ax1.axhline(1.0, **plots.PAPER, label="He's assumption: 1")
    ax1.set(ylim=(0, 2.2), xlabel="layer n (input → output)", ylabel="Var[h_n] (linear-layer output)",
            title="forward: constant, but below He's 1")
    ax1.legend(loc="upper right")
    backward = result["backward"].numpy()
    plots.band(ax2, k, backward, "measured (median, range)", **plots.OURS)
    ax2.plot(k, np.median(backward[:, -1]) * R_RELU ** (depth - k), **plots.THEORY,
             label="last layer × (π/(π−1))^(L−n)")
    ax2.set(yscale="log", xlabel="layer n (input → output)", ylabel="Var[g_n] = Var[∂ℓ/∂h_n]",
            title="backward: grows by π/(π−1) per layer")
    ax2.legend(loc="upper right")
    fig.tight_layout()
    fig.suptitle(f"{depth}-layer BN–ReLU MLPs at initialization (width {theory.width}, "
                 f"{backward.shape[0]} networks; layer 1 sees the data)", y=1.04)
    return fig


def _mc_rate(act: str, samples: int, generator: torch.Generator, chunks: int = 10) -> np.ndarray:
    """E[φ'(z)²]/Var[φ(z)] by Monte Carlo in ``chunks`` independent float64 chunks (one estimate each)."""
    phi = activation_fn(act)
    out = []
    for _ in range(chunks):
        z = torch.randn(samples // chunks, generator=generator, dtype=torch.float64, requires_grad=True)
        y = phi(z)
        (dy,) = torch.autograd.grad(y.sum(), z)
        out.append(float((dy ** 2).mean() / y.detach().var()))
    return np.array(out)


def _closed_form_rate(act: str) -> float | None:
    """r(φ) in closed form where there is one: ReLU π/(π−1), LeakyReLU(a) (1+a²)/((1+a²) −
    (1−a)²/π), identity 1."""
    if act == "relu":
        return math.pi / (math.pi - 1)
    if act == "leaky_relu":
        a = 0.01
        return (1 + a * a) / ((1 + a * a) - (1 - a) ** 2 / math.pi)
    if act == "identity":
        return 1.0
    return None


def check_theory(page, S, theory: Theory) -> None:
    """Section 1's rows: the forward variance below He's expectation and the backward rate π/(π−1)
    (paper), LayerNorm's rate 1 (paper), the n_out/n_in factor (reconstruction), and the machinery
    checks (sampler against closed forms, quadrature against closed forms or Monte Carlo)."""
    c = page.claims
    relu = theory.mlps["batch", "relu"]
    forward = relu["forward"][:, 1:].mean(dim=1).numpy()        # per network, layers 2…L
    rates = relu["rates"].numpy()
    c.add("ReLU removes more variance than He's initialization assumes: Var[h_n] = 2·Var[relu] < 1",
          all_of({"below He's 1": at_most(forward, 1.0),
                  "at 2·Var[relu(z)]": close(2 * VAR_RELU, forward, rel=APPROX)}),
          source=f"{SOURCE}, abstract", quote="ReLU reduces the variance by more than the expected amount",
          note="forward variance of the linear outputs of BN–ReLU MLPs at init, mean over layers 2…L")
    c.add("BatchNorm's recovery amplifies the gradient: Var(g_n) grows by π/(π−1) per layer",
          close(R_RELU, rates, rel=APPROX), source=f"{SOURCE}, abstract; Fig. 1 caption",
          quote="batch normalization amplifies the gradient during its recovery; "
                "the explosion rate is approximately π/(π−1) in vanilla networks with batch normalization")
    ln = theory.mlps["layer", "relu"]["rates"].numpy()
    c.add("LayerNorm–ReLU MLP does not explode (rate E[φ'²]/E[φ²] = 1)", close(1.0, ln, abs=APPROX),
          source=f"{SOURCE}, Fig. 1 caption",
          quote="gradient explosion does not occur in architectures with layer normalization")
    w = theory.widths
    c.add("changing widths: Var(g_n)/Var(g_n+1) = r·n_out/n_in (measured / predicted)",
          all_of({"widening ×3": close(1.0, w["up"], rel=APPROX), "narrowing ×1/3": close(1.0, w["down"], rel=APPROX)}),
          kind=RECONSTRUCTION, source=f"{SOURCE}, Sec. 2 (He's N(0, 2/n_out)); the factor is our derivation",
          note="the paper's text available here does not give the factor; we derive and test it")
    # machinery: the sampler and the quadrature
    z = torch.randn(S.mc_samples, generator=page.gen.data, dtype=torch.float64).view(10, -1)
    var_chunks = torch.relu(z).var(dim=1).numpy()
    c.add("Monte Carlo Var[relu(z)] against (π−1)/(2π)", close(VAR_RELU, var_chunks, rel=0.01),
          kind=MACHINERY, source="this book: sampler check")
    for act in ("relu", "leaky_relu", "identity", "gelu", "silu", "tanh", "elu", "selu"):
        quad = gaussian.explosion_rate(act)
        exact = _closed_form_rate(act)
        if exact is not None:
            check, how = close(exact, quad, rel=1e-5), "closed form"
        else:
            check, how = close(quad, _mc_rate(act, S.mc_samples, page.gen.data), rel=0.01), "Monte Carlo"
        c.add(f"quadrature r({act}) against its {how}", check, kind=MACHINERY, source="this book: quadrature check")
    page.glue("theory_forward", float(forward.mean()), ".3f")
    page.glue("theory_rate", float(rates.mean()), ".3f")
    page.glue("theory_rate_se", _se(rates), ".2g")
    page.glue("theory_ln_rate", float(ln.mean()), ".3f")
    page.glue("theory_networks", len(rates))


# =============================================================================================
# 2. Figure 1(b): activations in a 51-layer VGG-like network
# =============================================================================================

FIGURE1B_ACTIVATIONS = ("relu", "leaky_relu", "elu", "silu", "gelu", "mish", "identity", "dropout")
SMOOTHER = ("leaky_relu", "elu", "silu", "gelu")   # the caption's smoother variants (its citations)


def deep_config(stages, map_size: int = 16, image_size: int = 32) -> tuple:
    """The "51-layer VGG-like architecture" of Figure 1(b) as we build it: ``stages`` = ((width,
    convs) of the first stage, (width, convs) of the long stage); the first stage runs at
    ``image_size``, then 2×2 max-pools bring the maps to ``map_size`` for the long stage."""
    if len(stages) != 2:
        raise ValueError(f"stages must be ((width, convs) of the first stage, (width, convs) of the long stage), got {stages!r}")
    for width, convs in stages:
        positive_int("stage width", width)
        positive_int("stage convs", convs)
    pools = int(round(math.log2(image_size / map_size)))
    if map_size < 1 or image_size != map_size * 2 ** pools:
        raise ValueError(f"map_size must be {image_size} divided by a power of 2, got {map_size}")
    (w0, n0), (w1, n1) = stages
    return tuple([w0] * n0 + ["M"] * pools + [w1] * n1)


def _weight_layers(cfg) -> int:
    return sum(c != "M" for c in cfg) + 1     # the convolutions and the linear head


@functools.lru_cache(maxsize=1)
def _train_split():
    return cifar10("train")


def _cifar_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` standardized CIFAR-10 training images and labels, drawn as
    :func:`gradprobe.data.tensors.cifar10_tensors` draws them (a random subset, in the split's order)."""
    images, labels = _train_split()
    idx = torch.randperm(len(labels), generator=generator)[:n].sort().values.numpy()
    mean, std = channel_stats()
    return to_tensor(images[idx], mean, std), torch.from_numpy(labels[idx])


@dataclass(frozen=True)
class DeepSetting:
    """The VGG-like BN network of ``cfg`` (:func:`deep_config`) with ``activation`` (``"dropout"``:
    DropOut p = 0.5 in place of an activation), measured on a CIFAR-10 batch of ``batch``:
    :func:`deep_trial`."""

    activation: str
    cfg: tuple
    batch: int
    seed: int


def deep_trial(c: DeepSetting) -> dict:
    """The explosion rate (:func:`gradprobe.measure.rates.network_rate`: Var(g_n) per layer, fitted
    on the runs of layers fed by each other's activation) of one fresh network of
    :class:`DeepSetting`. Weights and images depend on the seed and batch only, so that the
    activations (and map sizes) of one seed are compared on the same images and weight draws (paired)."""
    gens = sweep.seed_trial(c, fields=("seed", "batch"))
    x, y = _cifar_batch(c.batch, gens.data)
    net = vgg.vgg(list(c.cfg), norm="batch", activation=c.activation, generator=gens.weights)
    r = network_rate(net, x, y)
    return {"rate": r.rate, "grad_var": torch.from_numpy(r.variances),
            "pairs": int(sum(a == b for a, b in zip(r.segments, r.segments[1:])))}


@dataclass
class Figure1b:
    """Figure 1(b): ``rates`` activation -> rates over seeds; ``table`` per activation: predicted
    r(φ), measured mean and SE, measured/predicted, the same-depth MLP's deviation and the tolerance
    built from it; ``maps``: map size -> ReLU rates over seeds (padding study); ``layers``, ``pairs``."""

    rates: dict
    table: pd.DataFrame
    maps: dict
    layers: int
    pairs: int


def run_figure1b(S, scheduler=None) -> Figure1b:
    """Figure 1(b) as sweeps: the network of :func:`deep_config` (long stage at 16×16) with each of
    :data:`FIGURE1B_ACTIVATIONS` on ``S.deep_seeds`` CIFAR-10 batches of ``S.deep_batch``; BN MLPs of
    the same depth (``S.width``, ``S.repeats`` networks, :func:`mlp_trial`) whose deviation from
    r(φ) sets each activation's tolerance; ReLU with the long stage at each of ``S.map_sizes``
    (``S.map_seeds`` batches of ``S.map_batch``)."""
    cfg = deep_config(S.deep_stages, 16)
    convs = _weight_layers(cfg) - 1
    deep = sweep.grid(DeepSetting, activation=FIGURE1B_ACTIVATIONS, cfg=[cfg], batch=[S.deep_batch],
                      seed=range(S.deep_seeds))
    maps = sweep.grid(DeepSetting, activation=["relu"], cfg=[deep_config(S.deep_stages, m) for m in S.map_sizes],
                      batch=[S.map_batch], seed=range(S.map_seeds))
    done = sweep.run(deep_trial, deep + maps, scheduler=scheduler, desc="Figure 1(b)")
    done.raise_failures()
    mlps = [MLPSetting(a, "batch", convs, S.width, S.batch, S.repeats) for a in FIGURE1B_ACTIVATIONS]
    mlp_done = sweep.run(mlp_trial, mlps, scheduler=scheduler, desc="same-depth MLPs")
    mlp_done.raise_failures()
    rates = {a: np.array([done[c]["rate"] for c in deep if c.activation == a]) for a in FIGURE1B_ACTIVATIONS}
    rows = []
    for a, m in zip(FIGURE1B_ACTIVATIONS, mlps):
        pred = gaussian.explosion_rate(a)
        dev = float(mlp_done[m]["rates"].mean()) / pred - 1
        rows.append((a, pred, rates[a].mean(), _se(rates[a]), rates[a].mean() / pred, dev, APPROX + abs(dev)))
    table = pd.DataFrame(rows, columns=["activation", "predicted r(φ)", "measured", "SE", "measured / predicted",
                                        f"MLP of depth {convs}: deviation", "tolerance"]).set_index("activation")
    by_map = {m: np.array([done[c]["rate"] for c in maps if c.cfg == deep_config(S.deep_stages, m)])
              for m in S.map_sizes}
    return Figure1b(rates, table, by_map, _weight_layers(cfg), done[deep[0]]["pairs"])


def figure1b(result: Figure1b) -> plt.Figure:
    """The paper's Figure 1(b): left, predicted and measured rate per activation (mean ± 2 SE over
    seeds); right, measured against predicted with the line measured = predicted and each
    activation's tolerance."""
    t = result.table
    acts = list(t.index)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.0), gridspec_kw={"width_ratios": [1.4, 1]})
    pos = np.arange(len(acts))
    ax1.bar(pos - 0.2, t["predicted r(φ)"], 0.4, color="tab:red", alpha=0.5, label="predicted E[φ'²]/Var[φ]")
    ax1.bar(pos + 0.2, t["measured"], 0.4, yerr=2 * t["SE"], capsize=3, color="tab:blue", label="measured (± 2 SE)")
    ax1.axhline(1.0, **plots.REFERENCE)
    ax1.set_xticks(pos, acts, rotation=30, ha="right")
    ax1.set(ylim=(0.8, 1.7), xlabel="activation", ylabel="Var(g_n)/Var(g_n+1) per layer")
    ax1.legend(loc="upper right")
    lo, hi = 0.95, 1.55
    ax2.plot([lo, hi], [lo, hi], **plots.THEORY, label="measured = predicted")
    ax2.errorbar(t["predicted r(φ)"], t["measured"], yerr=t["tolerance"] * t["predicted r(φ)"], fmt="o",
                 color="tab:blue", capsize=3, label="measured (bar: tolerance)")
    offsets = {"relu": (6, 2), "leaky_relu": (-30, -20), "identity": (6, -12), "dropout": (6, 2), "mish": (6, -12)}
    for a in acts:
        ax2.annotate(a, (t.loc[a, "predicted r(φ)"], t.loc[a, "measured"]), textcoords="offset points",
                     xytext=offsets.get(a, (6, -4)), fontsize=9)
    ax2.set(xlabel="predicted rate r(φ)", ylabel="measured rate", xlim=(lo, hi), ylim=(lo - 0.05, hi + 0.1))
    ax2.legend(loc="upper left")
    fig.tight_layout()
    fig.suptitle(f"{result.layers}-layer VGG-like BN network at initialization, CIFAR-10", y=1.03)
    return fig


def check_figure1b(page, result: Figure1b) -> None:
    """Figure 1(b)'s rows: the norm rate ≈ 1.21 per effective depth, the smoother variants below
    ReLU, no explosion without an activation or with DropOut (paper); r(φ) within each tolerance, the
    predicted order, the padding deficit (reconstructions)."""
    c, r, t = page.claims, result.rates, result.table
    c.add("gradient norm grows ≈ 1.21 per effective depth (51-layer VGG-like, ReLU)",
          close(1.21, np.sqrt(r["relu"]), rel=APPROX / 2), source=f"{SOURCE}, Sec. 1",
          quote="The exploding rate is approximately π/(π−1) ∼ 1.21 per effective depth",
          note="1.21 is √(π/(π−1)), the rate of the gradient's norm; π/(π−1) ≈ 1.47 is that of its variance")
    c.add("smoother ReLU variants explode less than ReLU (paired by seed)",
          all_of({a: difference_at_least(r["relu"], r[a], 0.0, paired=True) for a in SMOOTHER}),
          source=f"{SOURCE}, Fig. 1 caption",
          quote="Smoother variants of ReLU ... exhibit lower exploding rates")
    c.add("no activation: no explosion", close(1.0, r["identity"], abs=APPROX), source=f"{SOURCE}, Fig. 1 caption",
          quote="gradient explosion does not occur if the activation function is not used")
    c.add("DropOut in place of the activation: no explosion", close(1.0, r["dropout"], abs=APPROX),
          source=f"{SOURCE}, Fig. 1 caption", quote="it also does not occur with DropOut")
    c.add("r(φ) predicts every activation's rate, within 5% + the same-depth MLP's deviation",
          all_of({a: close(t.loc[a, "predicted r(φ)"], r[a], rel=float(t.loc[a, "tolerance"])) for a in t.index}),
          kind=RECONSTRUCTION, source=f"{SOURCE}, abstract; r(φ) is our derivation",
          note="tolerance per activation in the table; the deviation is measured in BN MLPs of the same depth")
    order = ("elu", "silu", "gelu", "leaky_relu", "relu")
    c.add("the measured rates follow the predicted order ELU < SiLU < GELU < LeakyReLU < ReLU (paired by seed)",
          all_of({f"{b} > {a}": difference_at_least(r[b], r[a], 0.0, paired=True) for a, b in zip(order, order[1:])}),
          kind=RECONSTRUCTION, source=f"{SOURCE}, Fig. 1 caption; the order is r(φ)'s")
    maps = result.maps
    if len(maps) >= 2:
        sizes = sorted(maps)
        c.add("zero padding lowers the rate: it rises with the map size of the long stage (paired by seed)",
              all_of({f"{b}×{b} > {a}×{a}": difference_at_least(maps[b], maps[a], 0.0, paired=True)
                      for a, b in zip(sizes, sizes[1:])}), kind=RECONSTRUCTION,
              source="this book: the first edition's explanation of the deficit; the network is ours")
    for a in t.index:
        page.glue(f"fig1b_{a}", float(t.loc[a, "measured"]), ".3f")
    page.glue("fig1b_relu_norm", float(np.sqrt(r["relu"]).mean()), ".3f")
    page.glue("fig1b_silu_excess", 100 * float(t.loc["silu", "measured / predicted"] - 1), ".1f")
    page.glue("fig1b_silu_tol", 100 * float(t.loc["silu", "tolerance"]), ".1f")
    page.glue("fig1b_layers", result.layers)
    page.glue("fig1b_pairs", result.pairs)
    page.glue("fig1b_seeds", len(r["relu"]))
    sizes = sorted(maps)  # the sizes differ between scales: glued as phrases
    page.glue_list("map_list", [f"{m}×{m}" for m in sizes])
    page.glue_list("map_values", [float(maps[m].mean()) for m in sizes], ".3f")


@dataclass
class DepthWidth:
    """The prediction's error against depth and width: ``excess`` (activation, depth, width) ->
    measured/predicted − 1 per network (BN MLPs, :func:`mlp_trial`)."""

    excess: dict
    widths: tuple
    depths: tuple


DW_ACTIVATIONS = ("silu", "relu")


def run_depth_width(S, scheduler=None) -> DepthWidth:
    """BN MLPs with SiLU and with ReLU (the control) at every width of ``S.dw_widths`` and depth of
    ``S.dw_depths``, max(2, ``S.dw_samples``/width) networks each, batch ``S.batch``, as one sweep."""
    configs = [MLPSetting(a, "batch", d, w, S.batch, max(2, S.dw_samples // w))
               for a in DW_ACTIVATIONS for d in S.dw_depths for w in S.dw_widths]
    done = sweep.run(mlp_trial, configs, scheduler=scheduler, desc="depth × width")
    done.raise_failures()
    excess = {(c.activation, c.depth, c.width): done[c]["rates"].numpy() / gaussian.explosion_rate(c.activation) - 1
              for c in configs}
    return DepthWidth(excess, tuple(S.dw_widths), tuple(S.dw_depths))


def figure_depth_width(result: DepthWidth) -> plt.Figure:
    """Measured/predicted − 1 of the rate against width (log scale), one line per depth (mean ± 2 SE
    over networks): left SiLU, right ReLU."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, act in zip(axes, DW_ACTIVATIONS):
        for d in result.depths:
            vals = [result.excess[act, d, w] for w in result.widths]
            ax.errorbar(result.widths, [100 * v.mean() for v in vals], yerr=[200 * _se(v) for v in vals],
                        capsize=3, label=f"depth {d}", **plots.OURS)
        ax.axhline(0, **plots.THEORY, label="r(φ) exactly")
        ax.set(xscale="log", xlabel="width (units per layer)", title=f"BN–{_NAMES.get(act, act)} MLPs")
        ax.set_xticks(result.widths, [str(w) for w in result.widths])
        ax.minorticks_off()
        ax.set_ylabel("measured / predicted rate − 1 (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


_NAMES = {"silu": "SiLU", "relu": "ReLU"}


def check_depth_width(page, result: DepthWidth) -> None:
    """Rows: SiLU's excess grows with depth and shrinks with width; ReLU's rate stays within 5% of
    π/(π−1) at every depth and width (reconstructions: the study and r(φ) are ours)."""
    c, e, widths, depths = page.claims, result.excess, result.widths, result.depths
    w_mid = min(widths, key=lambda w: abs(math.log(w / 256)))
    c.add(f"SiLU's excess over r(φ) grows with depth (width {w_mid})",
          ordered({f"depth {d}": e["silu", d, w_mid] for d in depths}), kind=RECONSTRUCTION,
          source="this book: the finite-size study of r(φ)")
    c.add("SiLU's excess shrinks with width, at every depth",
          all_of({f"depth {d}": difference_at_least(e["silu", d, widths[0]], e["silu", d, widths[-1]], 0.0)
                  for d in depths}), kind=RECONSTRUCTION, source="this book: the finite-size study of r(φ)")
    c.add("ReLU's rate is π/(π−1) within 5% at every depth and width",
          all_of({f"{d}×{w}": close(0.0, e["relu", d, w], abs=APPROX) for d in depths for w in widths}),
          kind=RECONSTRUCTION, source="this book: the finite-size study of r(φ)")
    for d_role, d in (("lo", depths[0]), ("hi", depths[-1])):  # by role: the prose has them at every scale
        for w_role, w in (("lo", widths[0]), ("hi", widths[-1])):
            page.glue(f"dw_silu_{d_role}_{w_role}", 100 * float(e["silu", d, w].mean()), ".1f")
    page.glue("dw_width_lo", widths[0])
    page.glue("dw_width_hi", widths[-1])
    page.glue("dw_depth_lo", depths[0])
    page.glue("dw_depth_hi", depths[-1])


# =============================================================================================
# 3. Figure 1(a): architectures, per layer and per effective depth
# =============================================================================================

@dataclass(frozen=True)
class ArchSetting:
    """One network of Figure 1(a) (``kind`` with builder ``options``, name -> value pairs) measured
    on a CIFAR-10 batch of ``batch``: :func:`arch_trial`."""

    label: str
    kind: str
    options: tuple
    batch: int
    seed: int


def arch_settings(S) -> list[tuple[str, str, tuple]]:
    """(label, kind, options) of the networks of Figure 1(a): torchvision's VGG-16 layout with
    widths divided by ``S.arch_vgg[1]`` with BatchNorm, with GroupNorm of ``S.gn_group`` channels per
    group and with LayerNorm (GroupNorm of one group); CIFAR ResNets of depths ``S.resnets`` (He
    init, BN); a ViT of ``S.vit`` = (blocks, width) and a Swin-style network of ``S.swin`` =
    (blocks per stage, width of stage 1), both with LayerNorm."""
    name, divisor = S.arch_vgg
    cfg = tuple(c if c == "M" else c // divisor for c in vgg.CONFIGS[name])
    label = name.replace("vgg", "VGG-")
    blocks, dim = S.swin
    heads = tuple(2 * 2 ** s for s in range(len(blocks)))
    return [(f"{label} (BN)", "vgg", (("cfg", cfg), ("norm", "batch"))),
            *[(f"ResNet-{d} (BN)", "resnet", (("depth", d),)) for d in S.resnets],
            (f"{label} (GroupNorm, {S.gn_group} ch/group)", "vgg",
             (("cfg", cfg), ("norm", "group"), ("group_size", S.gn_group))),
            (f"{label} (LayerNorm)", "vgg", (("cfg", cfg), ("norm", "layer"))),
            ("ViT (LayerNorm)", "vit", (("depth", S.vit[0]), ("dim", S.vit[1]))),
            ("Swin (LayerNorm)", "swin", (("depths", tuple(blocks)), ("dim", dim), ("heads", heads)))]


def _build(kind: str, options: dict, generator: torch.Generator) -> torch.nn.Module:
    one_of("network kind", kind, ("vgg", "resnet", "vit", "swin"))
    if kind == "vgg":
        return vgg.vgg(list(options["cfg"]), norm=options["norm"], group_size=options.get("group_size"),
                       generator=generator)
    if kind == "resnet":
        return resnet.cifar_resnet(options["depth"], init="he", generator=generator)
    if kind == "vit":
        return vit.vit(depth=options["depth"], dim=options["dim"], generator=generator)
    return swin.swin(depths=options["depths"], dim=options["dim"], heads=options["heads"], generator=generator)


def arch_trial(c: ArchSetting) -> dict:
    """One fresh network of :class:`ArchSetting` at initialization, in training mode, on one CIFAR-10
    batch with its labels (cross-entropy), images the same for every network of a seed:

    - ``fit``: the growth of Var(g_n) per layer toward the input, fitted on the runs of layers fed by
      each other's activation (:func:`gradprobe.measure.rates.network_rate`), and ``fit_pairs``, the
      layer pairs it rests on;
    - ``corrected`` (normalized conv networks): the geometric mean over the pairs n, n+1 of equal
      shape, n+1 fed by n and n not fed by the data, of Var(g_n)/Var(g_{n+1}) × s_n/s_{n+1}, with s the
      divisor of each layer's normalization measured as Var[its input]/Var[its output]; a max-pool
      before layer n changes s_n, and the correction takes that change out; ``corrected_pairs``;
    - ``overall``: the paper's Var(g_1)/Var(g_N), and ``layers`` N;
    - ``per_depth``, ``effective_depth``, ``residual``, ``stream``: from
      :func:`gradprobe.diagnose.diagnose`, the growth per residual branch along the residual stream,
      the number of branches, and Var of the stream's gradient after each branch (a plain network:
      its rate per layer and its layers).
    """
    gens = sweep.seed_trial(c, fields=("seed", "batch"))
    x, y = _cifar_batch(c.batch, gens.data)
    net = _build(c.kind, dict(c.options), gens.weights)
    layers = rate_layers(net)
    norms = net.norms()[:len(layers)] if isinstance(net, vgg.VGG) else []
    with record(net, layers, inputs=True) as rec, record(net, norms, gradients=False) as nrec:
        torch.autograd.grad(F.cross_entropy(net(x), y), [m.weight for m in layers])
    grad_var = np.array([float(variance(g.double())) for g in rec.gradients])
    out_shapes = [tuple(a.shape[1:]) for a in rec.activations]
    in_shapes = [tuple(a.shape[1:]) for a in rec.inputs]
    segments = segments_of(out_shapes, None if hasattr(net, "rate_layers") else in_shapes)
    fit = fit_rate(grad_var, segments=segments, reverse=True).rate
    corrected, pairs = math.nan, 0
    if norms:
        h = [float(variance(a.double())) for a in rec.activations]
        u = [float(variance(a.double())) for a in nrec.activations]
        s = np.array(h) / np.array(u)
        ratios = [grad_var[n] / grad_var[n + 1] * s[n] / s[n + 1] for n in range(1, len(layers) - 1)
                  if out_shapes[n] == out_shapes[n + 1] and in_shapes[n + 1] == out_shapes[n]]
        corrected, pairs = float(np.exp(np.mean(np.log(ratios)))), len(ratios)
    d = diagnose(net, x, targets=y)
    stream = [s["grad_variance"] for s in d.stream] if d.residual else list(grad_var)
    return {"fit": fit, "fit_pairs": int(sum(a == b for a, b in zip(segments, segments[1:]))),
            "corrected": corrected, "corrected_pairs": pairs, "overall": float(grad_var[0] / grad_var[-1]),
            "layers": len(layers), "per_depth": float(d.rate_per_depth), "effective_depth": int(d.effective_depth),
            "residual": bool(d.residual), "stream": torch.tensor(stream, dtype=torch.float64)}


@dataclass
class Figure1a:
    """Figure 1(a): ``trials`` label -> list of :func:`arch_trial` results over seeds; ``table`` per
    network: the estimates (mean and SE over seeds) and what they rest on."""

    trials: dict
    table: pd.DataFrame


def run_figure1a(S, scheduler=None) -> Figure1a:
    """Every network of :func:`arch_settings` on ``S.arch_seeds`` CIFAR-10 batches of
    ``S.arch_batch`` (fresh weights per seed), as a sweep."""
    nets = arch_settings(S)
    configs = [ArchSetting(label, kind, options, S.arch_batch, s) for label, kind, options in nets
               for s in range(S.arch_seeds)]
    done = sweep.run(arch_trial, configs, scheduler=scheduler, desc="Figure 1(a)")
    done.raise_failures()
    trials = {label: [done[c] for c in configs if c.label == label] for label, _, _ in nets}
    rows = []
    for label, results in trials.items():
        col = lambda key: np.array([r[key] for r in results], dtype=float)
        per_layer = col("overall") ** (1 / (col("layers") - 1))
        per_branch = col("overall") ** (1 / np.maximum(col("effective_depth") - 1, 1))
        rows.append({"network": label, "fit per layer": col("fit").mean(), "fit SE": _se(col("fit")),
                     "pairs": int(results[0]["fit_pairs"]), "corrected": col("corrected").mean(),
                     "corrected SE": _se(col("corrected")), "corrected pairs": int(results[0]["corrected_pairs"]),
                     "Var(g_1)/Var(g_N)": float(np.exp(np.log(col("overall")).mean())),
                     "(Var(g_1)/Var(g_N))^(1/(N−1))": per_layer.mean(),
                     "per effective depth": col("per_depth").mean(), "per eff. depth SE": _se(col("per_depth")),
                     "effective depth": int(results[0]["effective_depth"]),
                     "implied effective depth": (float(np.log(col("overall")).mean() / math.log(R_RELU))
                                                 if results[0]["residual"] else math.nan),
                     "paper's ratio per effective depth": per_branch.mean()})
    return Figure1a(trials, pd.DataFrame(rows).set_index("network"))


def figure1a(result: Figure1a) -> plt.Figure:
    """The paper's Figure 1(a): left, Var(g_n)/Var(g_N) against the effective depth counted from the
    output (layers of a plain network, residual branches of a residual one; median over seeds), with
    π/(π−1) per effective depth; right, the rate per effective depth of each network (mean ± 2 SE
    over seeds) against π/(π−1) and 1."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    longest = 0
    for label, results in result.trials.items():
        profiles = np.array([(r["stream"] / r["stream"][-1]).numpy() for r in results])
        depth_from_output = np.arange(profiles.shape[1])[::-1]
        longest = max(longest, profiles.shape[1])
        ax1.plot(depth_from_output, np.median(profiles, 0), label=label, **plots.OURS)
    ks = np.arange(longest)
    ax1.plot(ks, R_RELU ** ks.astype(float), **plots.THEORY, label="π/(π−1) per effective depth")
    ax1.set(yscale="log", xlabel="effective depth from the output (layers or residual branches)",
            ylabel="Var(g_n)/Var(g_N)", ylim=(1e-3, 1e5))
    ax1.legend(loc="upper left", fontsize=9)
    t = result.table
    est = t["corrected"].where(np.isfinite(t["corrected"]), t["per effective depth"])
    err = t["corrected SE"].where(np.isfinite(t["corrected"]), t["per eff. depth SE"])
    est = est.where(~t.index.str.startswith("ResNet"), t["per effective depth"])
    err = err.where(~t.index.str.startswith("ResNet"), t["per eff. depth SE"])
    pos = np.arange(len(t))
    ax2.errorbar(est, pos, xerr=2 * err, fmt="o", capsize=3, color="tab:blue", label="measured (± 2 SE)")
    ax2.axvline(R_RELU, **plots.THEORY, label="π/(π−1)")
    ax2.axvline(1.0, **plots.REFERENCE, label="1: no explosion")
    ax2.set_yticks(pos, list(t.index), fontsize=9)
    ax2.invert_yaxis()
    ax2.set(xlabel="Var(g) growth per effective depth", xlim=(0.95, 1.55))
    ax2.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return fig


def check_figure1a(page, result: Figure1a) -> None:
    """Figure 1(a)'s rows: the plain BN network near π/(π−1), residual networks lower, layer-normalized
    networks (VGG, ViT, Swin) not exploding (paper); ResNets per residual branch against π/(π−1) and
    GroupNorm between LayerNorm and BatchNorm (reconstructions)."""
    c, trials, t = page.claims, result.trials, result.table
    col = lambda label, key: np.array([r[key] for r in trials[label]], dtype=float)
    vgg_bn = next(k for k in trials if k.endswith("(BN)") and k.startswith("VGG"))
    vgg_ln = next(k for k in trials if k.endswith("(LayerNorm)") and k.startswith("VGG"))
    vgg_gn = next(k for k in trials if "GroupNorm" in k)
    resnets = [k for k in trials if k.startswith("ResNet")]
    c.add(f"vanilla BN network ({vgg_bn}) explodes at ≈ π/(π−1) per layer",
          close(R_RELU, col(vgg_bn, "corrected"), rel=APPROX), source=f"{SOURCE}, Fig. 1 caption",
          quote="The explosion rate is approximately π/(π−1) in vanilla networks with batch normalization",
          note=f"per-layer fit on {int(t.loc[vgg_bn, 'corrected pairs'])} layer pairs, each corrected for the "
               "divisor its normalization measures (pools change it)")
    c.add("residual networks explode less per layer than the plain BN network",
          all_of({k: difference_at_least(col(vgg_bn, "corrected"), col(k, "fit"), 0.0) for k in resnets}),
          source=f"{SOURCE}, Fig. 1 caption",
          quote="but it is lower in architectures with residual connections")
    c.add("ResNets: per residual branch the gradient grows by π/(π−1)",
          all_of({k: close(R_RELU, col(k, "per_depth"), rel=APPROX) for k in resnets}), kind=RECONSTRUCTION,
          source=f"{SOURCE}, Sec. 1 and Fig. 1 caption; effective depth = residual branches is our reading",
          note="the paper says the rate is π/(π−1) per effective depth and that residual connections reduce "
               "the effective depth; it does not say how effective depth is counted")
    ln = {vgg_ln: col(vgg_ln, "corrected"), "ViT": col("ViT (LayerNorm)", "per_depth"),
          "Swin": col("Swin (LayerNorm)", "per_depth")}
    c.add("layer-normalized networks (VGG with LayerNorm, ViT, Swin) do not explode",
          all_of({k: close(1.0, v, abs=APPROX) for k, v in ln.items()}), source=f"{SOURCE}, Fig. 1 caption",
          quote="gradient explosion does not occur in architectures with layer normalization (Ba et al., 2016), "
                "including transformer-based architectures (Dosovitskiy et al., 2020; Liu et al., 2021)")
    c.add("GroupNorm explodes less than BatchNorm and more than LayerNorm",
          ordered({"LayerNorm": col(vgg_ln, "corrected"), "GroupNorm": col(vgg_gn, "corrected"),
                   "BatchNorm": col(vgg_bn, "corrected")}), kind=RECONSTRUCTION,
          source="this book: GroupNorm is not in the caption; the order follows from the theory")
    group = int(vgg_gn.split(", ")[1].split(" ")[0])
    c.add(f"GroupNorm rate E[φ'²]/(Var[φ] + (1−1/g)E[φ]²), g = {group}",
          close(gaussian.predicted_rate("relu", "group", group_size=group), col(vgg_gn, "corrected"), rel=APPROX),
          kind=RECONSTRUCTION, source="this book: our derivation for independent pixels",
          note="the derivation treats pixels as independent; CIFAR-10 images are not")
    page.glue("fig1a_vgg_fit", float(t.loc[vgg_bn, "fit per layer"]), ".3f")
    page.glue("fig1a_vgg_fit_se", float(t.loc[vgg_bn, "fit SE"]), ".2g")
    page.glue("fig1a_vgg_pairs", int(t.loc[vgg_bn, "pairs"]))
    page.glue("fig1a_vgg_corrected", float(t.loc[vgg_bn, "corrected"]), ".3f")
    page.glue("fig1a_vgg_corrected_se", float(t.loc[vgg_bn, "corrected SE"]), ".2g")
    page.glue("fig1a_vgg_corrected_pairs", int(t.loc[vgg_bn, "corrected pairs"]))
    page.glue("fig1a_vgg_overall", float(t.loc[vgg_bn, "Var(g_1)/Var(g_N)"]), ".3g")
    page.glue("fig1a_gn", float(t.loc[vgg_gn, "corrected"]), ".3f")
    page.glue("fig1a_gn_pred", gaussian.predicted_rate("relu", "group", group_size=group), ".3f")
    page.glue("fig1a_ln", float(t.loc[vgg_ln, "corrected"]), ".3f")
    page.glue("fig1a_seeds", len(trials[vgg_bn]))
    for i, k in enumerate(resnets):
        page.glue(f"fig1a_resnet{i}_fit", float(t.loc[k, "fit per layer"]), ".3f")
        page.glue(f"fig1a_resnet{i}_branch", float(t.loc[k, "per effective depth"]), ".3f")
        page.glue(f"fig1a_resnet{i}_branches", int(t.loc[k, "effective depth"]))
        page.glue(f"fig1a_resnet{i}_implied", float(t.loc[k, "implied effective depth"]), ".1f")
        page.glue(f"fig1a_resnet{i}_whole", float(t.loc[k, "paper's ratio per effective depth"]), ".3f")
        page.glue(f"fig1a_resnet{i}_layers", int(np.mean(col(k, "layers"))))
    page.glue("fig1a_vit", float(t.loc["ViT (LayerNorm)", "per effective depth"]), ".3f")
    page.glue("fig1a_swin", float(t.loc["Swin (LayerNorm)", "per effective depth"]), ".3f")


# =============================================================================================
# 4. Alleviation during training, and what relieves it
# =============================================================================================

@functools.lru_cache(maxsize=2)
def _training_data(n_train: int, n_val: int, n_test: int, pool: int, data_seed: int):
    """CIFAR-10 for the training experiments: ``n_train`` + ``n_val`` training images (a random
    subset, split at random into training and validation images) and ``n_test`` test images, average-
    pooled by ``pool`` (4: 8×8 images) and flattened; standardized; all drawn with ``data_seed``."""
    g = torch.Generator().manual_seed(data_seed)
    d = cifar10_tensors(n_train=n_train + n_val, n_test=n_test, generator=g)
    shrink = (lambda x: F.avg_pool2d(x, pool)) if pool > 1 else (lambda x: x)
    perm = torch.randperm(n_train + n_val, generator=g)
    x, y = shrink(d.train_x).flatten(1)[perm], d.train_y[perm]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], shrink(d.test_x).flatten(1), d.test_y


@dataclass(frozen=True)
class AlleviationSetting:
    """Plain SGD (learning rate ``lr``, batch ``batch``, ``steps`` steps) of a BN–ReLU MLP of
    ``depth`` × ``width`` on CIFAR-10 (:func:`_training_data`), measured on ``probe`` test images at
    the steps of ``measure``: :func:`alleviation_trial`."""

    depth: int
    width: int
    lr: float
    batch: int
    steps: int
    probe: int
    measure: tuple
    n_train: int
    pool: int
    seed: int
    data_seed: int = 0


FACTORS = ("1/ρ", "κ", "BN γ²", "BN spread", "BN rest", "φ'", "weights", "Var[x]")


def alleviation_trial(c: AlleviationSetting) -> dict:
    """Train one network of :class:`AlleviationSetting` and, before the update of each step in
    ``c.measure``, split its per-layer ratios into measured factors
    (:func:`gradprobe.measure.correlation.rate_factors`) on the fixed probe batch. Returns, per
    measured step: ``rate`` (the fitted growth of Var(g) per layer, layers 2…L), ``ratio`` [steps,
    pairs] and ``factors`` [steps, 8, pairs], the factors of :data:`FACTORS` relative to their value
    in the theory at initialization (their product is ratio / r(ReLU) exactly); ``loss`` per step."""
    gens = sweep.seed_trial(c)
    x, y, _, _, test_x, test_y = _training_data(c.n_train, 0, max(c.probe, 1), c.pool, c.data_seed)
    probe_x, probe_y = test_x[:c.probe], test_y[:c.probe]
    net = mlp(c.depth, c.width, "relu", norm="batch", in_dim=x.shape[1], out_dim=10, generator=gens.weights)
    rows = {"step": [], "rate": [], "ratio": [], "factors": []}

    def measure(step, model, xb=None, yb=None, loss=None):
        if step not in c.measure:
            return
        f = correlation.rate_factors(model, probe_x, probe_y)
        hidden = slice(1, None)                                      # pair 1's layer sees the data
        parts = [1 / f.rho, f.kappa, f.bn_gamma, f.bn_spread, f.bn / (f.bn_gamma * f.bn_spread),
                 f.act / gaussian.backward_ratio("relu"), f.gain / f.forward_gain, VAR_RELU / f.input_var]
        rows["step"].append(step)
        rows["rate"].append(fit_rate(f.grad_var[1:], reverse=True).rate)
        rows["ratio"].append(f.ratio[hidden])
        rows["factors"].append(np.stack([p[hidden] for p in parts]))

    history = fit(net, x, y, steps=c.steps, batch_size=c.batch, optimizer=torch.optim.SGD(net.parameters(), lr=c.lr),
                  generator=gens.data, callback=measure)
    return {"steps": torch.tensor(rows["step"]), "rate": torch.tensor(rows["rate"], dtype=torch.float64),
            "ratio": torch.from_numpy(np.stack(rows["ratio"])), "factors": torch.from_numpy(np.stack(rows["factors"])),
            "loss": torch.tensor(history.loss, dtype=torch.float64)}


@dataclass
class Alleviation:
    """Section 4: ``runs`` (one :func:`alleviation_trial` result per seed), the measured ``steps``,
    the plateau (steps ≥ ``plateau_from``) and the early step ``early`` (a tenth of the run)."""

    runs: list
    steps: np.ndarray
    plateau_from: int
    early: int
    lr: float
    depth: int

    def per_seed(self, key: str = "rate", steps=None) -> np.ndarray:
        """The mean of ``key`` (``"rate"``) over the measured steps in ``steps`` (default: the
        plateau), one value per seed."""
        mask = self.steps >= self.plateau_from if steps is None else np.isin(self.steps, steps)
        return np.array([float(r[key].numpy()[mask].mean()) for r in self.runs])

    def factor_logs(self) -> pd.DataFrame:
        """Per factor of :data:`FACTORS`: its geometric mean over layers and plateau steps relative to
        the theory at initialization, as ×factor and log, mean over seeds; the last rows compare the
        measured ratio with r(ReLU)/ρ and with the product of all factors."""
        mask = self.steps >= self.plateau_from
        logs = np.array([np.log(r["factors"].numpy()[mask]).mean(axis=(0, 2)) for r in self.runs])
        ratio = np.array([np.log(r["ratio"].numpy()[mask] / R_RELU).mean() for r in self.runs])
        table = pd.DataFrame({"× (geometric mean)": np.exp(logs.mean(0)), "log": logs.mean(0),
                              "log SE": [_se(v) for v in logs.T]}, index=list(FACTORS))
        table.loc["product = measured / r"] = [math.exp(ratio.mean()), ratio.mean(), _se(ratio)]
        return table


def run_alleviation(S, scheduler=None) -> Alleviation:
    """Section 4 as a sweep over ``S.train_seeds`` seeds: a ``S.train_depth``-layer BN–ReLU MLP of
    width ``S.train_width`` on CIFAR-10 (8×8 images: ``S.pool``, ``S.n_train`` images), plain SGD at
    ``S.train_lr``, batch ``S.train_batch``, ``S.train_steps`` steps, measured at steps 0–20 and then
    every ``S.train_steps``//20. Plateau: the second half of the run."""
    steps = sorted(set(range(min(21, S.train_steps))) | set(range(0, S.train_steps, max(1, S.train_steps // 20))))
    configs = [AlleviationSetting(S.train_depth, S.train_width, S.train_lr, S.train_batch, S.train_steps, S.probe,
                                  tuple(steps), S.n_train, S.pool, s) for s in range(S.train_seeds)]
    done = sweep.run(alleviation_trial, configs, scheduler=scheduler, desc="alleviation")
    done.raise_failures()
    return Alleviation([done[c] for c in configs], np.array(steps), S.train_steps // 2,
                       max(1, S.train_steps // 10), S.train_lr, S.train_depth)


def figure_alleviation(result: Alleviation) -> plt.Figure:
    """Section 4: against the training step, the fitted rate per layer (median and range over
    seeds) with π/(π−1) and 1; the forward correlation ρ and the backward correlation κ (geometric
    mean over layers); the training loss (running mean over 10 steps)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.0))
    x = result.steps + 1
    plots.band(axes[0], x, np.array([r["rate"].numpy() for r in result.runs]), "measured", **plots.OURS)
    axes[0].axhline(R_RELU, **plots.THEORY, label="π/(π−1)")
    axes[0].axhline(1.0, **plots.REFERENCE, label="1")
    axes[0].axvline(result.plateau_from + 1, color="0.6", linestyle="--", linewidth=1, label="plateau from")
    axes[0].set(ylabel="fitted Var(g_n)/Var(g_n+1)", ylim=(0.85, 1.55))
    rho = np.array([np.exp(-np.log(r["factors"].numpy()[:, 0]).mean(1)) for r in result.runs])
    kappa = np.array([np.exp(np.log(r["factors"].numpy()[:, 1]).mean(1)) for r in result.runs])
    plots.band(axes[1], x, rho, "forward ρ", **plots.OURS)
    plots.band(axes[1], x, kappa, "backward κ", **plots.OURS)
    axes[1].axhline(1.0, **plots.REFERENCE, label="uncorrelated (init)")
    axes[1].set_ylabel("correlation (geom. mean over layers)")
    losses = np.array([pd.Series(r["loss"].numpy()).rolling(10, min_periods=1).mean().to_numpy() for r in result.runs])
    plots.band(axes[2], np.arange(1, losses.shape[1] + 1), losses, "training loss", linewidth=1.5)
    axes[2].axhline(math.log(10), **plots.REFERENCE, label="chance: log 10")
    axes[2].set_ylabel("training loss (10-step mean)")
    for ax in axes:
        ax.set(xscale="log", xlabel="training step + 1")
        ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    fig.suptitle(f"{result.depth}-layer BN–ReLU MLP, plain SGD at lr {result.lr:g}, {len(result.runs)} seeds",
                 y=1.03)
    return fig


def figure_mechanism(result: Alleviation) -> plt.Figure:
    """What relieves the explosion: left, the measured Var(g_n)/Var(g_n+1) of every layer and measured
    step (all seeds) against r(ReLU)/ρ_n, with the line measured = r/ρ; right, each factor's
    multiplier on the rate at the plateau relative to the theory at initialization (geometric mean
    over layers, plateau steps and seeds; ± 2 SE over seeds, on a log scale)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in result.runs:
        rho = 1 / run["factors"].numpy()[:, 0]
        sc = ax1.scatter(R_RELU / rho, run["ratio"].numpy(), c=np.repeat(result.steps[:, None], rho.shape[1], 1),
                         s=4, cmap="viridis", norm=plt.matplotlib.colors.SymLogNorm(1, vmin=0, vmax=result.steps[-1]))
    lims = [0.2, 1.8]
    ax1.plot(lims, lims, **plots.THEORY, label="measured = r/ρ")
    ax1.set(xlim=lims, ylim=lims, xlabel="r(ReLU)/ρ_n", ylabel="measured Var(g_n)/Var(g_n+1)")
    ax1.legend(loc="upper left")
    fig.colorbar(sc, ax=ax1, label="training step")
    table = result.factor_logs()
    pos = np.arange(len(table))
    colours = ["tab:blue" if v < 0 else "tab:red" for v in table["log"]]
    ax2.barh(pos, table["log"], xerr=2 * table["log SE"], color=colours, capsize=3)
    ax2.axvline(0, **plots.REFERENCE)
    ax2.set_yticks(pos, list(table.index), fontsize=9)
    ax2.invert_yaxis()
    ax2.set(xlabel="log of the factor's multiplier at the plateau (< 0 relieves)")
    fig.tight_layout()
    return fig


def check_alleviation(page, result: Alleviation) -> None:
    """Section 4's rows: the relief, rapid and substantial (paper), the plateau below 1 (paper), the
    rate against r/ρ and against r·κ/ρ (reconstructions: the mechanism is our reading), the factors
    multiply to the measured ratio (machinery)."""
    c = page.claims
    plateau = result.per_seed()
    initial = result.per_seed(steps=[0])
    early = result.per_seed(steps=[result.early])
    half = 1 + (R_RELU - 1) / 2
    c.add("the explosion at initialization is rapidly relieved during training",
          all_of({"at init ≈ π/(π−1)": close(R_RELU, initial, rel=APPROX),
                  f"by step {result.early} below half the excess": at_most(early, half),
                  "plateau below half the excess": at_most(plateau, half)}),
          source=f"{SOURCE}, Sec. 1",
          quote="the exploding gradient at the initialization state is rapidly relieved during training",
          note=f"'rapidly': within the first tenth of the run; 'relieved': below 1 + (r−1)/2 = {half:.3f}",
          needs="book")
    c.add("even a vanishing gradient state is approached: the plateau rate is below 1", at_most(plateau, 1.0),
          source=f"{SOURCE}, Sec. 1", quote="and even a vanishing gradient state can be approached",
          note=f"plateau: mean of the fitted rate over steps ≥ {result.plateau_from}, one value per seed",
          needs="book")
    mask = result.steps >= result.plateau_from
    per_seed = lambda fn: np.array([float(np.exp(np.mean(np.log(fn(r)[mask])))) for r in result.runs])
    vs_rho = per_seed(lambda r: r["ratio"].numpy() / (R_RELU * r["factors"].numpy()[:, 0]))
    vs_rho_kappa = per_seed(lambda r: r["ratio"].numpy() / (R_RELU * r["factors"].numpy()[:, 0]
                                                              * r["factors"].numpy()[:, 1]))
    c.add("the forward correlation ρ accounts for the relief: rate ≈ r/ρ (plateau)", close(1.0, vs_rho, rel=0.1),
          kind=RECONSTRUCTION, source=f"{SOURCE}, Sec. 1 ('the alleviation ... is also discussed'); "
                                      "the correlation mechanism is our reading",
          note="measured / (r/ρ), geometric mean over layers and plateau steps, per seed", needs="book")
    c.add("forward and backward correlation together: rate ≈ r·κ/ρ (plateau)", close(1.0, vs_rho_kappa, rel=0.1),
          kind=RECONSTRUCTION, source="this book: the backward correlation κ",
          note="measured / (r·κ/ρ), per seed", needs="book")
    worst = max(float(np.max(np.abs(np.log(np.prod(r["factors"].numpy(), axis=1) * R_RELU / r["ratio"].numpy()))))
                for r in result.runs)
    c.add("the eight measured factors multiply to the measured ratio", close(0.0, worst, abs=1e-6),
          kind=MACHINERY, source="this book: gradprobe.measure.correlation.rate_factors",
          note="largest |log(product · r / ratio)| over layers, steps and seeds")
    table = result.factor_logs()
    for key, name in zip(FACTORS, ("rho", "kappa", "gamma", "spread", "bnrest", "act", "weights", "varx")):
        page.glue(f"mech_{name}", float(table.loc[key, "× (geometric mean)"]), ".3f")
    page.glue("mech_product", float(table.loc["product = measured / r", "× (geometric mean)"]), ".3f")
    page.glue("allev_initial", float(initial.mean()), ".3f")
    page.glue("allev_early", float(early.mean()), ".3f")
    page.glue("allev_early_step", result.early)
    page.glue("allev_plateau", float(plateau.mean()), ".3f")
    page.glue("allev_plateau_se", _se(plateau), ".2g")
    page.glue("allev_plateau_from", result.plateau_from)
    page.glue("allev_seeds", len(result.runs))
    page.glue("allev_vs_rho", float(vs_rho.mean()), ".3f")
    page.glue("allev_vs_rho_kappa", float(vs_rho_kappa.mean()), ".3f")


# =============================================================================================
# 5. LALC (reconstructed: LARC's clip mode) against SGD, warm-up, LARS and LAMB
# =============================================================================================

@dataclass(frozen=True)
class TrainSetting:
    """One training run: a BN–ReLU MLP (``depth`` × ``width``, He init, a linear head) on CIFAR-10
    (:func:`_training_data`: ``n_train`` training, ``n_val`` validation and ``n_test`` test images,
    pooled by ``pool``) trained for ``steps`` steps of batch ``batch`` with optimizer ``rule``
    (:func:`gradprobe.train.optim.make_optimizer`, extra ``options`` as name–value pairs) at
    learning rate ``lr`` after a linear warm-up of ``warmup`` steps (0: none): :func:`train_trial`."""

    rule: str
    lr: float
    warmup: int
    batch: int
    steps: int
    seed: int
    depth: int
    width: int
    pool: int
    n_train: int
    n_val: int
    n_test: int
    options: tuple = ()
    data_seed: int = 0
    checkpoint_epochs: int = 10


def train_trial(c: TrainSetting) -> dict:
    """Train and evaluate one :class:`TrainSetting`. Initial weights and the order of the
    mini-batches depend on the seed only, so the rules of one seed start from the same network and
    see the same batches (their differences are paired). The run is cut into chunks of
    ``checkpoint_epochs`` epochs, each ending with a checkpoint (:func:`gradprobe.sweep.checkpoint`):
    a killed run resumes where it stopped with the same result. A run whose loss exceeds 1000 or is
    not finite stops (``diverged_at``) and is evaluated as it stands. Returns the validation and test
    accuracy, the test loss, the mean training loss of the last tenth of the run and the loss per step."""
    gens = sweep.seed_trial(c, fields=("seed",))
    x, y, val_x, val_y, test_x, test_y = _training_data(c.n_train, c.n_val, c.n_test, c.pool, c.data_seed)
    net = mlp(c.depth, c.width, "relu", norm="batch", in_dim=x.shape[1], out_dim=10, generator=gens.weights)
    opt = make_optimizer(c.rule, net.parameters(), c.lr, **dict(c.options))
    state = {"loss": [], "diverged_at": -1}
    every = max(1, len(x) // c.batch) * c.checkpoint_epochs          # whole epochs: the same batches as one run
    ckpt = sweep.checkpoint(every, model=net, optimizer=opt, generators=[gens.data], extra=state)
    step, warm = ckpt.restore(), linear_warmup(c.warmup)
    while step < c.steps and state["diverged_at"] < 0:
        n = min(every, c.steps - step)
        for group in opt.param_groups:
            group["lr"] = c.lr
        history = fit(net, x, y, steps=n, batch_size=c.batch, optimizer=opt, generator=gens.data,
                      schedule=functools.partial(_shifted, warm, step), diverge_above=1e3)
        state["loss"] += history.loss
        if history.diverged:
            state["diverged_at"] = step + history.diverged_at
        step += n
        ckpt.maybe_save(step, final=step >= c.steps or history.diverged)
    _, val_acc = evaluate(net, val_x, val_y)
    test_loss, test_acc = evaluate(net, test_x, test_y)
    loss = np.array(state["loss"])
    final = float(loss[-max(1, len(loss) // 10):].mean()) if state["diverged_at"] < 0 else math.nan
    return {"val_accuracy": val_acc, "test_accuracy": test_acc, "test_loss": test_loss, "final_loss": final,
            "diverged_at": int(state["diverged_at"]), "loss": torch.from_numpy(loss)}


def _shifted(schedule, offset: int, step: int) -> float:
    return schedule(step + offset)


# rule label -> (optimizer, with warm-up)
RULES = {"SGD": ("sgd", False), "SGD + warm-up": ("sgd", True), "LALC": ("lalc", False),
         "LARS + warm-up": ("lars", True), "LAMB + warm-up": ("lamb", True)}
SMALL_RULES = ("SGD", "SGD + warm-up", "LALC")
LARGE_RULES = ("SGD + warm-up", "LARS + warm-up", "LAMB + warm-up", "LALC")
TUNE_SEED = 1000          # tuning seeds are 1000, 1001, ...: never those of a verdict


def _setting(S, rule: str, lr: float, seed: int, large: bool, eta: float | None) -> TrainSetting:
    optimizer, warm = RULES[rule]
    options = (("trust_coefficient", eta),) if optimizer == "lalc" else ()
    warmup = (S.large_warmup if large else S.warmup) if warm else 0
    return TrainSetting(optimizer, lr, warmup, S.large_batch if large else S.small_batch,
                        S.large_steps if large else S.small_steps, seed, S.opt_depth, S.opt_width, S.pool,
                        S.n_train, S.n_val, S.n_test, options)


@dataclass
class Tuning:
    """Hyper-parameters chosen on the tuning seeds by validation accuracy: LALC's trust coefficient
    ``eta`` (small batch, at ``S.small_lr``) and each large-batch rule's learning rate ``lrs``;
    ``table``: every tuning run (what, value, validation accuracy as the mean over tuning seeds,
    whether it was chosen); ``edges``: the choices that lie at an end of their grid (the best value
    might lie beyond it)."""

    eta: float
    lrs: dict
    table: pd.DataFrame
    edges: list
    n_val: int
    seeds: int


def _choose(values: dict, what: str, rows: list, edges: list) -> float:
    """The value of best validation accuracy (ties: the smaller); its rows and whether it is at an end."""
    grid = sorted(values)
    best = max(grid, key=lambda v: (values[v], -v))
    rows += [(what, v, values[v], "✓" if v == best else "") for v in grid]
    if len(grid) > 1 and best in (grid[0], grid[-1]):
        edges.append(what)
    return best


def run_tuning(S, scheduler=None) -> Tuning:
    """LALC's η from ``S.etas`` (small batch) and each large-batch rule's learning rate from
    ``S.lr_grids`` (LALC at the chosen η), each by the mean validation accuracy over
    ``S.tune_seeds`` tuning seeds (1000, 1001, ...), as two sweeps."""
    seeds = range(TUNE_SEED, TUNE_SEED + S.tune_seeds)
    rows, edges = [], []
    small = {(eta, s): _setting(S, "LALC", S.small_lr, s, False, eta) for eta in S.etas for s in seeds}
    done = sweep.run(train_trial, list(small.values()), scheduler=scheduler, desc="tuning η")
    done.raise_failures()
    eta = _choose({e: np.mean([done[small[e, s]]["val_accuracy"] for s in seeds]) for e in S.etas},
                  "LALC, small batch: η", rows, edges)
    grids = dict(S.lr_grids)
    large = {(rule, lr, s): _setting(S, rule, lr, s, True, eta) for rule in LARGE_RULES
             for lr in grids[RULES[rule][0]] for s in seeds}
    done = sweep.run(train_trial, list(large.values()), scheduler=scheduler, desc="tuning learning rates")
    done.raise_failures()
    lrs = {rule: _choose({lr: np.mean([done[large[rule, lr, s]]["val_accuracy"] for s in seeds])
                          for lr in grids[RULES[rule][0]]}, f"{rule}, large batch: learning rate", rows, edges)
           for rule in LARGE_RULES}
    table = pd.DataFrame(rows, columns=["what", "value", "validation accuracy", "chosen"]).set_index(["what", "value"])
    return Tuning(eta, lrs, table, edges, S.n_val, S.tune_seeds)


@dataclass
class Comparison:
    """Rules compared over the verdict seeds: ``runs`` (one row per run: rule, seed, validation and
    test accuracy, final training loss, diverged), ``curves`` rule -> training loss [seeds, steps]
    (NaN after a divergence), ``summary`` per rule (mean and SE of the test accuracy)."""

    runs: pd.DataFrame
    curves: dict
    summary: pd.DataFrame
    title: str

    def accuracy(self, rule: str) -> np.ndarray:
        """Test accuracy of ``rule`` per verdict seed, in seed order."""
        return self.runs[self.runs["rule"] == rule].sort_values("seed")["test accuracy"].to_numpy()


def _compare(S, rules: dict, large: bool, eta: float, scheduler, title: str) -> Comparison:
    configs = {(rule, s): _setting(S, rule, lr, s, large, eta) for rule, lr in rules.items() for s in range(S.opt_seeds)}
    done = sweep.run(train_trial, list(configs.values()), scheduler=scheduler, desc=title)
    done.raise_failures()
    runs = pd.DataFrame([(rule, s, done[c]["val_accuracy"], done[c]["test_accuracy"], done[c]["final_loss"],
                          done[c]["diverged_at"] >= 0) for (rule, s), c in configs.items()],
                        columns=["rule", "seed", "validation accuracy", "test accuracy", "final train loss", "diverged"])
    steps = S.large_steps if large else S.small_steps
    curves = {}
    for rule in rules:
        rows = []
        for s in range(S.opt_seeds):
            loss = done[configs[rule, s]]["loss"].numpy()
            rows.append(np.concatenate([loss, np.full(steps - len(loss), np.nan)]))
        curves[rule] = np.array(rows)
    summary = runs.groupby("rule", sort=False).agg(
        lr=("rule", lambda r: rules[r.iloc[0]]), test_accuracy=("test accuracy", "mean"),
        test_accuracy_se=("test accuracy", lambda v: _se(v)), final_train_loss=("final train loss", "mean"),
        diverged=("diverged", "sum"))
    return Comparison(runs, curves, summary, title)


def run_small_batch(S, tuning: Tuning, scheduler=None) -> Comparison:
    """Small batch (``S.small_batch``), high learning rate ``S.small_lr`` with momentum 0.9, on the
    verdict seeds 0 … ``S.opt_seeds`` − 1: SGD, SGD with a linear warm-up of ``S.warmup`` steps, and
    LALC without warm-up at the tuned η."""
    rules = {"SGD": S.small_lr, "SGD + warm-up": S.small_lr, "LALC": S.small_lr}
    return _compare(S, rules, False, tuning.eta, scheduler, "small batch")


def run_large_batch(S, tuning: Tuning, scheduler=None) -> Comparison:
    """Large batch (``S.large_batch``), ``S.large_steps`` steps (equal epochs for every rule), on the
    verdict seeds: SGD, LARS and LAMB each with a linear warm-up of ``S.large_warmup`` steps, and LALC
    without, each at its tuned learning rate (LALC at the tuned η)."""
    return _compare(S, {rule: tuning.lrs[rule] for rule in LARGE_RULES}, True, tuning.eta, scheduler, "large batch")


def _paired(comp: Comparison, a: str, b: str) -> tuple[float, float, np.ndarray]:
    d = comp.accuracy(a) - comp.accuracy(b)
    return float(d.mean()), _se(d), d


def _differences_panel(ax, comp: Comparison, pairs) -> None:
    for i, (a, b) in enumerate(pairs):
        mean, se, d = _paired(comp, a, b)
        ax.errorbar([100 * mean], [i], xerr=[200 * se], fmt="o", color="tab:blue", capsize=4)
        ax.plot(100 * d, [i] * len(d), "k.", markersize=4, alpha=0.6)
    ax.axvline(0, **plots.REFERENCE)
    ax.set_yticks(range(len(pairs)), [f"{a} − {b}" for a, b in pairs], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy difference (points; mean ± 2 SE, dots: seeds)")


def figure_lalc_small_batch(comp: Comparison) -> plt.Figure:
    """Small batch: left, the training loss (running mean of 20 steps; median and range over seeds)
    of SGD, SGD + warm-up and LALC; right, the paired differences of test accuracy."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 1.1]})
    for rule, curves in comp.curves.items():
        smooth = np.array([pd.Series(c).rolling(20, min_periods=1).mean().to_numpy() for c in curves])
        plots.band(ax1, np.arange(1, smooth.shape[1] + 1), smooth, rule, linewidth=1.5)
    ax1.axhline(math.log(10), **plots.REFERENCE, label="chance: log 10")
    ax1.set(xlabel="training step", ylabel="training loss (running mean of 20 steps)", ylim=(0.8, 3.0))
    ax1.legend(loc="upper right", fontsize=9)
    _differences_panel(ax2, comp, [("LALC", "SGD + warm-up"), ("LALC", "SGD"), ("SGD + warm-up", "SGD")])
    fig.tight_layout()
    return fig


def figure_lalc_large_batch(comp: Comparison) -> plt.Figure:
    """Large batch: left, test accuracy per rule (mean ± 2 SE over seeds, dots: seeds); right, the
    paired differences LALC − each other rule."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1.1]})
    rules = list(comp.summary.index)
    for i, rule in enumerate(rules):
        acc = comp.accuracy(rule)
        ax1.plot(100 * acc, [i] * len(acc), "k.", markersize=4, alpha=0.6)
        ax1.errorbar([100 * acc.mean()], [i], xerr=[200 * _se(acc)], fmt="o", capsize=4, color="tab:blue")
    ax1.set_yticks(range(len(rules)), rules, fontsize=9)
    ax1.invert_yaxis()
    ax1.set_xlabel("test accuracy (%)")
    _differences_panel(ax2, comp, [("LALC", r) for r in rules if r != "LALC"])
    fig.tight_layout()
    return fig


def _lalc_equals_larc_clip(steps: int = 5) -> float:
    """Largest |difference| of the weights after ``steps`` steps of LALC and of LARC's clip mode
    (ε = 0) from the same small BN–ReLU network and batches: 0 when the two rules are one."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    nets = [mlp(4, 32, "relu", norm="batch", out_dim=10, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    opts = [LALC(nets[0].parameters(), lr=0.5, trust_coefficient=0.01),
            LARC(nets[1].parameters(), lr=0.5, trust_coefficient=0.01, clip=True, eps=0.0)]
    for _ in range(steps):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    return max(float((a - b).detach().abs().max()) for a, b in zip(nets[0].parameters(), nets[1].parameters()))


def check_lalc(page, tuning: Tuning, small: Comparison, large: Comparison) -> None:
    """Section 5's rows: warm-up helps at a high learning rate (paper: early instability); LALC
    replaces warm-up and beats plain SGD (small batch) and outperforms LARS and LAMB (large batch):
    reconstructions, since the rule is LARC's clip mode, not the paper's unavailable algorithm; LALC
    equals LARC's clip mode step for step (machinery)."""
    c = page.claims
    acc = small.accuracy
    c.add("high learning rate, small batch: training without warm-up is worse (early instability)",
          difference_at_least(acc("SGD + warm-up"), acc("SGD"), 0.0, paired=True), source=f"{SOURCE}, abstract",
          quote="experience instability during early stages of training owing to the high gradient",
          note="test accuracy, SGD + warm-up − SGD, paired by seed", needs="book")
    c.add("small batch: LALC without warm-up is not worse than SGD with warm-up (margin 1 point)",
          difference_at_least(acc("LALC"), acc("SGD + warm-up"), -0.01, paired=True), kind=RECONSTRUCTION,
          source=f"{SOURCE}, abstract", quote="can also be used to replace WarmUp in small batch training",
          note="LALC here is LARC's clip mode (our reconstruction), not the paper's algorithm", needs="book")
    c.add("small batch: LALC without warm-up beats plain SGD",
          difference_at_least(acc("LALC"), acc("SGD"), 0.0, paired=True), kind=RECONSTRUCTION,
          source=f"{SOURCE}, abstract", note="LALC here is LARC's clip mode", needs="book")
    big = large.accuracy
    c.add("large batch: LALC outperforms LARS and LAMB (each with warm-up, each at its tuned learning rate)",
          all_of({r: difference_at_least(big("LALC"), big(r), 0.0, paired=True)
                  for r in ("LARS + warm-up", "LAMB + warm-up")}), kind=RECONSTRUCTION,
          source=f"{SOURCE}, abstract",
          quote="outperforms existing learning rate scaling methods in large batch training",
          note="LALC here is LARC's clip mode; learning rates tuned on other seeds by validation accuracy",
          needs="book")
    c.add("LALC as reconstructed takes the same steps as LARC's clip mode", close(0.0, _lalc_equals_larc_clip(), abs=1e-6),
          kind=MACHINERY, source="this book: gradprobe.train.optim.LALC and LARC")
    page.glue("lalc_eta", tuning.eta, "g")
    page.glue("tuning_edges", "; ".join(tuning.edges) if tuning.edges else "none")
    page.glue("val_se", 100 * math.sqrt(0.25 / tuning.n_val), ".2g")
    page.glue("tune_seeds", f"{tuning.seeds} tuning seed" + ("s" if tuning.seeds > 1 else ""))
    for rule, lr in tuning.lrs.items():
        page.glue(f"lalc_lr_{rule.split()[0].lower()}", lr, "g")
    for comp, name in ((small, "small"), (large, "large")):
        for rule in comp.summary.index:
            key = rule.replace(" + warm-up", "_wu").replace(" ", "").lower()
            page.glue(f"{name}_{key}", 100 * float(comp.summary.loc[rule, "test_accuracy"]), ".1f")
    for name, comp, a, b in (("small_lalc_wu", small, "LALC", "SGD + warm-up"), ("small_wu_sgd", small, "SGD + warm-up", "SGD"),
                             ("small_lalc_sgd", small, "LALC", "SGD"), ("large_lalc_lars", large, "LALC", "LARS + warm-up"),
                             ("large_lalc_lamb", large, "LALC", "LAMB + warm-up"),
                             ("large_lalc_sgd", large, "LALC", "SGD + warm-up")):
        mean, se, _ = _paired(comp, a, b)
        page.glue(f"diff_{name}", 100 * mean, "+.1f")
        page.glue(f"diff_{name}_se", 100 * se, ".1f")
    page.glue("opt_seeds", len(small.accuracy("SGD")))


# =============================================================================================
# 6. One rate, three measurements
# =============================================================================================

def measure_three_ways(S, gen) -> pd.DataFrame:
    """The gradient-norm rate per layer of ``S.three_ways`` BN–ReLU MLPs (``S.depth`` × ``S.width``, no
    head, weights from ``gen.weights``) at initialization, on Gaussian batches of ``S.batch``
    (``gen.data``), measured three ways (one row per network): the square root of this chapter's
    fitted Var(g_n)/Var(g_{n+1}) (:func:`gradprobe.measure.rates.network_rate`); the growth per layer
    of Philipp et al.'s GSC (:func:`gradprobe.measure.gsc.gsc_profile`, linear layers 2…L); and
    ((R_b/R_f)_L / (R_b/R_f)_{L/2})^(1/(L/2)), square root, of the ghost paper
    (:func:`gradprobe.measure.stats.network_ratios`, 2 batches)."""
    int_at_least("S.depth", S.depth, 4)
    rows = []
    for _ in range(S.three_ways):
        net = mlp(S.depth, S.width, "relu", norm="batch", generator=gen.weights)
        x = torch.randn(S.batch, S.width, generator=gen.data)
        grad_output = torch.randn(S.batch, S.width, generator=gen.data) / math.sqrt(S.width)
        ours = network_rate(net, x, grad_output=grad_output, layers=net.linears()).norm_rate
        gsc = fit_rate(gsc_profile(net, x, modules=net.linears()[1:], generator=gen.data), reverse=True).rate
        half = S.depth // 2
        rf_half, rb_half = network_ratios(net[:half], repeats=2, batch=S.batch, generator=gen.data)
        rf_all, rb_all = network_ratios(net, repeats=2, batch=S.batch, generator=gen.data)
        ghost = math.sqrt(((rb_all / rf_all) / (rb_half / rf_half)) ** (1 / (S.depth - half)))
        rows.append((ours, gsc, ghost))
    table = pd.DataFrame(rows, columns=["Var(g_n)/Var(g_n+1), square root (this chapter)",
                                        "GSC growth per layer (Philipp et al.)",
                                        "(R_b/R_f) per layer, square root (ghost)"])
    table.index.name = "network"
    return table


def check_three_ways(page, table: pd.DataFrame) -> None:
    """Machinery: the three measurements agree on every network (largest relative spread ≤ 3%)."""
    v = table.to_numpy()
    spread = v.max(axis=1) / v.min(axis=1) - 1
    page.claims.add("three measurements of the rate agree (largest relative spread per network)",
                    close(0.0, spread, abs=0.03), kind=MACHINERY, source="this book: paik2023, philipp2018, ghost2024")
    page.glue("three_ways_spread", 100 * float(spread.mean()), ".1f")
    page.glue("three_ways_norm", float(v.mean()), ".3f")
