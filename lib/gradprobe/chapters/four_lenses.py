"""Chapter *Your network through four lenses*: the book's synthesis, every experiment, figure and
claim of the notebook in its order, on :func:`gradprobe.diagnose`.

1. Seven standard architectures at initialization (:data:`ZOO`, :func:`build`): one diagnosis per
   architecture and seed (:func:`zoo_trial`, run as a :mod:`gradprobe.sweep` by :func:`diagnose_zoo`),
   the four papers' measures side by side (:func:`lens_table`, :func:`figure_zoo_rates`,
   :func:`figure_zoo_profiles`, :func:`figure_one_number`), the tool's own figure
   (:func:`figure_diagnosis`), the claims (:func:`check_zoo`).
2. One design choice at a time on a plain convolution stack (:func:`stack`, :data:`DESIGNS`):
   activation, normalization type, normalization position (:func:`design_trial`,
   :func:`diagnose_designs`, :func:`design_table`, :func:`figure_designs`, :func:`check_designs`).
3. Residual branches: the last BatchNorm's γ of each branch at 1, 1/√L or 0 in torchvision's
   ResNets of growing depth (:func:`residual_trial`, :func:`diagnose_residual`,
   :func:`residual_table`, :func:`figure_residual`, :func:`check_residual`).
4. :func:`settings` and :func:`cost` (the work of a run, for the time estimates of the opening box).

Every trial is one :func:`gradprobe.diagnose.diagnose` of a freshly initialized network on a fresh
batch, both drawn from generators derived from the trial's configuration
(:func:`gradprobe.sweep.seed_trial`); a measurement's uncertainty is its standard error over these
independent draws ("seeds"). A trial returns the numbers of its diagnosis (:func:`summarize`), not
the network.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import sweep
from ..book import plots
from ..book.claims import (MACHINERY, RECONSTRUCTION, Claims, Estimate, all_of, at_least, at_most,
                           close, ordered, ratio_at_least)
from ..book.scales import settings as make_settings
from ..diagnose import Diagnosis, diagnose
from ..measure.rates import fit_rate
from ..networks.convnext import convnext
from ..networks.gpt import gpt
from ..networks.imagenet_resnet import (RESNET_LAYERS, branch_scale_, imagenet_resnet, last_gamma_,
                                       preact_resnet)
from ..networks.layers import activation_module, init_weights_
from ..networks.resnet import cifar_resnet
from ..networks.vgg import norm_layer, vgg
from ..networks.vit import vit
from ..theory.gaussian import RELU_RATE, explosion_rate

__all__ = ["ZOO", "LN_ARCHS", "BN_ARCHS", "RESIDUAL_ARCHS", "settings", "cost", "build", "images", "summarize",
           "zoo_trial", "Zoo", "diagnose_zoo", "lens_table", "one_number_table", "figure_zoo_rates",
           "figure_zoo_profiles", "figure_one_number", "figure_diagnosis", "check_zoo",
           "stack", "DESIGNS", "design_trial", "diagnose_designs", "design_table", "figure_designs",
           "check_designs", "branches", "residual_trial", "diagnose_residual", "residual_table",
           "figure_residual", "check_residual", "machinery_checks", "glue_settings", "glue_zoo", "glue_designs",
           "glue_residual", "NO_EXPLOSION", "SCALES", "FIXED_COST"]

ZOO = ("VGG-19 (BN)", "ResNet-50", "pre-act ResNet-50", "ResNet-56 (CIFAR)", "ViT", "GPT-2-style decoder",
       "ConvNeXt-T")
BN_ARCHS = ("VGG-19 (BN)", "ResNet-50", "pre-act ResNet-50", "ResNet-56 (CIFAR)")
RESIDUAL_ARCHS = ("ResNet-50", "pre-act ResNet-50", "ResNet-56 (CIFAR)")
LN_ARCHS = ("ViT", "GPT-2-style decoder", "ConvNeXt-T")
# "does not explode": a rate per effective depth below 1 + (r − 1)/4, a quarter of BatchNorm–ReLU's excess
NO_EXPLOSION = 1 + (RELU_RATE - 1) / 4
PAIK = "paik2023"
GHOST = "ghost2024"
BJORCK = "bjorck2018"
PHILIPP = "philipp2018"


# --------------------------------------------------------------------------- settings and cost

def settings(scale: str):
    """The chapter's settings at ``scale`` (see the notes for which are the papers' and which ours)."""
    return make_settings(
        scale,
        book=dict(seeds=3, batch=32, size=32, tokens=64, vocab=512, gpt=(12, 192, 6), vit=(12, 192, 3, 4),
                  stack=(24, 32), stack_size=16, stack_batch=64, stack_seeds=4,
                  resnets=(50, 101, 152), resnet_seeds=3),
        smoke=dict(seeds=2, batch=8, tokens=16, vocab=128, gpt=(4, 64, 4), vit=(4, 64, 4, 4),
                   stack=(8, 16), stack_size=8, stack_batch=16, stack_seeds=2, resnets=(18, 34), resnet_seeds=2),
        paper=dict(seeds=10, batch=64, size=224, tokens=1024, vocab=50257, gpt=(12, 768, 12), vit=(12, 768, 12, 16),
                   stack=(51, 64), stack_size=32, stack_batch=128, stack_seeds=10, resnet_seeds=10),
        notes={"seeds": "independent draws of weights and batch per architecture (ours)",
               "batch": "images (or sequences) per diagnosis (ours)",
               "size": "CIFAR-10 test images, resized (ours; ImageNet networks at 224 at paper scale)",
               "tokens": "sequence length of the decoder (GPT-2: 1024)",
               "vocab": "random tokens from this vocabulary (GPT-2: 50257)",
               "gpt": "(layers, width, heads) of the decoder (GPT-2 small: 12, 768, 12)",
               "vit": "(blocks, width, heads, patch) of the ViT (ViT-B/16: 12, 768, 12, 16)",
               "stack": "(conv layers, channels) of the plain stack (Paik & Choi's Fig. 1(b): 51 layers)",
               "stack_size": "image side of the stack (CIFAR-10 averaged down)",
               "stack_batch": "images per diagnosis of the stack",
               "stack_seeds": "independent draws per design choice",
               "resnets": "torchvision ResNet depths of the γ study",
               "resnet_seeds": "independent draws per ResNet and γ"})


def _pixels(S, size=None) -> float:
    return float((size or S.size) ** 2)


# the part of a run that does not grow with the settings (loading CIFAR-10, drawing seven figures,
# each trial's set-up), in the units of :func:`cost`: about 9 s on the 2-core machine the book is built on
FIXED_COST = 1.5e7


def cost(S) -> float:
    """The work of a run in pixel-layer passes: per diagnosis batch × pixels × weight layers (a
    forward and a backward pass each; tokens for the decoder), summed over the trials, plus
    :data:`FIXED_COST`. The depth of torchvision's ResNets is their number of weight layers."""
    zoo_layers = {"VGG-19 (BN)": 19, "ResNet-50": 50, "pre-act ResNet-50": 50, "ResNet-56 (CIFAR)": 56, "ConvNeXt-T": 40}
    per_seed = sum(S.batch * _pixels(S) * layers for layers in zoo_layers.values())
    per_seed += S.batch * _pixels(S) / S.vit[3] ** 2 * 4 * S.vit[0] * S.vit[1] / 64
    per_seed += S.batch * S.tokens * 4 * S.gpt[0] * S.gpt[1] / 64
    zoo = S.seeds * per_seed
    designs = len(DESIGNS) * S.stack_seeds * S.stack_batch * _pixels(S, S.stack_size) * S.stack[0] * S.stack[1] / 64
    resnet = S.resnet_seeds * S.batch * _pixels(S) * (2 * sum(S.resnets) + 2 * min(S.resnets))
    return zoo + designs + resnet + FIXED_COST


# --------------------------------------------------------------------------- the zoo

def build(arch: str, S, generator: torch.Generator) -> nn.Module:
    """A freshly initialized ``arch`` of :data:`ZOO` for 10 classes (the decoder: ``S.vocab``
    tokens), each with its own library's initialization (see the library's builders)."""
    if arch == "VGG-19 (BN)":
        return vgg("vgg19", norm="batch", generator=generator)
    if arch == "ResNet-50":
        return imagenet_resnet(50, num_classes=10, generator=generator)
    if arch == "pre-act ResNet-50":
        return preact_resnet(50, num_classes=10, generator=generator)
    if arch == "ResNet-56 (CIFAR)":
        return cifar_resnet(56, "batch", init="he", generator=generator)
    if arch == "ViT":
        depth, dim, heads, patch = S.vit
        return vit(depth=depth, dim=dim, heads=heads, patch=patch, image_size=S.size, mlp_ratio=4.0,
                   generator=generator)
    if arch == "GPT-2-style decoder":
        layers, dim, heads = S.gpt
        return gpt(n_layer=layers, n_head=heads, n_embd=dim, vocab_size=S.vocab, block_size=S.tokens,
                   generator=generator)
    if arch == "ConvNeXt-T":
        return convnext(num_classes=10, generator=generator)
    raise ValueError(f"unknown architecture {arch!r}; the zoo is {', '.join(ZOO)}")


@functools.lru_cache(maxsize=1)
def _cifar_test() -> tuple[torch.Tensor, torch.Tensor]:
    from ..data.tensors import cifar10_tensors

    data = cifar10_tensors(n_train=1, n_test=None)
    return data.test_x, data.test_y


def images(batch: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` standardized CIFAR-10 test images drawn from ``generator``, averaged down (or
    bilinearly resized up) to ``size``², and their labels."""
    x, y = _cifar_test()
    idx = torch.randperm(len(y), generator=generator)[:batch]
    x, y = x[idx], y[idx]
    if size < 32:
        if 32 % size:
            raise ValueError(f"an image side below 32 must divide 32, got {size}")
        x = F.avg_pool2d(x, 32 // size) * (32 // size)      # keeps unit variance for independent pixels
    elif size > 32:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, y


def _inputs(arch: str, S, generator: torch.Generator):
    if arch == "GPT-2-style decoder":
        ids = torch.randint(0, S.vocab, (S.batch, S.tokens + 1), generator=generator)
        return ids[:, :-1], ids[:, 1:]                     # next-token targets
    return images(S.batch, S.size, generator)


def summarize(d: Diagnosis, model: nn.Module) -> dict:
    """The numbers of one diagnosis this chapter uses, as plain data: the rates and, per weight
    layer that has a gradient (input to output), the four papers' measures."""
    weights = {name: m.weight.numel() for name, m in model.named_modules() if isinstance(getattr(m, "weight", None),
                                                                                      torch.Tensor)}
    rows = [r for r in d.layers if math.isfinite(r["grad_variance"]) and r["calls"] >= 1]
    col = lambda key: [float(r[key]) for r in rows]
    return {
        "rate_layer": d.rate_per_layer, "predicted_layer": d.predicted_per_layer, "kinds": d.kinds,
        "layers_in_fit": d.layers_in_fit, "rate_depth": d.rate_per_depth, "effective_depth": d.effective_depth,
        "residual": d.residual, "overall_growth": d.overall_growth, "verdict": d.verdict,
        "names": [r["name"] for r in rows], "kinds_of_layers": [r["kind"] for r in rows],
        "grad_variance": col("grad_variance"), "forward_variance": col("forward_variance"), "gsc": col("gsc"),
        "R_f": col("R_f"), "R_b": col("R_b"), "weight_grad_norm": col("weight_grad_norm"),
        "weight_numel": [float(weights.get(r["name"], math.nan)) for r in rows],
        "bjorck_a": col("bjorck_a"), "bjorck_b": col("bjorck_b"), "pair_ratio": col("pair_ratio"),
        "in_fit": [bool(r["in_fit"]) for r in rows], "between": [r["between"] for r in rows],
        "stream_layer": [bool(r["stream"]) for r in rows],
        "stream_depth": [int(s["effective_depth"]) for s in d.stream],
        "stream_segment": [int(s["segment"]) for s in d.stream],
        "stream_variance": [float(s["grad_variance"]) for s in d.stream],
    }


def _quiet_diagnose(model, x, y, generator) -> Diagnosis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)        # nested-tensor and eval-mode notices
        return diagnose(model, x, targets=y, generator=generator)


def zoo_trial(config) -> dict:
    """One architecture, one seed: build it and draw a batch from generators derived from the
    configuration, diagnose it (cross-entropy against the labels, or the next tokens) and return
    :func:`summarize` of the diagnosis."""
    gens = sweep.seed_trial(config)
    S = _Namespace(config)
    device = torch.device(config["device"])
    model = build(config["arch"], S, gens.weights).to(device)
    x, y = _inputs(config["arch"], S, gens.data)
    return summarize(_quiet_diagnose(model, x.to(device), y.to(device), gens.data), model)


class _Namespace:
    """A configuration's values as attributes (tuples where the configuration has them)."""

    def __init__(self, config):
        for key, value in config.items():
            setattr(self, key, tuple(value) if isinstance(value, (list, tuple)) else value)


def _run(fn, configs, desc):
    done = sweep.run(fn, configs, threads=torch.get_num_threads(), desc=desc)
    if done.failed:
        first = next(iter(done.failed.items()))
        raise RuntimeError(f"{len(done.failed)} trial(s) of {desc} failed; the first, {dict(first[0])}: "
                           f"{first[1].type}: {first[1].message}")
    return done


_ZOO_KEYS = ("batch", "size", "tokens", "vocab", "gpt", "vit")


@dataclass
class Zoo:
    """The diagnoses of :data:`ZOO`: ``runs[arch]`` one :func:`summarize` dict per seed."""

    runs: dict

    def values(self, arch: str, key: str) -> list:
        return [run[key] for run in self.runs[arch]]


def diagnose_zoo(S, seed: int, device) -> Zoo:
    """Every architecture of :data:`ZOO`, ``S.seeds`` independent draws each (:func:`zoo_trial`)."""
    configs = [sweep.Config(arch=arch, rep=rep, seed=seed, device=str(device), **{k: getattr(S, k) for k in _ZOO_KEYS})
               for arch in ZOO for rep in range(S.seeds)]
    done = _run(zoo_trial, configs, "zoo")
    return Zoo({arch: [done.results[c] for c in configs if c["arch"] == arch] for arch in ZOO})


def _est(values, over="seeds") -> Estimate:
    return Estimate.of([float(v) for v in values], over)


def _fmt_pm(values) -> str:
    e = _est(values)
    if not math.isfinite(e.mean):
        return "—"
    return f"{e.mean:.3f} ± {e.se:.3f}" if math.isfinite(e.se) else f"{e.mean:.3f}"


def _first(run: dict, key: str) -> float:
    """``key`` of the first weight layer (input side, embeddings left out) where it is finite."""
    return next((v for v, kind in zip(run[key], run["kinds_of_layers"]) if math.isfinite(v) and kind != "embedding"),
                math.nan)


def _median_ab(run: dict) -> float:
    ab = [a / b for a, b in zip(run["bjorck_a"], run["bjorck_b"]) if math.isfinite(a) and b > 0]
    return float(np.median(ab)) if ab else math.nan


def _rb_over_rf(run: dict) -> float:
    """R_b/R_f of the rest of the network seen from the first weight layer (ghost 2024)."""
    return _first(run, "R_b") / _first(run, "R_f")


def _grad_norm_ratio(run: dict) -> float:
    """‖∂ℓ/∂W‖ per weight (RMS) of the first weight layer over that of the last (the head)."""
    rms = [n / math.sqrt(w) for n, w, kind in zip(run["weight_grad_norm"], run["weight_numel"], run["kinds_of_layers"])
           if math.isfinite(n / w) and kind != "embedding"]
    return rms[0] / rms[-1] if len(rms) >= 2 else math.nan


def lens_table(zoo: Zoo) -> pd.DataFrame:
    """One row per architecture: the explosion rate per layer (measured and predicted, Paik & Choi)
    and per effective depth, the gradient's growth over the network, GSC of the first layer
    (Philipp et al.), R_b/R_f seen from the first layer and the first-to-last ratio of RMS weight
    gradients (ghost 2024), Bjorck et al.'s median a/b over convolutions; mean ± SE over seeds."""
    rows = []
    for arch, runs in zoo.runs.items():
        rows.append({
            "architecture": arch, "normalization–activation": runs[0]["kinds"] or "—",
            "effective depth": runs[0]["effective_depth"],
            "rate per layer": _fmt_pm(zoo.values(arch, "rate_layer")),
            "predicted": f"{runs[0]['predicted_layer']:.3f}" if math.isfinite(runs[0]["predicted_layer"]) else "—",
            "rate per effective depth": _fmt_pm(zoo.values(arch, "rate_depth")),
            "growth (norm)": f"{np.mean([r['overall_growth'] for r in runs]):.3g}",
            "GSC(first layer)": f"{np.mean([_first(r, 'gsc') for r in runs]):.3g}",
            "R_b/R_f (first layer)": f"{np.mean([_rb_over_rf(r) for r in runs]):.3g}",
            "RMS ∂W first/last": f"{np.mean([_grad_norm_ratio(r) for r in runs]):.3g}",
            "a/b (median)": f"{np.nanmean([_median_ab(r) for r in runs]):.3g}" if any(
                math.isfinite(_median_ab(r)) for r in runs) else "—",
        })
    return pd.DataFrame(rows).set_index("architecture")


# ---- one number, four lenses: the per-layer rate of each paper's measure on the in-fit layers

_LENSES = {"Var[∂ℓ/∂h] (Paik & Choi)": lambda r, k: r["grad_variance"][k],
           "GSC² (Philipp et al.)": lambda r, k: r["gsc"][k] ** 2,
           "R_b/R_f (ghost)": lambda r, k: r["R_b"][k] / r["R_f"][k],
           "mean (∂ℓ/∂W)² (ghost, Bjorck et al.)": lambda r, k: r["weight_grad_norm"][k] ** 2 / r["weight_numel"][k]}


def _runs_of_fit(run: dict) -> tuple[list, list, list]:
    """The in-fit layers of a plain network, their position within their run and the run's id (a
    run: consecutive in-fit layers joined by a normalization and activation)."""
    ks, depth, seg = [], [], []
    current, position = -1, 0
    for k, inside in enumerate(run["in_fit"]):
        if not inside:
            continue
        if ks and ks[-1] == k - 1 and run["between"][k - 1]:
            position += 1
        else:
            current, position = current + 1, 0
        ks.append(k)
        depth.append(position)
        seg.append(current)
    return ks, depth, seg


def one_number_table(zoo: Zoo, arch: str = "VGG-19 (BN)") -> pd.DataFrame:
    """The per-layer growth toward the input of each paper's measure on the in-fit layers of
    ``arch`` (a plain network of equal widths within each run), mean ± SE over seeds, beside the
    theory's r(ReLU); the variance-like measures grow by r, the norms by √r."""
    rows = []
    for lens, measure in _LENSES.items():
        rates = []
        for run in zoo.runs[arch]:
            ks, depth, seg = _runs_of_fit(run)
            rates.append(fit_rate([measure(run, k) for k in ks], depths=depth, segments=seg, reverse=True).rate)
        rows.append({"measure": lens, "rate per layer": _fmt_pm(rates), "samples": rates,
                     "theory": RELU_RATE})
    return pd.DataFrame(rows).set_index("measure")


def figure_zoo_rates(zoo: Zoo) -> plt.Figure:
    """Per architecture, the gradient norm's growth per effective depth (√rate, mean ± 2 SE over
    seeds) and, for the BatchNorm networks, per normalized layer inside the branches beside the
    theory's prediction; Paik & Choi's 1.21 and 1 (no growth) for reference."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    y = np.arange(len(ZOO))[::-1]
    for yi, arch in zip(y, ZOO):
        depth = _est(np.sqrt(zoo.values(arch, "rate_depth")))
        ax.errorbar(depth.mean, yi + 0.15, xerr=2 * depth.se, fmt="o", color="tab:blue",
                    label="per effective depth, measured" if arch == ZOO[0] else None)
        if arch in BN_ARCHS:
            layer = _est(np.sqrt(zoo.values(arch, "rate_layer")))
            ax.errorbar(layer.mean, yi - 0.15, xerr=2 * layer.se, fmt="s", color="tab:green", markersize=5,
                        label="per normalized layer (inside the branches), measured" if arch == ZOO[0] else None)
            ax.plot(math.sqrt(zoo.runs[arch][0]["predicted_layer"]), yi - 0.15,
                    **{**plots.PAPER_POINT, "color": "tab:red", "marker": "+", "markersize": 14},
                    label="per normalized layer, theory" if arch == ZOO[0] else None)
    ax.axvline(math.sqrt(RELU_RATE), label="Paik & Choi: ≈ 1.21 per effective depth", **plots.PAPER)
    ax.axvline(1.0, **plots.REFERENCE)
    ax.set_yticks(y, ZOO)
    ax.set_ylabel("architecture")
    ax.set_xlabel("growth of the gradient norm toward the input, per unit (×)")
    ax.set_title("Seven networks at initialization: the explosion rate")
    fig.legend(loc="lower center", ncol=2, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def _profile(run: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along the network, input to output (relative positions 0 … 1): the gradient variance
    relative to its last value, and GSC. For a residual network both along its residual stream:
    the stream's gradient after each branch (stages chained, :func:`_chained`) and the GSC of the
    layers that write into it; for a plain one its weight layers (the head, whose output is the
    logits, and embeddings left out)."""
    if run["residual"]:
        var = _chained(run)
        ks = [k for k, inside in enumerate(run["stream_layer"]) if inside and math.isfinite(run["gsc"][k])]
    else:
        ks = [k for k, v in enumerate(run["gsc"][:-1]) if math.isfinite(v) and run["kinds_of_layers"][k] != "embedding"]
        var = np.array([run["grad_variance"][k] for k in ks])
        var = var / var[-1]
    gsc = np.array([run["gsc"][k] for k in ks])
    return np.linspace(0, 1, len(var)), var, np.linspace(0, 1, len(gsc)), gsc


def figure_zoo_profiles(zoo: Zoo) -> plt.Figure:
    """Along each network (relative depth, first seed), through Paik & Choi's lens (the gradient
    variance relative to its value at the output end) and Philipp et al.'s (GSC): along the residual
    stream for the residual networks, along the weight layers for VGG-19."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 4.4), sharex=True)
    for arch in ZOO:
        x, var, xg, gsc = _profile(zoo.runs[arch][0])
        a.plot(x, var, label=arch, linewidth=1.4)
        b.plot(xg, gsc, linewidth=1.4)
    a.set(yscale="log", xlabel="relative depth (input 0 → output 1)", ylabel="Var[∂ℓ/∂h] / its last value",
          title="gradient variance (Paik & Choi)")
    b.set(yscale="log", xlabel="relative depth (input 0 → output 1)", ylabel="GSC(k, output)",
          title="gradient scale coefficient (Philipp et al.)")
    fig.legend(loc="lower center", ncol=4, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def figure_one_number(zoo: Zoo, arch: str = "VGG-19 (BN)") -> plt.Figure:
    """The four papers' measures along ``arch`` (first seed), each relative to its value at the last
    in-fit layer, on the in-fit layers: four names for one exponential, beside r(ReLU) per layer."""
    run = zoo.runs[arch][0]
    ks, depth, seg = _runs_of_fit(run)
    fig, ax = plt.subplots(figsize=(7, 4))
    markers = "osD^"
    for (lens, measure), marker in zip(_LENSES.items(), markers):
        for s in sorted(set(seg)):
            pts = [(d, measure(run, k)) for k, d, g in zip(ks, depth, seg) if g == s]
            last = pts[-1][1]
            xs = [len(pts) - 1 - d for d, _ in pts]
            ax.plot(xs, [v / last for _, v in pts], marker=marker, linestyle="-", linewidth=1,
                    color=f"C{list(_LENSES).index(lens)}", label=lens if s == seg[0] else None)
    longest = max(depth) + 1
    xs = np.arange(longest)
    ax.plot(xs, RELU_RATE ** xs, label="theory: r(ReLU)^n = (π/(π−1))^n", **plots.THEORY)
    ax.set(yscale="log", xlabel="layers from the last of the run, toward the input (n)",
           ylabel="measure / its value at the run's last layer",
           title=f"{arch}: one exponential through four lenses")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # layers are counted, not measured
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def figure_diagnosis(S, seed: int, device, arch: str = "ResNet-50") -> tuple[Diagnosis, plt.Figure]:
    """The diagnosis of ``arch`` (the zoo's first draw) and its own figure,
    :meth:`gradprobe.diagnose.Diagnosis.plot`: what ``gradprobe.diagnose(model, x).plot()`` shows a
    reader about their network."""
    config = sweep.Config(arch=arch, rep=0, seed=seed, device=str(device), **{k: getattr(S, k) for k in _ZOO_KEYS})
    gens = sweep.seed_trial(config)
    model = build(arch, S, gens.weights).to(device)
    x, y = _inputs(arch, S, gens.data)
    d = _quiet_diagnose(model, x.to(device), y.to(device), gens.data)
    fig = plt.figure(figsize=(9, 7.5))
    d.plot(fig=fig)
    return d, fig


def check_zoo(claims: Claims, zoo: Zoo) -> None:
    """The zoo's rows: Paik & Choi's rates for vanilla BatchNorm, residual and LayerNorm networks,
    the ghost paper's √r for the weight gradients, Bjorck et al.'s a/b with BatchNorm."""
    claims.add("VGG-19 (BN): rate per layer ≈ π/(π−1)",
               close(RELU_RATE, _est(zoo.values("VGG-19 (BN)", "rate_layer")), rel=0.05),
               source=f"{PAIK}, Fig. 1 caption",
               quote="The explosion rate is approximately π/(π −1) in vanilla networks with batch normalization",
               note="variance rate per BN–ReLU layer, fitted on the runs of layers between pools; "
                    "tolerance ±5% (our reading of 'approximately')")
    for arch in RESIDUAL_ARCHS:
        norm = np.sqrt(zoo.values(arch, "rate_depth"))
        claims.add(f"{arch}: norm rate per effective depth ≈ 1.21", close(math.sqrt(RELU_RATE), _est(norm), rel=0.05),
                   source=f"{PAIK}, Sec. 1",
                   quote="The exploding rate is approximately π/(π −1) ∼ 1.21 per effective depth",
                   note="effective depth counted as residual branches (our reading: the text available does not "
                        "define it); the growth of the residual stream's gradient norm per branch")
    for arch in RESIDUAL_ARCHS:
        runs = zoo.runs[arch]
        layers = sum(1 for kind in runs[0]["kinds_of_layers"] if kind.startswith("conv"))
        per_layer = [r["rate_depth"] ** (r["effective_depth"] / layers) for r in runs]
        claims.add(f"{arch}: lower rate than vanilla BN networks", at_most(_est(per_layer), RELU_RATE,
                                                                           paper="< π/(π−1)"),
                   source=f"{PAIK}, Fig. 1 caption",
                   quote="but it is lower in architectures with residual connections (He et al., 2016), which reduces "
                         "the effective depth",
                   note=f"the stream's growth over its {runs[0]['effective_depth']} branches spread over the "
                        f"network's {layers} convolutions")
    for arch in LN_ARCHS:
        claims.add(f"{arch}: no explosion", at_most(_est(zoo.values(arch, "rate_depth")), NO_EXPLOSION,
                                                    paper="no explosion"),
                   source=f"{PAIK}, Fig. 1 caption",
                   quote="gradient explosion does not occur in architectures with layer normalization (Ba et al., "
                         "2016), including transformer-based architectures",
                   note="variance rate per effective depth below 1 + (r − 1)/4, a quarter of BN–ReLU's excess "
                        "(our threshold)")
    table = one_number_table(zoo)
    grad = table.loc["mean (∂ℓ/∂W)² (ghost, Bjorck et al.)", "samples"]
    claims.add("VGG-19 (BN): weight gradients grow at √r per layer",
               close(math.sqrt(RELU_RATE), _est(np.sqrt(grad)), rel=0.05), source=f"{GHOST}, App. B.1",
               quote="the exponential rate of the exploding gradient for the network defined above should only "
                     "determined on the types of the activations, specifically the square root of r(σ)",
               note="RMS weight gradient per layer, on the runs of BN–ReLU layers between pools")
    gsc = table.loc["GSC² (Philipp et al.)", "samples"]
    claims.add("VGG-19 (BN): GSC grows at √r per layer", close(math.sqrt(RELU_RATE), _est(np.sqrt(gsc)), rel=0.05),
               kind=RECONSTRUCTION, source=f"{PHILIPP}, Def. 1; {GHOST}, Eq. (1)",
               note="Philipp et al. give no closed form for the GSC's growth; this book's: GSC² ∝ R_b/R_f, which "
                    "grows by r(φ) per BN–φ layer")


# --------------------------------------------------------------------------- design choices on a plain stack

def stack(depth: int, width: int, *, norm: str | None = "batch", activation: str = "relu", order: str = "norm_act",
          generator: torch.Generator | None = None) -> nn.Sequential:
    """A plain VGG-like stack: ``depth`` × (Conv3×3 (He, fan-in) with ``norm``
    (:func:`gradprobe.networks.vgg.norm_layer`: BatchNorm, LayerNorm over channels and pixels, or
    none) and ``activation`` in ``order`` ("norm_act": φ(norm(conv x)), "act_norm": norm(φ(conv x)))),
    then a global average pool and a Linear head for 10 classes (N(0, 0.01²), as VGG's)."""
    if order not in ("norm_act", "act_norm"):
        raise ValueError(f"order must be 'norm_act' or 'act_norm', got {order!r}")
    layers, c_in = [], 3
    for _ in range(depth):
        conv = init_weights_(nn.Conv2d(c_in, width, 3, padding=1, bias=False), "he", activation, generator)
        pair = ([norm_layer(norm, width)] if norm else []) + [activation_module(activation)]
        layers += [conv] + (pair[::-1] if order == "act_norm" else pair)
        c_in = width
    head = nn.Linear(width, 10)
    with torch.no_grad():
        nn.init.normal_(head.weight, 0.0, 0.01, generator=generator)
        head.bias.zero_()
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


# name -> (norm, activation, order); the question each answers: activation, normalization type, position
DESIGNS = {
    "BN–ReLU": ("batch", "relu", "norm_act"),
    "BN–GELU": ("batch", "gelu", "norm_act"),
    "BN–SiLU": ("batch", "silu", "norm_act"),
    "BN–tanh": ("batch", "tanh", "norm_act"),
    "BN–SELU": ("batch", "selu", "norm_act"),
    "BN, no activation": ("batch", "identity", "norm_act"),
    "LN–ReLU": ("layer", "relu", "norm_act"),
    "ReLU–BN": ("batch", "relu", "act_norm"),
    "ReLU–LN": ("layer", "relu", "act_norm"),
    "ReLU, no normalization": (None, "relu", "norm_act"),
}


def design_trial(config) -> dict:
    """One design of :data:`DESIGNS`, one seed: a fresh :func:`stack` on a fresh CIFAR-10 batch,
    diagnosed with cross-entropy against the labels."""
    gens = sweep.seed_trial(config)
    norm, act, order = DESIGNS[config["design"]]
    depth, width = config["stack"]
    model = stack(depth, width, norm=norm, activation=act, order=order, generator=gens.weights)
    model = model.to(torch.device(config["device"]))
    x, y = images(config["batch"], config["size"], gens.data)
    return summarize(_quiet_diagnose(model, x.to(model[0].weight.device), y.to(model[0].weight.device), gens.data),
                     model)


def diagnose_designs(S, seed: int, device) -> dict:
    """``{design: [summary per seed]}`` for every design of :data:`DESIGNS`."""
    configs = [sweep.Config(design=name, rep=rep, seed=seed, device=str(device), stack=S.stack, size=S.stack_size,
                            batch=S.stack_batch) for name in DESIGNS for rep in range(S.stack_seeds)]
    done = _run(design_trial, configs, "designs")
    return {name: [done.results[c] for c in configs if c["design"] == name] for name in DESIGNS}


def design_table(designs: dict) -> pd.DataFrame:
    """Per design: the variance rate per layer measured (mean ± SE over seeds) and predicted, the
    norm rate, and Bjorck et al.'s median a/b."""
    rows = []
    for name, runs in designs.items():
        rates = [r["rate_layer"] for r in runs]
        rows.append({"design": name, "between layers": runs[0]["kinds"] or "—",
                     "rate per layer": _fmt_pm(rates), "predicted": runs[0]["predicted_layer"],
                     "norm rate": _fmt_pm(np.sqrt(rates)), "a/b (median)": np.mean([_median_ab(r) for r in runs])})
    return pd.DataFrame(rows).set_index("design").round({"predicted": 4, "a/b (median)": 3})


def figure_designs(designs: dict) -> plt.Figure:
    """Measured (mean ± 2 SE over seeds) against predicted variance rate per layer for every design,
    with the line measured = predicted: the activation (left) and the normalization's type and
    position (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 4.2), sharey=True)
    groups = (["BN–ReLU", "BN–GELU", "BN–SiLU", "BN–tanh", "BN–SELU", "BN, no activation"],
              ["BN–ReLU", "ReLU–BN", "LN–ReLU", "ReLU–LN", "ReLU, no normalization"])
    for ax, names, title in zip(axes, groups, ("the activation (BatchNorm before it)",
                                               "the normalization: type and position (ReLU)")):
        for i, name in enumerate(names):
            e = _est([r["rate_layer"] for r in designs[name]])
            ax.errorbar(i, e.mean, yerr=2 * e.se, fmt="o", color="tab:blue",
                        label="measured (± 2 SE)" if i == 0 else None)
            ax.plot(i, designs[name][0]["predicted_layer"], **{**plots.PAPER_POINT, "color": "tab:red"},
                    label="theory" if i == 0 else None)
        ax.axhline(1.0, **plots.REFERENCE)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
        ax.set_title(title)
    axes[0].set_ylabel("variance rate per layer, toward the input")
    axes[0].legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def check_designs(claims: Claims, designs: dict) -> None:
    """Each design choice's prediction against its measurement."""
    rate = lambda name: _est([r["rate_layer"] for r in designs[name]])
    for name, value, where in (("BN–ReLU", 1.467, "1.467"), ("BN–tanh", 1.178, "1.178"), ("BN–SELU", 1.072, "1.072")):
        claims.add(f"{name} stack: rate {where}", close(value, rate(name), rel=0.05), source=f"{GHOST}, App. C, Eq. (1)",
                   quote="The exponential rates are 1.072, 1.178, and 1.467 for SELU, Tanh, and ReLU respectively",
                   note="convolutions here (the paper: fully connected layers); tolerance ±5%")
    claims.add("smoother activations explode less: GELU, SiLU < ReLU",
               ordered({"SiLU": rate("BN–SiLU"), "GELU": rate("BN–GELU"), "ReLU": rate("BN–ReLU")}),
               source=f"{PAIK}, Fig. 1 caption",
               quote="Smoother variants of ReLU ... exhibit lower exploding rates",
               note=f"predicted r: SiLU {explosion_rate('silu'):.3f}, GELU {explosion_rate('gelu'):.3f}, "
                    f"ReLU {RELU_RATE:.3f}")
    for name in ("BN–GELU", "BN–SiLU"):
        claims.add(f"{name} stack: rate r(φ) = {designs[name][0]['predicted_layer']:.3f}",
                   close(designs[name][0]["predicted_layer"], rate(name), rel=0.05), kind=RECONSTRUCTION,
                   source=f"{GHOST}, Eq. (1); {PAIK}, Fig. 1 caption",
                   note="the paper gives no number for this activation; r(φ) = E[φ'(z)²]/Var[φ(z)] by this book's "
                        "quadrature; tolerance ±5%")
    claims.add("no activation: no explosion", at_most(rate("BN, no activation"), NO_EXPLOSION, paper="no explosion"),
               source=f"{PAIK}, Fig. 1 caption",
               quote="In the extreme case, gradient explosion does not occur if the activation function is not used",
               note="variance rate per layer below 1 + (r − 1)/4 (our threshold, as for the LayerNorm networks)")
    claims.add("LayerNorm before ReLU: no explosion", at_most(rate("LN–ReLU"), NO_EXPLOSION, paper="no explosion"),
               source=f"{PAIK}, Fig. 1 caption",
               quote="gradient explosion does not occur in architectures with layer normalization",
               note="LayerNorm over channels and pixels (one group); predicted E[φ'²]/E[φ²] = 1 for ReLU; "
                    "threshold 1 + (r − 1)/4")
    for name in ("ReLU–BN", "ReLU–LN"):
        claims.add(f"{name}: normalization after the activation explodes at r(ReLU)",
                   close(designs[name][0]["predicted_layer"], rate(name), rel=0.05), kind=RECONSTRUCTION,
                   source=f"{GHOST}, Eq. (1); {PAIK}, Fig. 1 caption",
                   note="a position the papers do not test; the book's prediction: a normalization right after φ "
                        "removes φ's mean and divides by Var[φ], whatever its type")
    claims.add("ReLU without normalization (He init): the gradient still explodes",
               at_least(rate("ReLU, no normalization"), math.sqrt(RELU_RATE), paper="explodes"),
               source=f"{GHOST}, App. C, Fig. 3",
               quote="they all have the exploding gradient problems regardless of the type of activation layers nor "
                     "the existence of batch normalization layers",
               note="criterion: a variance rate of at least √r(ReLU) per layer; He's theory predicts 1 "
                    "(fan_in·E[W²]·E[φ'²]), less at the zero-padded border")
    claims.add("no normalization: a/b within a factor 2",
               at_most(_est([_median_ab(r) for r in designs["ReLU, no normalization"]]), 2.0, paper="≤ 2"),
               source=f"{BJORCK}, Sec. 4, Table 1",
               quote="For an unnormalized networks the absolute value of (4) and the sum of the absolute values of "
                     "the summands generally agree to within a factor 2 or less",
               note="the plain ReLU stack here (the paper: an unnormalized ResNet-110)")
    claims.add("BatchNorm: a/b about 10²", close(2.0, _est(np.log10([_median_ab(r) for r in designs["BN–ReLU"]])),
                                                 abs=0.5),
               source=f"{BJORCK}, Sec. 4, Table 1",
               quote="For a batch normalized network, those two differ by about two orders of magnitude",
               note="log₁₀ of the median a/b over the BN–ReLU stack's convolutions, within half an order of "
                    "magnitude of 2 (our reading of 'about')")


# --------------------------------------------------------------------------- residual branches: γ and 1/√L

def branches(depth: int) -> int:
    """L, the residual branches (blocks) of torchvision's ResNet-``depth``."""
    return sum(RESNET_LAYERS[depth][1])


SCALES = ("1", "1/√L", "0")


def residual_trial(config) -> dict:
    """One ResNet of ``depth``, one seed, diagnosed on a CIFAR-10 batch: ``layout`` "post"
    (torchvision's) with the last γ of each branch at ``scale`` (1 or 0), or "pre" (pre-activation)
    with each branch multiplied by ``scale`` (1 or 1/√L, L its branches)."""
    gens = sweep.seed_trial(config)
    depth, value = config["depth"], {"1": 1.0, "1/√L": 1 / math.sqrt(branches(config["depth"])), "0": 0.0}[
        config["scale"]]
    if config["layout"] == "post":
        model = last_gamma_(imagenet_resnet(depth, num_classes=10, generator=gens.weights), value)
    else:
        model = branch_scale_(preact_resnet(depth, num_classes=10, generator=gens.weights), value)
    model = model.to(torch.device(config["device"]))
    x, y = images(config["batch"], config["size"], gens.data)
    dev = model.fc.weight.device
    return summarize(_quiet_diagnose(model, x.to(dev), y.to(dev), gens.data), model)


def diagnose_residual(S, seed: int, device) -> dict:
    """``{(layout, depth, scale): [summary per seed]}``: torchvision's shallowest ResNet of
    ``S.resnets`` with the last γ at 1 and 0; pre-activation ResNets of every depth with branches ×1
    and ×1/√L."""
    keys = [("post", min(S.resnets), "1"), ("post", min(S.resnets), "0")]
    keys += [("pre", d, g) for d in S.resnets for g in SCALES[:2]]
    configs = [sweep.Config(layout=lay, depth=d, scale=g, rep=rep, seed=seed, device=str(device), batch=S.batch,
                            size=S.size) for lay, d, g in keys for rep in range(S.resnet_seeds)]
    done = _run(residual_trial, configs, "resnets")
    return {k: [done.results[c] for c in configs if (c["layout"], c["depth"], c["scale"]) == k] for k in keys}


def _stream_growth(run: dict) -> float:
    """Growth of the stream's gradient variance from the output to the input: the product over the
    chains (stages) of their first-to-last ratio, so that a projection shortcut's jump between
    stages is left out, as in the rate's fit."""
    total, var, seg = 1.0, run["stream_variance"], run["stream_segment"]
    for s in sorted(set(seg)):
        v = [x for x, t in zip(var, seg) if t == s]
        total *= v[0] / v[-1]
    return total


def _label(key) -> str:
    layout, depth, scale = key
    what = "last γ" if layout == "post" else "branch ×"
    return f"{'pre-act ' if layout == 'pre' else ''}ResNet-{depth}, {what} {scale}"


def _chained(run: dict) -> np.ndarray:
    """The stream's gradient variance per branch (input to output), each stage rescaled so that it
    ends where the next one starts: the growth within stages, the projection shortcuts' jumps
    between them left out; 1 at the last branch."""
    var, seg = np.array(run["stream_variance"]), np.array(run["stream_segment"])
    out, scale = np.empty_like(var), 1.0
    for s in sorted(set(seg.tolist()), reverse=True):
        v = var[seg == s]
        out[seg == s] = v / v[-1] * scale
        scale = out[seg == s][0]
    return out


def residual_table(res: dict) -> pd.DataFrame:
    """Per ResNet and scaling: branches L, the rate per effective depth and the stream's total growth
    within its stages (variance), mean ± SE over seeds."""
    rows = [{"network": _label(key), "branches L": branches(key[1]),
             "rate per effective depth": _fmt_pm([r["rate_depth"] for r in runs]),
             "total growth within stages": _fmt_pm([_stream_growth(r) for r in runs])} for key, runs in res.items()]
    return pd.DataFrame(rows).set_index("network")


def figure_residual(res: dict) -> plt.Figure:
    """Left: the residual stream's gradient variance along the shallowest networks (first seed),
    relative to the last branch's: torchvision's with γ = 1 and 0, pre-activation with branches ×1
    and ×1/√L. Right: the stream's total growth within stages against the number of branches L for
    the pre-activation ResNets, ×1 and ×1/√L (mean ± 2 SE over seeds)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 4.2))
    shallow = min(k[1] for k in res)
    for key, style in ((("post", shallow, "1"), "o-"), (("post", shallow, "0"), "s-"), (("pre", shallow, "1"), "^-"),
                       (("pre", shallow, "1/√L"), "D-")):
        chained = _chained(res[key][0])
        a.plot(np.arange(len(chained)) + 1, chained, style, markersize=3, linewidth=1.2, label=_label(key))
    a.set(yscale="log", xlabel="residual branch (input → output)", ylabel="Var[∂ℓ/∂stream] / its last value",
          title="the stream's gradient, within stages")
    a.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    a.legend(fontsize="x-small")
    for scale, color in zip(SCALES[:2], ("tab:green", "tab:red")):
        depths = sorted(k[1] for k in res if k[0] == "pre" and k[2] == scale)
        est = [_est([_stream_growth(r) for r in res[("pre", d, scale)]]) for d in depths]
        b.errorbar([branches(d) for d in depths], [e.mean for e in est], yerr=[2 * e.se for e in est], fmt="o-",
                   color=color, label=f"pre-act, branch × {scale}")
    b.set(yscale="log", xlabel="branches L", ylabel="total growth of Var within stages",
          title="depth: does 1/√L keep it bounded?")
    b.set_xticks([branches(d) for d in sorted({k[1] for k in res})])
    b.legend(fontsize="small")
    fig.tight_layout()
    return fig


def check_residual(claims: Claims, res: dict) -> None:
    """The ghost paper's Appendix B.2: zero-γ and 1/√L."""
    shallow, deep = min(k[1] for k in res), max(k[1] for k in res)
    zero, one = res[("post", shallow, "0")], res[("post", shallow, "1")]
    claims.add(f"zero-γ ResNet-{shallow}: no growth along the stream, where γ = 1 explodes",
               all_of({"γ = 0": close(1.0, _est([r["rate_depth"] for r in zero]), abs=0.02),
                       "γ = 1": at_least(_est([r["rate_depth"] for r in one]), NO_EXPLOSION)},
                      paper="γ = 0 solves it"), source=f"{GHOST}, App. B.2",
               quote="A zero-gamma initialization (Goyal et al., 2017) or a 1/√L initialization (Balduzzi et al., "
                     "2017) are used solve the problem stated by Zhang et al. (2019). Interestingly, this method also "
                     "solve the problem stated in this paper.",
               note="torchvision's layout, γ = 0 in each branch's last BatchNorm; variance rate per effective "
                    "depth, |x − 1| ≤ 0.02 (exact at initialization: a branch whose last γ is 0 passes no "
                    "gradient back), against the same networks with γ = 1, whose rate must reach "
                    "1 + (r − 1)/4 for the relief to be a relief")
    log_growth = lambda d, g: [math.log(_stream_growth(r)) for r in res[("pre", d, g)]]
    deep_log, shallow_log = _est(log_growth(deep, "1/√L")), _est(log_growth(shallow, "1/√L"))
    difference = Estimate(deep_log.mean - shallow_log.mean, math.hypot(deep_log.se, shallow_log.se), deep_log.n,
                          "seeds")
    claims.add(f"1/√L: total growth independent of depth (L = {branches(shallow)} → {branches(deep)})",
               close(0.0, difference, abs=math.log(1.5)), source=f"{GHOST}, App. B.2, Prop. B.17", needs="book",
               quote="When considering the entire network, the two ratios are both O((1+1/L)^L) order which is "
                     "independent with the network depth",
               note="pre-activation ResNets, each branch × 1/√L (the paper scales the last BatchNorm's γ; a "
                    "pre-activation branch ends in a convolution); log of the stream's total variance growth "
                    "within stages, deepest minus shallowest, |difference| ≤ log 1.5 (our tolerance)")
    claims.add(f"branch × 1: total growth rises with depth (L = {branches(shallow)} → {branches(deep)})",
               ratio_at_least(_est([_stream_growth(r) for r in res[("pre", deep, "1")]]),
                              _est([_stream_growth(r) for r in res[("pre", shallow, "1")]]), 2.0),
               kind=RECONSTRUCTION, source=f"{GHOST}, App. B.2, Prop. B.17",
               note="the contrast Prop. B.17 implies for unscaled branches (R_b(R) = 1 + R_b(F) per block); "
                    "criterion: at least doubled")


def machinery_checks(claims: Claims, zoo: Zoo, designs: dict) -> None:
    """Checks of the book's machinery, counted apart: the diagnosis's predicted rate for BN–ReLU
    pairs is the closed form π/(π−1) (quadrature), and 1 without an activation."""
    claims.add("predicted BN–ReLU rate = π/(π−1) (quadrature vs closed form)",
               close(RELU_RATE, zoo.runs["VGG-19 (BN)"][0]["predicted_layer"], rel=1e-5), kind=MACHINERY,
               source="this book, gradprobe.theory.gaussian")
    claims.add("predicted rate without an activation = 1",
               close(1.0, designs["BN, no activation"][0]["predicted_layer"], rel=1e-5), kind=MACHINERY,
               source="this book, gradprobe.theory.gaussian")


# --------------------------------------------------------------------------- numbers for the prose

def glue_zoo(page, zoo: Zoo) -> None:
    """Glue the zoo's numbers the chapter's prose quotes (``{glue:text}`name```)."""
    norm = lambda arch, key: _est(np.sqrt(zoo.values(arch, key))).mean
    page.glue("vgg_rate", _est(zoo.values("VGG-19 (BN)", "rate_layer")).mean, ".3f")
    page.glue("vgg_norm", norm("VGG-19 (BN)", "rate_layer"), ".3f")
    page.glue("vgg_growth", float(np.mean(zoo.values("VGG-19 (BN)", "overall_growth"))), ".2f")
    for key, arch in (("r50", "ResNet-50"), ("pre50", "pre-act ResNet-50"), ("r56", "ResNet-56 (CIFAR)"),
                      ("vit", "ViT"), ("gpt", "GPT-2-style decoder"), ("convnext", "ConvNeXt-T")):
        page.glue(f"{key}_depth_norm", norm(arch, "rate_depth"), ".3f")
        page.glue(f"{key}_depth", _est(zoo.values(arch, "rate_depth")).mean, ".3f")
        page.glue(f"{key}_growth", float(np.mean(zoo.values(arch, "overall_growth"))), ".3g")
    page.glue("r50_layer", _est(zoo.values("ResNet-50", "rate_layer")).mean, ".3f")
    page.glue("pre50_layer", _est(zoo.values("pre-act ResNet-50", "rate_layer")).mean, ".3f")
    page.glue("r56_layer", _est(zoo.values("ResNet-56 (CIFAR)", "rate_layer")).mean, ".2f")
    page.glue("vit_layer", _est(zoo.values("ViT", "rate_layer")).mean, ".3f")
    page.glue("vit_layer_pred", zoo.runs["ViT"][0]["predicted_layer"], ".3f")
    page.glue("r50_gradw", float(np.mean([_grad_norm_ratio(r) for r in zoo.runs["ResNet-50"]])), ".3g")
    table = one_number_table(zoo)
    means = [float(np.mean(v)) for v in table["samples"]]
    page.glue("lens_low", min(means), ".3f")
    page.glue("lens_high", max(means), ".3f")
    page.glue("relu_rate", RELU_RATE, ".3f")
    page.glue("relu_norm", math.sqrt(RELU_RATE), ".3f")
    page.glue("no_explosion", NO_EXPLOSION, ".3f")


def glue_designs(page, designs: dict) -> None:
    """Glue the design choices' numbers the prose quotes: ``rate_<design>`` and ``pred_<design>``
    with the design's name in lower case, dashes and spaces as underscores."""
    for name, runs in designs.items():
        key = name.lower().replace("–", "_").replace(", ", "_").replace(" ", "_")
        page.glue(f"rate_{key}", _est([r["rate_layer"] for r in runs]).mean, ".3f")
        page.glue(f"pred_{key}", runs[0]["predicted_layer"], ".3f")
    page.glue("ab_bn", float(np.mean([_median_ab(r) for r in designs["BN–ReLU"]])), ".3g")
    page.glue("ab_none", float(np.mean([_median_ab(r) for r in designs["ReLU, no normalization"]])), ".3g")


def glue_residual(page, res: dict) -> None:
    """Glue the residual study's numbers: the zero-γ rate, and the pre-activation ResNets' total
    growth (variance, within stages) at the shallowest and deepest L for ×1 and ×1/√L."""
    shallow, deep = min(k[1] for k in res), max(k[1] for k in res)
    page.glue("zero_rate", _est([r["rate_depth"] for r in res[("post", shallow, "0")]]).mean, ".4f")
    page.glue("post_rate", _est([r["rate_depth"] for r in res[("post", shallow, "1")]]).mean, ".3f")
    page.glue("l_shallow", branches(shallow))
    page.glue("l_deep", branches(deep))
    for scale, key in (("1", "one"), ("1/√L", "sqrt")):
        for depth, where in ((shallow, "shallow"), (deep, "deep")):
            page.glue(f"growth_{key}_{where}", float(np.mean([_stream_growth(r) for r in res[("pre", depth, scale)]])),
                      ".3g")


def glue_settings(page, S) -> None:
    """Glue the settings the prose quotes: seeds, the stack's depth and width."""
    page.glue("seeds", S.seeds)
    page.glue("stack_depth", S.stack[0])
    page.glue("stack_width", S.stack[1])
