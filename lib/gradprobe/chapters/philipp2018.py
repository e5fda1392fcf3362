"""Chapter *The exploding gradient problem demystified* (Philipp, Song & Carbonell 2018): the
settings, drivers, figures, tables and claims of ``notebooks/02_philipp2018.ipynb``, in the
notebook's order.

- :func:`settings` and :func:`cost`: the three scales and the chapter's work at each;
- the architectures of Figure 1, used by every section: :data:`ARCHITECTURES`, :func:`architecture`;
- the definitions: :func:`gsc_check` (the GSC estimate against the exact Jacobian);
- Proposition 1: :func:`proposition1`, :func:`figure_proposition1`, :func:`check_proposition1`;
- Figure 1: :func:`init_survey` (one architecture), :func:`survey_figure1` (all of them),
  :func:`figure1_table`, :func:`figure1_scale` (A–C), :func:`figure1_domain` (D–F),
  :func:`check_figure1`;
- the ResNets of Figure 1 and the explosion/collapse trade-off: :func:`resnet_table`,
  :func:`figure_resnets`, :func:`check_resnets`;
- the Pythagorean equation: :func:`pythagorean_sweep` (a width sweep), :func:`figure_pythagoras`,
  :func:`figure_dilution`, :func:`pythagorean_table`, :func:`check_pythagoras`;
- the cross-reference to chapter 1: :func:`check_cross_reference`;
- Figure 5, pseudo-linearity: :func:`pseudo_linearity_fig5`, :func:`figure5`, :func:`check_figure5`;
- Figure 2: :func:`discs_figure2` (driver), :func:`figure2_discs` (two figures of discs),
  :func:`figure2_roughness`, :func:`roughness_table`, :func:`check_figure2`;
- Figure 3: :class:`TrainTrial` and :func:`train_trial` (one run, a :mod:`gradprobe.sweep` trial),
  :func:`train_figure3` (the depth sweep), :func:`figure3_depth` (A–C), :func:`figure3_training`
  (D–F), :func:`figure3_table`, :func:`check_figure3`.

Drivers take the settings ``S`` (:func:`settings`, or any object with the same attributes), the
page's :class:`~gradprobe.runtime.Generators` and a device, and draw from the generators in a
fixed order: a result depends only on the seed and the settings. The training runs of Figure 3
seed themselves from their configuration (:func:`gradprobe.sweep.seed_trial`). Figure functions
return the figure; the notebook saves and shows it (:func:`gradprobe.book.plots.show`). Claims
functions add rows to the page's :class:`~gradprobe.book.claims.Claims`.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import sweep
from ..book import plots, scales
from ..book.claims import (MACHINERY, RECONSTRUCTION, Estimate, all_of, at_least, at_most, between, close,
                           difference_at_least)
from ..checks import int_at_least, one_of, positive_int
from ..data.cifar10 import CIFAR10_CLASSES, cifar10, to_tensor
from ..data.tensors import channel_stats, cifar10_tensors
from ..measure import discs, linearize
from ..measure.gsc import (dilution_prediction, domain_stats, gsc_exact, gsc_points, gsc_profile,
                           pythagorean_cross_term, residual_checks)
from ..measure.hooks import record, weight_layers
from ..measure.rates import fit_rate
from ..networks.layers import activation_fn
from ..networks.mlp import PreActBlock, mlp
from ..runtime import Generators, progress
from ..theory import gaussian
from ..train.loop import fit

__all__ = ["settings", "FIXED_COST", "cost", "glue_settings", "ARCHITECTURES", "architecture", "gsc_check",
           "check_definitions", "Rescaled", "proposition1", "figure_proposition1", "check_proposition1",
           "block_terms", "InitSurvey", "init_survey", "survey_figure1", "EXPLODES", "EXPLODING",
           "COLLAPSING", "figure1_table", "COLOURS", "style_of", "figure1_scale", "figure1_domain",
           "check_figure1", "resnet_table", "figure_resnets", "check_resnets", "PythagoreanSweep",
           "pythagorean_sweep", "figure_pythagoras", "figure_dilution", "pythagorean_table",
           "check_pythagoras", "check_cross_reference", "FIG5_CASES", "Figure5", "pseudo_linearity_fig5",
           "figure5", "fig5_table", "check_figure5", "DISC_ARCHITECTURES", "Figure2Discs", "discs_figure2",
           "figure2_discs", "figure2_roughness", "roughness_table", "check_figure2", "CHANCE", "KEEP",
           "MIN_IMPROVEMENT", "TrainTrial", "checkpoint_steps", "train_trial", "Figure3", "train_figure3",
           "figure3_depth", "figure3_training", "figure3_table", "check_figure3"]


# =========================================================================== settings
def settings(scale: str) -> scales.Settings:
    """The chapter's settings at ``scale`` ("smoke", "book" or "paper"), with a note per setting
    saying where it is the paper's and where it is ours."""
    exploding = ["batch-ReLU", "layer-tanh", "SELU"]
    return scales.settings(
        scale,
        book=dict(linear_layers=50, width=100, batch=100, seeds=10, probes=1,
                  pythagorean_widths=[25, 50, 100, 200],
                  fig5_repeats=1000,
                  disc_resolution=128, disc_bn_batch=8, disc_seeds=3,
                  train_archs=exploding + ["looks-linear ReLU", "batch-ReLU ResNet"],
                  train_depths=[2, 4, 8, 16, 32], train_width=64, train_pool=4, train_images=5000,
                  train_batch=128, train_steps=800, learning_rates=[1e-4, 1e-3], train_seeds=3,
                  eval_images=500, checkpoints=4, focus_depth=16),
        smoke=dict(linear_layers=20, seeds=2, pythagorean_widths=[16, 32, 64], fig5_repeats=100,
                   disc_resolution=32, disc_bn_batch=4, disc_seeds=2, train_archs=["batch-ReLU", "looks-linear ReLU"],
                   train_depths=[2, 8], train_images=1000, train_steps=40, learning_rates=[1e-3],
                   train_seeds=2, eval_images=200, checkpoints=2, focus_depth=8),
        paper=dict(probes=4, pythagorean_widths=[25, 50, 100, 200, 400], fig5_repeats=10000,
                   disc_resolution=400, disc_bn_batch=16, disc_seeds=5,
                   train_archs=["batch-ReLU", "batch-tanh", "layer-tanh", "SELU", "looks-linear ReLU",
                                "batch-ReLU ResNet"],
                   train_depths=[2, 4, 8, 16, 32, 50], train_width=100, train_pool=1, train_images=50000,
                   train_steps=20000, learning_rates=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3], train_seeds=5,
                   eval_images=5000, checkpoints=6, focus_depth=32),
        notes={"linear_layers": "the paper's (Figure 2's caption: 50 linear layers)",
               "width": "100, as in the workshop version of the paper",
               "batch": "Gaussian inputs per network (ours)",
               "seeds": "networks per architecture (ours)",
               "probes": "random probes per GSC estimate",
               "pythagorean_widths": "widths of the ResNets in the Pythagorean sweep (ours)",
               "fig5_repeats": "draws of Figure 5's 50 pre-activations (ours)",
               "disc_resolution": "pixels across a disc (ours)",
               "disc_bn_batch": "images in a BatchNorm network's batch at every disc point (ours)",
               "disc_seeds": "discs per architecture, each from three fresh weight matrices (ours)",
               "train_archs": "trained architectures (ours; the paper trains its exploding ones)",
               "train_depths": "linear layers of the trained networks (ours)",
               "train_width": "width of the trained networks (ours: smaller than Figure 1's, for time)",
               "train_pool": "CIFAR-10 images averaged over pool×pool pixels, then flattened (ours)",
               "train_images": "CIFAR-10 training images trained on (ours)",
               "train_batch": "mini-batch size (ours)", "train_steps": "Adam steps per run (ours)",
               "learning_rates": "Adam learning rates; the best per architecture and depth is kept (ours)",
               "train_seeds": "runs per architecture, depth and learning rate",
               "eval_images": "training images for the error and the effective depth",
               "checkpoints": "points in training where effective depth and GSC are measured",
               "focus_depth": "depth of the networks followed through training (ours)"})


FIXED_COST = 2e7   # imports, loading CIFAR-10 and drawing the figures, in the units of cost()


def cost(S) -> float:
    """The chapter's work at settings ``S``, in passes of one input through one width-100 layer
    (forward or backward): Figure 1 and its width sweep, the discs of Figure 2 and the training
    runs of Figure 3 with their effective-depth measurements, plus :data:`FIXED_COST` for what
    does not depend on the scale (about 15 s on one CPU core). Used for the time estimates of the
    opening box."""
    w2 = lambda width: (width / 100) ** 2  # noqa: E731
    fig1 = S.seeds * len(ARCHITECTURES) * S.batch * S.linear_layers * 8 * w2(S.width)
    sweep_ = S.seeds * 7 * S.batch * S.linear_layers * 3 * sum(w2(w) for w in S.pythagorean_widths)
    pixels = 0.785 * S.disc_resolution ** 2
    fig2 = S.disc_seeds * pixels * S.linear_layers * w2(S.width) * (7 + 2 * S.disc_bn_batch) * 1.3
    runs = len(S.train_archs) * len(S.learning_rates) * S.train_seeds
    train = runs * sum(S.train_steps * S.train_batch * d * 3 + S.checkpoints * S.eval_images * d * d * 2
                       for d in S.train_depths) * w2(S.train_width)
    return float(fig1 + sweep_ + fig2 + train + FIXED_COST)


def glue_settings(page, S) -> None:
    """Glue every setting of ``S`` as ``S_<name>`` (lists joined by commas), so that the prose
    quotes the settings of the scale it was run at."""
    for name, value in vars(S).items():
        if not name.startswith("_"):
            text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) \
                if isinstance(value, (list, tuple)) else str(value)
            page.glue(f"S_{name}", text)


# =========================================================================== the architectures
# The architectures of Philipp et al.'s Figure 1 (kwargs of gradprobe.networks.mlp.mlp); "layer-"/"batch-"
# put LayerNorm/BatchNorm between the linear map and the nonlinearity; init is variance-preserving
# (He for ReLU, LeCun for tanh and SELU); ResNets are stem + pre-activation blocks.
_PLAIN = {
    "ReLU": dict(activation="relu", init="he"),
    "layer-ReLU": dict(activation="relu", norm="layer", init="he"),
    "batch-ReLU": dict(activation="relu", norm="batch", init="he"),
    "tanh": dict(activation="tanh", init="lecun"),
    "layer-tanh": dict(activation="tanh", norm="layer", init="lecun"),
    "batch-tanh": dict(activation="tanh", norm="batch", init="lecun"),
    "SELU": dict(activation="selu", init="lecun"),
}
ARCHITECTURES = {**_PLAIN, "looks-linear ReLU": dict(activation="relu", init="looks_linear"),
                 **{f"{name} ResNet": {**kw, "residual": "preact"} for name, kw in _PLAIN.items()}}


def architecture(name: str, linear_layers: int, width: int, in_dim: int | None = None, out_dim: int | None = None,
                 generator: torch.Generator | None = None) -> nn.Module:
    """One of :data:`ARCHITECTURES` with ``linear_layers`` linear layers in all (the last is the
    linear head to ``out_dim``, default ``width``): ``linear_layers`` must be even for the
    ResNets (stem, blocks of two, head)."""
    one_of("architecture", name, tuple(ARCHITECTURES))
    int_at_least("linear_layers", linear_layers, 2)
    return mlp(linear_layers - 1, width, in_dim=in_dim, out_dim=width if out_dim is None else out_dim,
               generator=generator, **ARCHITECTURES[name])


def _require(survey: dict, names) -> None:
    missing = [n for n in names if n not in survey]
    if missing:
        raise ValueError(f"the survey lacks {', '.join(map(repr, missing))}; survey every architecture "
                         f"with survey_figure1")


def _is_resnet(net: nn.Module) -> bool:
    return any(isinstance(m, PreActBlock) for m in net.modules())


# =========================================================================== the definitions
def gsc_check(weights: torch.Generator | None = None, data: torch.Generator | None = None,
              linear_layers: int = 8, width: int = 12, batch: int = 10, probes: int = 500) -> pd.DataFrame:
    """GSC(k, output) of a small batch-ReLU ResNet (``linear_layers`` linear layers of ``width``
    units, weights from ``weights``) on a Gaussian batch [batch, width] (from ``data``) at the
    residual stream's points, exactly (``gsc_exact``, the full Jacobian) and estimated with
    ``probes`` Gaussian probes (``gsc_profile``, probes from ``data``), rounded to 3 decimals. On
    the CPU."""
    positive_int("batch", batch)
    positive_int("probes", probes)
    small = architecture("batch-ReLU ResNet", linear_layers, width, generator=weights)
    x_small = torch.randn(batch, width, generator=data)
    points, _ = gsc_points(small)
    exact = [gsc_exact(small, x_small, m) for m in points]
    estimate = gsc_profile(small, x_small, points, probes=probes, generator=data)
    names = ["stem"] + [f"block {i}" for i in range(1, len(points) - 1)] + ["head"]
    return pd.DataFrame({"GSC(k, output), exact (jacrev)": exact, f"estimate ({probes} probes)": estimate.numpy()},
                        index=pd.Index(names, name="k")).round(3)


def check_definitions(page, table: pd.DataFrame, probes: int = 500) -> None:
    """MACHINERY: the probe estimate of GSC agrees with the exact Jacobian (the table of
    :func:`gsc_check`): the relative errors over the points, within 3·√(2/probes) (three times
    the relative spread of an average of ``probes`` probes on a rank-one Jacobian, the worst case)."""
    exact, estimate = table.iloc[:, 0].to_numpy(), table.iloc[:, 1].to_numpy()
    page.claims.add("GSC probe estimate = exact Jacobian (small batch-ReLU ResNet)",
                    close(0.0, Estimate.of(estimate / exact - 1, "points"), abs=3 * math.sqrt(2 / probes)),
                    kind=MACHINERY, source="philipp2018, definition of the GSC",
                    note="checks gradprobe.measure.gsc.gsc_profile against torch.func.jacrev")


# =========================================================================== Proposition 1
@dataclass
class Rescaled:
    """Proposition 1 on one plain ReLU network f and its rescaled copy f′ (linear layer 1 times
    r^−(L−1), every later one times r, so f′ = f): per linear layer (``layers``, input to
    output), the raw gradient ‖∂ℓ/∂f_l‖ (``raw``, rows f and f′) and GSC(l, ℓ) (``gsc``, rows f
    and f′), the largest relative output difference, and the ``rate`` r."""

    layers: list[int]
    raw: torch.Tensor
    gsc: torch.Tensor
    output_change: float
    rate: float

    @property
    def raw_rates(self) -> tuple[float, float]:
        """Growth of the raw gradient per layer toward the input, of f and of f′."""
        return tuple(fit_rate(r, depths=self.layers, reverse=True).rate for r in self.raw)


def _raw_and_gsc(net, x, y):
    layers = weight_layers(net)
    loss = lambda out: F.cross_entropy(out, y)  # noqa: E731
    with record(net, layers) as rec:
        out = net(x)
        loss(out).backward()
    raw = torch.stack([g.norm() for g in rec.gradients])
    net.zero_grad(set_to_none=True)
    return out.detach(), raw, gsc_profile(net, x, layers, loss=loss)


def proposition1(gen: Generators, linear_layers: int = 10, width: int = 100, batch: int = 100,
                 rate: float = 2.0) -> Rescaled:
    """Proposition 1's point on a plain ReLU network (He init, no biases but the head's, which
    start at zero) of ``linear_layers`` linear layers of ``width`` and 10 outputs, on Gaussian
    inputs with random labels (cross-entropy loss): ReLU is positively homogeneous, so scaling
    linear layer 1 by r^−(L−1) and every later layer by r leaves the function unchanged while
    every layer's output f_l is scaled by r^(l−L), so that its raw gradient ‖∂ℓ/∂f_l‖ grows by r
    per layer toward the input. The GSC, a ratio of relative changes, does not move."""
    int_at_least("linear_layers", linear_layers, 3)
    if not rate > 0:
        raise ValueError(f"rate must be positive, got {rate}")
    net = architecture("ReLU", linear_layers, width, out_dim=10, generator=gen.weights)
    x = torch.randn(batch, width, generator=gen.data)
    y = torch.randint(0, 10, (batch,), generator=gen.data)
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        for l, layer in enumerate(weight_layers(scaled), start=1):
            layer.weight.mul_(rate ** -(linear_layers - 1) if l == 1 else rate)
    out, raw, gsc = _raw_and_gsc(net, x, y)
    out2, raw2, gsc2 = _raw_and_gsc(scaled, x, y)
    change = float(((out2 - out).norm(dim=1) / out.norm(dim=1)).max())
    return Rescaled(list(range(1, linear_layers + 1)), torch.stack([raw, raw2]), torch.stack([gsc, gsc2]),
                    change, rate)


def figure_proposition1(p: Rescaled) -> plt.Figure:
    """Proposition 1: A the raw gradient ‖∂ℓ/∂f_l‖ of f and of the rescaled f′ per linear layer
    (log scale), B GSC(l, ℓ) of both (the same curve)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, values, what in ((a, p.raw, "raw gradient ‖∂ℓ/∂f_l‖"), (b, p.gsc, "GSC(l, loss) (dimensionless)")):
        ax.plot(p.layers, values[0].numpy(), **plots.OURS, label="f (He init)")
        ax.plot(p.layers, values[1].numpy(), **{**plots.OURS, "marker": "x", "linestyle": "--"},
                label=f"f′ = f rescaled (r = {p.rate:g})")
        ax.set(yscale="log", xlabel="linear layer l (input → output)", ylabel=what)
    a.set_title("A  raw gradients: explode at will")
    b.set_title("B  GSC: unchanged")
    lo, hi = float(p.gsc.min()), float(p.gsc.max())
    b.set_ylim(lo / 3, hi * 3)
    for ax in (a, b):
        _ticks(ax)
    a.legend(loc="upper right")
    fig.tight_layout()
    return fig


def check_proposition1(page, p: Rescaled) -> None:
    """MACHINERY: the rescaled network computes the same function, its raw gradients grow r times
    faster per layer, and the book's GSC does not change (to float32 rounding). Glues
    ``prop1_raw_f``, ``prop1_raw_g`` (raw gradient rates of f and f′), ``prop1_raw_total`` (the
    raw gradient's growth over the network of f′) and ``prop1_gsc_change``."""
    rate_f, rate_g = p.raw_rates
    gsc_change = float(((p.gsc[1] - p.gsc[0]).abs() / p.gsc[0]).max())
    page.glue("prop1_raw_f", rate_f, ".3f")
    page.glue("prop1_raw_g", rate_g, ".3f")
    page.glue("prop1_raw_total", float(p.raw[1, 0] / p.raw[1, -1]), ".3g")
    page.glue("prop1_gsc_change", gsc_change, ".1g")
    page.glue("prop1_rate", p.rate, "g")
    page.claims.add("Proposition 1's rescaling: same function, raw gradients ×r per layer, GSC unchanged",
                    all_of({"output change": at_most(p.output_change, 1e-5),
                            "raw rate ratio": close(p.rate, rate_g / rate_f, rel=1e-3),
                            "GSC change": at_most(gsc_change, 1e-4)}),
                    kind=MACHINERY, source="philipp2018, Proposition 1",
                    quote="There exists a network f′ with the same nominal and compositional depth as f that can "
                          "also be trained to the same error level as f",
                    note="holds by construction; shows that the book's GSC, unlike the raw gradient, is blind to "
                         "a rescaling that changes nothing")


# =========================================================================== Figure 1
def block_terms(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per :class:`~gradprobe.networks.mlp.PreActBlock` of ``net`` on the batch ``x`` (input to
    output), the Pythagorean terms of the block f = s + r, r = W h: [blocks, 5] with columns
    cos(s, r), the effective dimension d_eff (:func:`gradprobe.measure.gsc.pythagorean_cross_term`),
    the dilution k = ‖s‖/‖r‖, the error ‖s+r‖²/(‖s‖²+‖r‖²) − 1 = 2·cos·k/(k²+1), and the cross
    term standardized by its spread over Gaussian weights W of W's own mean square σ̂²,
    z = ⟨s, r⟩/(σ̂‖sᵀh‖_F): N(0, 1) at initialization, whatever the architecture. Running
    statistics kept."""
    blocks = [m for m in net.modules() if isinstance(m, PreActBlock)]
    if not blocks:
        raise ValueError(f"{type(net).__name__} has no PreActBlock (build it with residual='preact')")
    lasts = [b.layer2.linear for b in blocks]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad(), record(net, blocks + lasts, inputs=True, gradients=False) as rec:
        net(x)
    net.load_state_dict(state)
    rows = []
    for i, last in enumerate(lasts):
        s, h, r = (v.double() for v in (rec.inputs[i], rec.inputs[len(blocks) + i], rec.activations[len(blocks) + i]))
        cos, d_eff = pythagorean_cross_term(s, h, r)
        k = float(s.norm() / r.norm())
        sigma = float(last.weight.detach().double().pow(2).mean().sqrt())
        z = float((s * r).sum() / (sigma * (s.T @ h).norm()))
        rows.append([cos, d_eff, k, 2 * cos * k / (k * k + 1), z])
    return torch.tensor(rows, dtype=torch.float64)


@dataclass
class InitSurvey:
    """Figure 1 for one architecture, per seed (rows): GSC(l, output) at ``depths`` (linear layers
    from the input); per nonlinearity layer the pre-activation ``std``, ``sign_diversity``,
    forward scale ``qm``, ``pseudo_linearity`` and ``cosine`` between inputs; for ResNets per
    block (else empty) the :class:`~gradprobe.measure.gsc.ResidualCheck` values (``blocks``) and
    the Pythagorean terms of :func:`block_terms` (``terms``, [seeds, blocks, 5])."""

    name: str
    depths: list[int]
    gsc: torch.Tensor
    std: torch.Tensor
    sign_diversity: torch.Tensor
    qm: torch.Tensor
    pseudo_linearity: torch.Tensor
    cosine: torch.Tensor
    blocks: list[list]
    terms: torch.Tensor

    @property
    def rates(self) -> torch.Tensor:
        """GSC growth per linear layer toward the input, per seed (:func:`~gradprobe.measure.rates.fit_rate`
        of GSC against ``depths``, reversed)."""
        return torch.tensor([fit_rate(g, depths=self.depths, reverse=True).rate for g in self.gsc])

    @property
    def is_resnet(self) -> bool:
        return bool(self.blocks and self.blocks[0])

    def block_values(self, field_name: str) -> torch.Tensor:
        """[seeds, blocks] of one :class:`~gradprobe.measure.gsc.ResidualCheck` field."""
        return torch.tensor([[getattr(c, field_name) for c in checks] for checks in self.blocks])


def init_survey(name: str, seeds: int, linear_layers: int = 50, width: int = 100, batch: int = 100,
                probes: int = 1, data: torch.Generator | None = None, weights: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> InitSurvey:
    """Philipp et al.'s Figure 1 measurements of architecture ``name`` at initialization on
    Gaussian noise x ~ N(0, I) [batch, width], for ``seeds`` fresh networks and inputs (weights
    from ``weights``, inputs and probes from ``data``). Networks run in training mode."""
    positive_int("seeds", seeds)
    rows, doms, blocks, terms, depths = [], [], [], [], None
    for _ in range(seeds):
        net = architecture(name, linear_layers, width, generator=weights).to(device)
        x = torch.randn(batch, width, generator=data).to(device)
        modules, depths = gsc_points(net)
        rows.append(gsc_profile(net, x, modules, probes=probes, generator=data))
        doms.append(domain_stats(net, x, geometry=True))
        resnet = _is_resnet(net)
        blocks.append(residual_checks(net, x, probes=max(probes, 2), generator=data) if resnet else [])
        terms.append(block_terms(net, x) if resnet else torch.zeros(0, 5, dtype=torch.float64))
    stack = lambda field: torch.stack([getattr(d, field) for d in doms])  # noqa: E731
    return InitSurvey(name, depths, torch.stack(rows), stack("std"), stack("sign_diversity"), stack("qm"),
                      stack("pseudo_linearity"), stack("cosine"), blocks, torch.stack(terms))


def survey_figure1(S, gen: Generators, device: torch.device | str = "cpu") -> dict[str, InitSurvey]:
    """Figure 1's survey: :func:`init_survey` of every architecture of :data:`ARCHITECTURES`, in
    its order, with ``S.seeds`` networks of ``S.linear_layers`` linear layers of width ``S.width``
    on ``S.batch`` Gaussian inputs, ``S.probes`` probes per GSC estimate."""
    return {name: init_survey(name, S.seeds, S.linear_layers, S.width, S.batch, S.probes,
                              data=gen.data, weights=gen.weights, device=device)
            for name in progress(list(ARCHITECTURES), desc="architectures")}


EXPLODES = 1.03   # a GSC rate per linear layer above this "explodes": a factor 4 over 49 layers (ours)
EXPLODING = ["batch-ReLU", "batch-tanh", "layer-tanh", "SELU"]
COLLAPSING = ["ReLU", "layer-ReLU", "tanh"]


def _last_over_first(values: torch.Tensor) -> torch.Tensor:
    return values[:, -1] / values[:, 0]


def figure1_table(survey: dict[str, InitSurvey]) -> pd.DataFrame:
    """The table under Figure 1, one row per plain architecture: GSC rate per linear layer (mean ±
    standard error over seeds), median GSC(1, L), the domain measures at the first → last
    nonlinearity (pre-activation std, sign diversity, pseudo-linearity, cosine between inputs),
    the forward scale last/first, and what the architecture does (explodes: rate > 1.03; else
    collapses: last sign diversity < 0.1 or pre-activation std below 0.2 of the first; else
    neither). Rounded for display."""
    rows = []
    for name, s in survey.items():
        if s.is_resnet:
            continue
        rate = Estimate.of(s.rates)
        first_last = lambda v: f"{v[:, 0].mean():.3g} → {v[:, -1].mean():.3g}"  # noqa: E731
        collapses = bool(s.sign_diversity[:, -1].mean() < 0.1 or _last_over_first(s.std).mean() < 0.2)
        rows.append({"architecture": name, "GSC rate / linear layer": rate.text(),
                     f"GSC(1, {s.depths[-1]})": float(s.gsc[:, 0].median()),
                     "pre-act. std": first_last(s.std), "sign diversity": first_last(s.sign_diversity),
                     "pseudo-linearity": first_last(s.pseudo_linearity), "cosine": first_last(s.cosine),
                     "forward scale last/first": float(_last_over_first(s.qm).mean()),
                     "does": "explodes" if rate.mean > EXPLODES else ("collapses" if collapses else "neither")})
    return pd.DataFrame(rows).set_index("architecture").round(3)


# This paper's colour map: one colour per plain architecture; a ResNet is drawn dashed in its colour.
COLOURS = dict(zip(["ReLU", "layer-ReLU", "batch-ReLU", "tanh", "layer-tanh", "batch-tanh", "SELU",
                    "looks-linear ReLU"], matplotlib.colormaps["tab10"].colors))


def style_of(name: str) -> dict:
    """Line style of architecture ``name`` in every figure of the chapter: its plain version's
    colour (:data:`COLOURS`), dashed for a ResNet."""
    base = name.removesuffix(" ResNet")
    return dict(color=COLOURS[base], linestyle="--" if name.endswith("ResNet") else "-", linewidth=1.4)


def _legend_below(fig, axes, ncol: int = 4) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=ncol, frameon=False)


def _ticks(ax, axis: str = "y", at=None) -> None:
    """Plain numbers (1, 10, 0.3) instead of powers of ten on a log axis; ``at``: the ticks."""
    which = ax.yaxis if axis == "y" else ax.xaxis
    if at is not None:
        lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
        which.set_ticks([v for v in at if lo <= v <= hi])
    which.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    which.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _plain(survey):
    return {n: s for n, s in survey.items() if not s.is_resnet}


def figure1_scale(survey: dict[str, InitSurvey], S) -> plt.Figure:
    """Philipp et al.'s Figure 1, panels A–C, for the plain networks: A GSC(l, L) against the
    linear layer, with the batch-ReLU theory √(π/(π−1))^(L−l); B the pre-activation standard
    deviation and C the forward scale (root mean square of the pre-activations) against the
    nonlinearity layer. Median and min–max band over seeds."""
    plain = _plain(survey)
    if not plain:
        raise ValueError("figure1_scale needs a survey of at least one plain architecture (survey_figure1)")
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(8.5, 3.3))
    for name, s in plain.items():
        plots.band(a, s.depths, s.gsc, name, **style_of(name))
        nl = np.arange(1, s.std.shape[1] + 1)
        plots.band(b, nl, s.std, name, **style_of(name))
        plots.band(c, nl, s.qm, name, **style_of(name))
    L = S.linear_layers
    a.plot(np.arange(1, L + 1), gaussian.norm_rate("relu") ** (L - np.arange(1, L + 1)), **plots.THEORY,
           label="√(π/(π−1))^(L−l), batch-ReLU theory")
    a.set(yscale="log", xlabel="linear layer l", ylabel=f"GSC(l, {L})", title="A  gradient scale")
    b.set(yscale="log", xlabel="nonlinearity layer", ylabel="pre-activation std", title="B  spread across inputs")
    c.set(yscale="log", xlabel="nonlinearity layer", ylabel="pre-activation RMS", title="C  forward scale")
    fig.tight_layout()
    _legend_below(fig, [a])
    return fig


def figure1_domain(survey: dict[str, InitSurvey]) -> plt.Figure:
    """Philipp et al.'s Figure 1, panels D–F (their contents reconstructed), for the plain networks
    against the nonlinearity layer: D sign diversity, E pseudo-linearity (how far the
    nonlinearity is from its best linear fit on the batch), F mean cosine similarity between the
    inputs' pre-activations. Median and min–max band over seeds."""
    plain = _plain(survey)
    if not plain:
        raise ValueError("figure1_domain needs a survey of at least one plain architecture (survey_figure1)")
    fig, (d, e, f) = plt.subplots(1, 3, figsize=(8.5, 3.3))
    for name, s in plain.items():
        nl = np.arange(1, s.std.shape[1] + 1)
        plots.band(d, nl, s.sign_diversity, name, **style_of(name))
        plots.band(e, nl, s.pseudo_linearity, name, **style_of(name))
        plots.band(f, nl, s.cosine, name, **style_of(name))
    d.set(xlabel="nonlinearity layer", ylabel="sign diversity", title="D  units that switch", ylim=(0, 0.52))
    e.set(xlabel="nonlinearity layer", ylabel="residual of linear fit / RMS", title="E  pseudo-linearity",
          ylim=(0, None))
    f.set(xlabel="nonlinearity layer", ylabel="cosine between inputs", title="F  collapsing domain",
          ylim=(-0.05, 1.05))
    fig.tight_layout()
    _legend_below(fig, [d])
    return fig


def _rate(survey, name) -> torch.Tensor:
    return survey[name].rates


def _key(name: str) -> str:
    """An architecture's name as part of a glue name: "batch-ReLU ResNet" -> "batch_ReLU_ResNet"."""
    return name.replace("-", "_").replace(" ", "_")


def _glue_mean(page, name: str, values, fmt: str = ".3f") -> float:
    value = float(torch.as_tensor(values, dtype=torch.float64).mean())
    page.glue(name, value, fmt)
    return value


def check_figure1(page, survey: dict[str, InitSurvey]) -> None:
    """The rows of Figure 1: which plain architectures explode (GSC rate above 1.03 per linear
    layer, our threshold) with stable forward activations, which collapse instead; the caption's
    notes on overlapping curves (a check of our reconstruction of panels D–F); looks-linear ReLU
    (machinery: linear at initialization by construction). Glues the numbers the text quotes
    (``rate_<architecture>``, ``gsc_total``, ``sd_*``, ``pl_*``, ``cos_*``, ``overlap_*``)."""
    _require(survey, EXPLODING + COLLAPSING + ["looks-linear ReLU"])
    claims = page.claims
    for n in EXPLODING + COLLAPSING:
        _glue_mean(page, "rate_" + _key(n), _rate(survey, n))
    page.glue("layers", survey["batch-ReLU"].depths[-1])
    page.glue("gsc_total", float(survey["batch-ReLU"].gsc[:, 0].median()), ".3g")
    for n in ("ReLU", "layer-ReLU", "batch-ReLU", "tanh"):
        key = _key(n)
        _glue_mean(page, f"sd_{key}", survey[n].sign_diversity[:, -1], ".2g")
        _glue_mean(page, f"pl_{key}", survey[n].pseudo_linearity[:, -1], ".2g")
        _glue_mean(page, f"cos_{key}", survey[n].cosine[:, -1], ".2f")
    _glue_mean(page, "sd_first", torch.cat([s.sign_diversity[:, 0] for s in _plain(survey).values()]), ".2f")
    _glue_mean(page, "tanh_std_ratio", _last_over_first(survey["tanh"].std), ".2f")
    _glue_mean(page, "tanh_qm_ratio", _last_over_first(survey["tanh"].qm), ".2f")
    claims.add("batch-ReLU, batch-tanh, layer-tanh and SELU explode at initialization",
               all_of({n: at_least(_rate(survey, n), EXPLODES) for n in EXPLODING}, paper="exploding gradients"),
               source="philipp2018, abstract; Fig. 1A",
               quote="in a range of popular MLP architectures, exploding gradients exist",
               note="explodes: GSC rate per linear layer above 1.03 (a factor 4 over 49 layers), our threshold")
    claims.add("... although their forward activations are stable",
               all_of({n: between(_last_over_first(survey[n].qm), 0.5, 2.0) for n in EXPLODING},
                      paper="normalized or self-normalizing forward pass"),
               source="philipp2018, abstract",
               quote="techniques such as Adam, batch normalization and, more recently, SeLU nonlinearities "
                     "\"solve\" the exploding gradient problem, we show that this is not the case",
               note="forward scale: root mean square of the last nonlinearity's pre-activations over the "
                    "first's; 'stable' = within a factor 2 (ours)")
    claims.add("ReLU and layer-ReLU do not explode but their domain collapses",
               all_of({**{f"{n} rate": at_most(_rate(survey, n), EXPLODES) for n in ("ReLU", "layer-ReLU")},
                       **{f"{n} last sign diversity": at_most(survey[n].sign_diversity[:, -1], 0.1)
                          for n in ("ReLU", "layer-ReLU")}}, paper="collapsing domain"),
               source="philipp2018, abstract; Fig. 1",
               quote="the collapsing domain problem, which can arise in architectures that avoid exploding gradients",
               note="collapse: fewer than 10% of the inputs on the minority side of an average unit (ours); "
                    "Gaussian pre-activations give about 0.46")
    claims.add("tanh does not explode but its domain collapses",
               all_of({"rate": at_most(_rate(survey, "tanh"), EXPLODES),
                       "last/first pre-activation std": at_most(_last_over_first(survey["tanh"].std), 0.2)},
                      paper="collapsing domain"),
               source="philipp2018, abstract; Fig. 1",
               quote="the collapsing domain problem, which can arise in architectures that avoid exploding gradients",
               note="collapse: the pre-activation spread falls below a fifth of the first layer's (ours)")
    overlap = _caption_overlaps(survey)
    for k, v in overlap.items():
        _glue_mean(page, "overlap_" + k[0], v, ".2f")
    _glue_mean(page, "overlap_B", _gap(survey, "std", "ReLU", True), ".2f")
    claims.add("the caption's overlapping curves appear in our panels",
               all_of({k: at_most(v, 0.1) for k, v in overlap.items()}),
               kind=RECONSTRUCTION, source="philipp2018, Fig. 1 (caption)",
               quote="The curve for layer-ReLU is shadowed by tanh in A, by ReLU in E and F and by SELU among "
                     "others in C.",
               note="the caption names panels D–F without their contents; ours (sign diversity, "
                    "pseudo-linearity, cosine) reproduce its overlaps if the two curves differ on average by "
                    "under a tenth of the panel's range (of its log range in A and C), per seed")
    ll = survey["looks-linear ReLU"]
    claims.add("looks-linear ReLU: GSC ≡ 1 and no collapse at initialization",
               all_of({"rate": close(1.0, ll.rates, abs=1e-3),
                       "last sign diversity": at_least(ll.sign_diversity[:, -1], 0.4)}),
               kind=MACHINERY, source="philipp2018, Fig. 1",
               note="the network is linear at initialization by construction (mirrored units)")


def _gap(survey, field: str, other: str, log: bool) -> torch.Tensor:
    """Per seed, the mean over layers of |layer-ReLU − ``other``| in ``field``, as a fraction of
    the range of ``field`` over all plain architectures (of its log range when ``log``)."""
    values = {n: getattr(s, field).log() if log else getattr(s, field) for n, s in _plain(survey).items()}
    span = max(float(v.max()) for v in values.values()) - min(float(v.min()) for v in values.values())
    return (values["layer-ReLU"] - values[other]).abs().mean(dim=1) / span


def _caption_overlaps(survey) -> dict[str, torch.Tensor]:
    """The caption's overlaps (:func:`_gap`): layer-ReLU against tanh in A, SELU in C, ReLU in E
    and F."""
    return {"A vs tanh": _gap(survey, "gsc", "tanh", True), "C vs SELU": _gap(survey, "qm", "SELU", True),
            "E vs ReLU": _gap(survey, "pseudo_linearity", "ReLU", False),
            "F vs ReLU": _gap(survey, "cosine", "ReLU", False)}


# =========================================================================== ResNets and the trade-off
def _resnets(survey: dict[str, InitSurvey]) -> list[str]:
    names = [n for n, s in survey.items() if s.is_resnet]
    if not names:
        raise ValueError("the survey holds no ResNet; survey every architecture with survey_figure1")
    return names


def resnet_table(survey: dict[str, InitSurvey]) -> pd.DataFrame:
    """Each ResNet beside its plain version: GSC rate per linear layer (mean ± SE over seeds),
    sign diversity and pseudo-linearity at the last nonlinearity, and the forward scale
    last/first. Rounded for display."""
    rows = []
    for name in _resnets(survey):
        plain = name.removesuffix(" ResNet")
        _require(survey, [plain])
        for n in (plain, name):
            s = survey[n]
            rows.append({"architecture": n, "GSC rate / linear layer": Estimate.of(s.rates).text(),
                         "last sign diversity": float(s.sign_diversity[:, -1].mean()),
                         "last pseudo-linearity": float(s.pseudo_linearity[:, -1].mean()),
                         "forward scale last/first": float(_last_over_first(s.qm).mean())})
    return pd.DataFrame(rows).set_index("architecture").round(3)


def figure_resnets(survey: dict[str, InitSurvey]) -> plt.Figure:
    """The ResNets of Figure 1 beside their plain versions: A GSC(l, L) of the ResNets (dashed),
    B the GSC rate per linear layer of each plain network and its ResNet (mean ± 2 SE over
    seeds), C pseudo-linearity at the last nonlinearity of each: where the ResNet explodes more
    than its plain version, it collapses less (the trade-off)."""
    resnets = _resnets(survey)
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(8.5, 3.4))
    for name in resnets:
        plots.band(a, survey[name].depths, survey[name].gsc, name, **style_of(name))
    a.set(yscale="log", xlabel="linear layer l", ylabel="GSC(l, L)", title="A  ResNets' gradient scale")
    _ticks(a, "y", [0.5, 0.7, 1, 1.5, 2, 3, 5])
    ys = np.arange(len(resnets))[::-1]
    for ax, value in ((b, lambda s: s.rates), (c, lambda s: s.pseudo_linearity[:, -1])):
        for y, name in zip(ys, resnets):
            for offset, n, marker in ((0.15, name.removesuffix(" ResNet"), "o"), (-0.15, name, "s")):
                e = Estimate.of(value(survey[n]))
                ax.errorbar(e.mean, y + offset, xerr=2 * e.se, marker=marker, color=style_of(n)["color"],
                            markerfacecolor="white" if n == name else None, linestyle="none")
        ax.set_yticks(ys, [n.removesuffix(" ResNet") for n in resnets])
    b.axvline(1.0, **plots.REFERENCE)
    b.set(xlabel="GSC rate per linear layer", title="B  plain (●) vs ResNet (□)")
    c.set(xlabel="last pseudo-linearity", title="C  collapse, plain vs ResNet")
    c.tick_params(labelleft=False)
    fig.tight_layout()
    return fig


def check_resnets(page, survey: dict[str, InitSurvey]) -> None:
    """ResNets against their plain versions: the exploding architectures' ResNets have lower GSC
    rates; the collapsing architectures' ResNets do not (the abstract's "lower gradients" fails
    for them), and collapse less: the trade-off, reported as measured. Glues ``res_rate_*``."""
    _require(survey, [f"{n} ResNet" for n in EXPLODING + COLLAPSING] + EXPLODING + COLLAPSING)
    for n in EXPLODING + COLLAPSING:
        _glue_mean(page, "res_rate_" + _key(n), _rate(survey, f"{n} ResNet"))
        _glue_mean(page, "res_pl_" + _key(n), survey[f"{n} ResNet"].pseudo_linearity[:, -1], ".2g")
    quote = "ResNets have significantly lower gradients and thus can circumvent the exploding gradient problem"
    page.claims.add("ResNets of the exploding architectures have lower GSC rates than their plain versions",
                    all_of({n: difference_at_least(_rate(survey, n), _rate(survey, f"{n} ResNet"), 0.0)
                            for n in EXPLODING}, paper="lower gradients"),
                    source="philipp2018, abstract", quote=quote,
                    note="a − b: plain rate − ResNet rate (independent networks)")
    page.claims.add("ResNets of the collapsing architectures have lower GSC rates than their plain versions",
                    all_of({n: difference_at_least(_rate(survey, n), _rate(survey, f"{n} ResNet"), 0.0)
                            for n in COLLAPSING}, paper="lower gradients"),
                    source="philipp2018, abstract", quote=quote,
                    note="not where the plain network collapses instead of exploding: tanh's ResNet has the higher "
                         "rate, ReLU's and layer-ReLU's are indistinguishable from their plain versions'")
    page.claims.add("... their ResNets collapse less: the explosion/collapse trade-off",
                    all_of({n: difference_at_least(survey[f"{n} ResNet"].pseudo_linearity[:, -1],
                                                   survey[n].pseudo_linearity[:, -1], 0.0) for n in COLLAPSING},
                           paper="a trade-off"),
                    source="philipp2018, abstract; summary",
                    quote="highlight the collapsing domain problem, which can arise in architectures that avoid "
                          "exploding gradients",
                    note="a − b: ResNet − plain pseudo-linearity of the last nonlinearity (larger: less linear, less "
                         "collapsed)")


# =========================================================================== the Pythagorean equation
@dataclass
class PythagoreanSweep:
    """The Pythagorean terms (:func:`block_terms`) of every ResNet at several widths:
    ``terms[name][width]`` is [seeds, blocks, 5]."""

    widths: list[int]
    terms: dict[str, dict[int, torch.Tensor]]

    def spread(self, name: str) -> torch.Tensor:
        """[seeds, widths]: root mean square over blocks of the forward Pythagorean error."""
        return torch.stack([self.terms[name][w][:, :, 3].pow(2).mean(1).sqrt() for w in self.widths], 1)

    def slopes(self, name: str) -> torch.Tensor:
        """Per seed, the slope of log(spread) against log(width): −1/2 when the error's spread is
        1/√(effective dimension) with d_eff ∝ width."""
        x = np.log(self.widths)
        return torch.tensor([float(np.polyfit(x, np.log(row.numpy()), 1)[0]) for row in self.spread(name)])


def pythagorean_sweep(S, gen: Generators, device: torch.device | str = "cpu") -> PythagoreanSweep:
    """The Pythagorean terms of every ResNet of :data:`ARCHITECTURES` with ``S.linear_layers``
    linear layers at each width of ``S.pythagorean_widths``, ``S.seeds`` networks each, on
    ``S.batch`` Gaussian inputs (weights from ``gen.weights``, inputs from ``gen.data``)."""
    if len(S.pythagorean_widths) < 2:
        raise ValueError("the Pythagorean sweep needs at least two widths")
    names = [n for n in ARCHITECTURES if n.endswith("ResNet")]
    terms = {n: {} for n in names}
    for name in progress(names, desc="Pythagorean sweep"):
        for width in S.pythagorean_widths:
            runs = []
            for _ in range(S.seeds):
                net = architecture(name, S.linear_layers, width, generator=gen.weights).to(device)
                runs.append(block_terms(net, torch.randn(S.batch, width, generator=gen.data).to(device)))
            terms[name][width] = torch.stack(runs)
    return PythagoreanSweep(list(S.pythagorean_widths), terms)


def _dilution_theory(name: str) -> float:
    """k₁² of a ResNet with a normalized branch: ‖stem output‖²/‖branch‖² per unit, from the
    init's gain and E[φ(z)²] for z ~ N(0, 1) (the stem sees unit-variance inputs)."""
    kw = ARCHITECTURES[name]
    gain = 2.0 if kw["init"] == "he" else 1.0
    branch = gain * gaussian.gaussian_expectation(lambda z: _phi(kw["activation"])(z) ** 2)
    return gain / branch


def _phi(activation: str):
    """The named activation as a float -> float function (for quadrature)."""
    fn = activation_fn(activation)
    return lambda x: float(fn(torch.tensor(x, dtype=torch.float64)))


def _normalized(name: str) -> bool:
    return ARCHITECTURES[name].get("norm") is not None


def _end_to_end(s: InitSurvey) -> tuple[torch.Tensor, torch.Tensor]:
    """Per seed: GSC(stem, output) measured, and predicted as the product over blocks of the
    dilution formula √((k² + GSC(r)²)/(k² + 1)) times the measured GSC(last block, output)."""
    k, g_r = s.block_values("k"), s.block_values("gsc_residual")
    predicted = dilution_prediction(k, g_r).prod(1) * s.gsc[:, -2]
    return s.gsc[:, 0], predicted


def _predicted_spread(terms: torch.Tensor) -> torch.Tensor:
    """Per block, the spread of the Pythagorean error predicted from its dilution and effective
    dimension: 2k/(k² + 1)/√d_eff."""
    k, d_eff = terms[..., 2], terms[..., 1]
    return 2 * k / (k ** 2 + 1) / d_eff.sqrt()


def figure_pythagoras(survey: dict[str, InitSurvey], sweep_: PythagoreanSweep) -> plt.Figure:
    """The Pythagorean equation in every ResNet block at initialization: A the standardized cross
    term z (:func:`block_terms`) of every block and seed of Figure 1 against the standard normal
    density; B the root mean square error over blocks and seeds against the root mean square of
    its prediction 2k/(k²+1)/√d_eff, one point per ResNet and width of the sweep; C the error's
    root mean square against width (mean over seeds) beside the slope −1/2."""
    resnets = _resnets(survey)
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(8.5, 3.3))
    z = torch.cat([survey[n].terms[..., 4].flatten() for n in resnets])
    a.hist(z.numpy(), bins=30, density=True, color="0.6", label="blocks")
    grid = np.linspace(-4, 4, 200)
    a.plot(grid, np.exp(-grid ** 2 / 2) / math.sqrt(2 * math.pi), **plots.THEORY, label="N(0, 1)")
    a.set(xlabel="z = ⟨s, r⟩ / (σ̂ ‖sᵀh‖)", ylabel="density", title="A  cross term, standardized")
    a.legend(loc="upper left")
    for name in resnets:
        rms = lambda v: float(v.pow(2).mean().sqrt())  # noqa: E731
        points = [(rms(_predicted_spread(sweep_.terms[name][w])), rms(sweep_.terms[name][w][..., 3]))
                  for w in sweep_.widths]
        b.plot(*zip(*points), marker="o", markersize=4, linestyle="none", color=style_of(name)["color"])
        c.plot(sweep_.widths, sweep_.spread(name).mean(0).numpy(), **{**style_of(name), **plots.OURS},
               label=name.removesuffix(" ResNet"))
    lo, hi = b.get_xlim()
    b.plot([lo, hi], [lo, hi], **plots.REFERENCE)
    b.set(xscale="log", yscale="log", xlabel="predicted: RMS of 2k/(k²+1)/√d_eff", ylabel="RMS Pythagorean error",
          title="B  error vs its prediction")
    w = np.array(sweep_.widths, dtype=float)
    anchor = float(np.mean([sweep_.spread(n).mean(0)[0] for n in resnets]))
    c.plot(w, anchor * (w / w[0]) ** -0.5, **plots.THEORY, label="∝ width^(−1/2)")
    c.set(xscale="log", yscale="log", xlabel="width", ylabel="RMS Pythagorean error", title="C  error vs width")
    _ticks(c, "x", sweep_.widths)
    for ax in (b, c):
        _ticks(ax)
    fig.tight_layout()
    _legend_below(fig, [c])
    return fig


def figure_dilution(survey: dict[str, InitSurvey]) -> plt.Figure:
    """Dilution: A k_b² against the block b for every ResNet, with the prediction
    k_b² = k₁² + (b − 1) of the Pythagorean equation for normalized branches (dotted); B
    GSC(stem, output) measured against its prediction from the blocks' dilution formula (every
    seed)."""
    resnets = _resnets(survey)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4))
    for name in resnets:
        s = survey[name]
        blocks = np.arange(1, s.terms.shape[1] + 1)
        plots.band(a, blocks, s.terms[..., 2] ** 2, name.removesuffix(" ResNet"), **style_of(name))
        measured, predicted = _end_to_end(s)
        b.scatter(predicted.numpy(), measured.numpy(), s=14, color=style_of(name)["color"])
    for name in filter(_normalized, resnets):
        blocks = np.arange(1, survey[name].terms.shape[1] + 1)
        a.plot(blocks, _dilution_theory(name) + blocks - 1, **{**plots.THEORY, "linewidth": 1.2, "color": "k"},
               zorder=5, label="k₁² + (b − 1)" if name == next(filter(_normalized, resnets)) else None)
    a.set(yscale="log", xlabel="block b (input → output)", ylabel="k_b² = ‖s‖²/‖r‖²",
          title="A  dilution grows with depth")
    _ticks(a)
    lo, hi = b.get_xlim()
    b.plot([lo, hi], [lo, hi], **plots.REFERENCE)
    b.set(xlabel="∏ √((k²+GSC(r)²)/(k²+1)) · GSC(last block, L)", ylabel="GSC(stem, L) measured",
          title="B  blocks predict the network")
    fig.tight_layout()
    _legend_below(fig, [a])
    return fig


def pythagorean_table(survey: dict[str, InitSurvey], sweep_: PythagoreanSweep) -> pd.DataFrame:
    """Per ResNet: mean Pythagorean error (activations and Jacobians) over blocks and seeds, its
    root mean square, the largest |error| and the largest |standardized cross term|, the mean
    effective dimension, the width slope of the spread, and GSC(stem, L) measured over predicted
    from the blocks (mean over seeds). Rounded for display."""
    rows = {}
    for name in _resnets(survey):
        s = survey[name]
        t = s.terms
        measured, predicted = _end_to_end(s)
        rows[name] = {"mean error": float(t[..., 3].mean()), "RMS error": float(t[..., 3].pow(2).mean().sqrt()),
                      "max |error|": float(t[..., 3].abs().max()),
                      "max |z|": float(t[..., 4].abs().max()),
                      "mean d_eff": float(t[..., 1].mean()),
                      "mean Jacobian error": float(s.block_values("jacobian_error").mean()),
                      "width slope": float(sweep_.slopes(name).mean()),
                      "end-to-end GSC measured / predicted": float((measured / predicted).mean())}
    return pd.DataFrame(rows).T.round(4)


def check_pythagoras(page, survey: dict[str, InitSurvey], sweep_: PythagoreanSweep) -> None:
    """The Pythagorean equation as statistics: the cross term is unbiased with spread 1/√d_eff
    (machinery: it follows from the branch's last layer being Gaussian and independent of the
    skip); the error's spread falls with width; the dilution grows by one per block in normalized
    ResNets; the blocks' dilution formula predicts the whole network's GSC. Glues the numbers the
    text quotes (``pyth_*``)."""
    resnets = _resnets(survey)
    z = torch.cat([survey[n].terms[..., 4].flatten() for n in resnets]
                  + [sweep_.terms[n][w][..., 4].flatten() for n in resnets for w in sweep_.widths])
    jac = torch.cat([survey[n].block_values("jacobian_error").flatten() for n in resnets])
    for n in ("ReLU ResNet", "batch-ReLU ResNet", "SELU ResNet"):
        key = _key(n.split()[0])
        t = survey[n].terms
        page.glue(f"pyth_max_{key}", float(t[..., 3].abs().max()), ".3f")
        page.glue(f"pyth_rms_{key}", float(t[..., 3].pow(2).mean().sqrt()), ".3f")
        page.glue(f"pyth_deff_{key}", float(t[..., 1].median()), ".0f")
        page.glue(f"pyth_k_{key}", float(t[..., 2].median()), ".2f")
    page.glue("pyth_blocks", int(survey[resnets[0]].terms.shape[0] * survey[resnets[0]].terms.shape[1]))
    page.glue("pyth_z_max", float(torch.cat([survey[n].terms[..., 4].flatten() for n in resnets]).abs().max()), ".2f")
    slopes = {n: sweep_.slopes(n) for n in resnets}
    page.glue("pyth_s_low", -max(float(v.mean()) for v in slopes.values()), ".2f")
    page.glue("pyth_s_high", -min(float(v.mean()) for v in slopes.values()), ".2f")
    page.glue("pyth_ratio_ReLU", float(_ratio(survey["ReLU ResNet"]).mean()), ".2f")
    page.claims.add("Pythagorean cross term at initialization: mean 0, variance 1/d_eff",
                    all_of({"mean of z": close(0.0, Estimate.of(z, "blocks"), abs=0.1),
                            "mean of z²": close(1.0, Estimate.of(z ** 2, "blocks"), rel=0.1),
                            "mean Jacobian error": close(0.0, Estimate.of(jac, "blocks"), abs=0.005)}),
                    kind=MACHINERY, source="philipp2018, abstract (Pythagorean equation)",
                    note="z = ⟨s, r⟩/(σ̂‖sᵀh‖): N(0, 1) when the branch's last weights are Gaussian and independent of "
                         "the skip, as at initialization; blocks of one network are independent given the past, "
                         "so blocks count as samples (Figure 1 and the width sweep)")
    page.claims.add("the Pythagorean error is a finite-width fluctuation: it shrinks as the width grows",
                    all_of({n.removesuffix(" ResNet"): at_most(slopes[n], 0.0) for n in resnets},
                           paper="the Pythagorean equation holds"),
                    source="philipp2018, abstract",
                    quote="ResNets have significantly lower gradients ... We show this is a direct consequence of "
                          "the Pythagorean equation.",
                    note="slope of log(RMS error over the blocks) against log(width), per seed; the spread is "
                         "1/√d_eff and d_eff ≥ width, so it falls at least like width^(−1/2) where d_eff ∝ width")
    normalized = [n for n in resnets if _normalized(n)]
    page.claims.add("dilution grows by one per block: k_b² = k₁² + (b − 1) in normalized ResNets",
                    all_of({n.removesuffix(" ResNet"): close(1.0, _k2_slopes(survey[n]), rel=0.1)
                            for n in normalized}, paper="k-diluted blocks"),
                    source="philipp2018, abstract",
                    quote="We show this is a direct consequence of the Pythagorean equation.",
                    note="our prediction: a normalized branch has a fixed ‖r‖, and the Pythagorean equation adds ‖r‖² "
                         "to ‖s‖² at every block; the slope of k_b² over b per seed, ±10%")
    page.claims.add("the blocks' dilution formula predicts the whole ResNet's GSC",
                    all_of({n.removesuffix(" ResNet"): close(1.0, _ratio(survey[n]), rel=0.1) for n in resnets},
                           paper="dilution"),
                    source="philipp2018, abstract; summary",
                    quote="introducing skip connections simplifies the network mathematically",
                    note="GSC(stem, L) measured over ∏_b √((k_b² + GSC(r_b)²)/(k_b² + 1)) · GSC(last block, L), per "
                         "seed, ±10% (ours); tests the dilution formula and the product of GSCs over the blocks")


def _k2_slopes(s: InitSurvey) -> torch.Tensor:
    k2 = s.terms[..., 2] ** 2
    b = np.arange(1, k2.shape[1] + 1)
    return torch.tensor([float(np.polyfit(b, row.numpy(), 1)[0]) for row in k2])


def _ratio(s: InitSurvey) -> torch.Tensor:
    measured, predicted = _end_to_end(s)
    return measured / predicted


# =========================================================================== cross-reference
def check_cross_reference(page, survey: dict[str, InitSurvey]) -> None:
    """The batch-ReLU GSC rate against √(π/(π−1)), the norm rate of BatchNorm–ReLU layers that
    chapter 1 derives and the ghost paper states as π/(π−1) for variances. Glues ``xref_rate``,
    ``xref_rate2``, ``xref_theory`` and ``xref_variance``."""
    _require(survey, ["batch-ReLU"])
    rates = _rate(survey, "batch-ReLU")
    _glue_mean(page, "xref_rate", rates, ".4f")
    _glue_mean(page, "xref_rate2", rates ** 2, ".4f")
    page.glue("xref_theory", gaussian.norm_rate("relu"), ".4f")
    page.glue("xref_variance", gaussian.RELU_RATE, ".4f")
    page.claims.add("batch-ReLU GSC rate = √(π/(π−1)) per linear layer",
                    close(gaussian.norm_rate("relu"), rates, rel=0.02),
                    source="ghost2024, Eq. (1)", quote="ReLU 1.467 = π/(π−1) (the rate of variances)",
                    note="the same number measured with Philipp et al.'s GSC: the norm rate is its square root")


# =========================================================================== Figure 5: pseudo-linearity
FIG5_CASES = {"A": ("relu", -0.3, 0.2), "B": ("relu", 0.3, 0.2), "C": ("tanh", 0.0, 0.2)}
_REFERENCE_CASES = {"ReLU, μ = 0, σ = 1": ("relu", 0.0, 1.0), "tanh, μ = 0, σ = 1": ("tanh", 0.0, 1.0)}


@dataclass
class Figure5:
    """Figure 5: per case (the paper's A, B, C and two references), the relative residual of the
    best linear fit to 50 post-activations, one value per repeat (``residuals``), its population
    value by quadrature (``theory``), and one draw of 50 points per case to draw (``shown``)."""

    points: int
    residuals: dict[str, torch.Tensor]
    theory: dict[str, float]
    shown: dict[str, torch.Tensor]


def _linear_fit_residual(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Per row: RMS residual of the least-squares line a ≈ α + β z, over RMS of z."""
    zc, ac = z - z.mean(-1, keepdim=True), a - a.mean(-1, keepdim=True)
    vz, va, cov = zc.pow(2).mean(-1), ac.pow(2).mean(-1), (zc * ac).mean(-1)
    return (va - cov ** 2 / vz).clamp_min(0).sqrt() / z.pow(2).mean(-1).sqrt()


def _population_residual(activation: str, mu: float, sigma: float) -> float:
    phi = _phi(activation)
    e = lambda f: gaussian.gaussian_expectation(f, mu, sigma)  # noqa: E731
    m = e(phi)
    var = e(lambda x: (phi(x) - m) ** 2)
    cov = e(lambda x: (x - mu) * (phi(x) - m))
    return math.sqrt(max(var - cov ** 2 / sigma ** 2, 0.0)) / math.sqrt(mu ** 2 + sigma ** 2)


def pseudo_linearity_fig5(S, gen: Generators, points: int = 50) -> Figure5:
    """Figure 5: ``points`` pre-activations z ~ N(μ, σ²) per case (:data:`FIG5_CASES`: the
    caption's three, and two unit-Gaussian references), ``S.fig5_repeats`` times (from
    ``gen.data``); the best linear fit to φ(z) and its RMS residual relative to the RMS of z."""
    int_at_least("points", points, 3)
    positive_int("fig5_repeats", S.fig5_repeats)
    residuals, theory, shown = {}, {}, {}
    for case, (act, mu, sigma) in {**FIG5_CASES, **_REFERENCE_CASES}.items():
        z = mu + sigma * torch.randn(S.fig5_repeats, points, generator=gen.data, dtype=torch.float64)
        a = torch.relu(z) if act == "relu" else torch.tanh(z)
        residuals[case] = _linear_fit_residual(z, a)
        theory[case] = _population_residual(act, mu, sigma)
        shown[case] = z[0]
    return Figure5(points, residuals, theory, shown)


def figure5(f5: Figure5) -> plt.Figure:
    """Philipp et al.'s Figure 5: the nonlinearity (blue), the nonlinearity at 50 pre-activations
    drawn from N(μ, σ²) (red dots) and the closest linear fit to them (red line), for A ReLU
    μ = −0.3, B ReLU μ = 0.3, C tanh μ = 0, all σ = 0.2."""
    fig, axes = plt.subplots(1, 3, figsize=(8.5, 2.9))
    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
    for ax, (case, (act, mu, sigma)) in zip(axes, FIG5_CASES.items()):
        fn = torch.relu if act == "relu" else torch.tanh
        z = f5.shown[case]
        beta, alpha = np.polyfit(z.numpy(), fn(z).numpy(), 1)
        shown = {"relu": "ReLU", "tanh": "tanh"}[act]
        ax.plot(grid.numpy(), fn(grid).numpy(), color="tab:blue", label=shown)
        ax.plot(z.numpy(), fn(z).numpy(), "o", color="tab:red", markersize=3, label="50 post-activations")
        ax.plot(grid.numpy(), (alpha + beta * grid).numpy(), color="tab:red", linewidth=1, label="linear fit")
        ax.set(xlabel="pre-activation z", ylabel=f"{shown}(z)",
               title=f"{case}  {shown}, μ = {mu:g}, σ = {sigma:g}".replace("-", "−"))
    axes[0].legend(loc="upper left", fontsize="x-small")
    fig.tight_layout()
    return fig


def fig5_table(f5: Figure5) -> pd.DataFrame:
    """Per case: the relative residual of the linear fit to 50 points (mean ± SE over repeats)
    and its population value (quadrature)."""
    return pd.DataFrame({case: {"residual / RMS(z), 50 points": Estimate.of(r, "repeats").text(),
                                "population (quadrature)": round(f5.theory[case], 4)}
                         for case, r in f5.residuals.items()}).T


def check_figure5(page, f5: Figure5) -> None:
    """The caption's statement, quantified: the linear fit's residual is under a tenth of the
    pre-activations' root mean square in each of the three cases. Glues ``fig5_<case>`` (the
    measured residuals) and ``fig5_ref_relu``, ``fig5_ref_tanh`` (the unit-Gaussian references)."""
    for case in FIG5_CASES:
        _glue_mean(page, f"fig5_{case}", f5.residuals[case], ".3f")
    refs = list(_REFERENCE_CASES)
    _glue_mean(page, "fig5_ref_relu", f5.residuals[refs[0]], ".2f")
    _glue_mean(page, "fig5_ref_tanh", f5.residuals[refs[1]], ".2f")
    page.claims.add("Fig. 5: the closest linear fit approximates the post-activations very closely",
                    all_of({case: at_most(Estimate.of(f5.residuals[case], "repeats"), 0.1) for case in FIG5_CASES}),
                    source="philipp2018, Fig. 5 (caption)",
                    quote="The closest linear fit to the 50 post-activations is shown as a red line, and it "
                          "approximates these post-activations very closely.",
                    note="'very closely' read as: RMS residual under 10% of the pre-activations' RMS (ours); for "
                         "unit Gaussian pre-activations the same number is about 0.3 (ReLU) and 0.17 (tanh)")


# =========================================================================== Figure 2
# Nine discs, as Figure 2 C–K (which nine is our choice).
DISC_ARCHITECTURES = ["ReLU", "layer-ReLU", "batch-ReLU", "tanh", "layer-tanh", "batch-tanh", "SELU",
                      "looks-linear ReLU", "batch-ReLU ResNet"]
DISC_STEPS = (1, 2, 4)           # pixel steps at which roughness is measured: resolution R, R/2, R/4
FLOAT64_CONTROL = ("batch-ReLU", "batch-tanh", "layer-tanh")
GSC_POINTS = 4                   # points of the sphere at which each disc network's GSC is measured


@dataclass
class Figure2Discs:
    """Figure 2: the input ``image`` (uint8 [32, 32, 3], the CIFAR-10 test image of class
    ``label``), the disc ``mask``, and per architecture and seed (``[name][seed]``): the disc
    ``pictures`` [R, R, 3], their ``roughness`` at pixel steps :data:`DISC_STEPS`, the ``gsc`` of
    the disc's own network and batch (geometric mean of GSC(layer 1, output) at
    :data:`GSC_POINTS` points of the sphere); for :data:`FLOAT64_CONTROL` the roughness at step 2
    of the same pixels computed in float32 and float64 (``float64``, rows (float32, float64)), and
    the largest colour difference between the shared-product computation and one network per
    point, in float32 and float64 (``rounding``)."""

    image: np.ndarray
    label: str
    mask: torch.Tensor
    pictures: dict[str, list[torch.Tensor]]
    roughness: dict[str, torch.Tensor]
    gsc: dict[str, torch.Tensor]
    float64: dict[str, torch.Tensor]
    rounding: dict[str, tuple[float, float]]

    def exponents(self, name: str) -> torch.Tensor:
        """Per seed, α in roughness ∝ step^α: 0 for confetti (pixel-scale randomness), 1 for a
        picture smooth at the pixel scale."""
        x = np.log(DISC_STEPS)
        return torch.tensor([float(np.polyfit(x, np.log(r.numpy()), 1)[0]) for r in self.roughness[name]])

    def rank_correlations(self) -> torch.Tensor:
        """Per seed, Spearman's rank correlation over the architectures of roughness (step 1) with
        the disc network's own GSC."""
        names = list(self.pictures)
        out = []
        for seed in range(len(self.pictures[names[0]])):
            frame = pd.DataFrame({"r": [float(self.roughness[n][seed, 0]) for n in names],
                                  "g": [float(self.gsc[n][seed]) for n in names]})
            out.append(float(frame.rank().corr().iloc[0, 1]))
        return torch.tensor(out)


def _disc_setup(name, S, seed_value, images, device, dtype=torch.float32):
    seeds = torch.randint(0, 2**31, (3,), generator=torch.Generator().manual_seed(seed_value)).tolist()

    def build(g):
        return architecture(name, S.linear_layers, S.width, in_dim=3072, out_dim=3, generator=g)

    weights = discs.layer_weight_samples(build, 0, [torch.Generator().manual_seed(s) for s in seeds])
    net = build(torch.Generator().manual_seed(seeds[0]))
    x = images if "batch" in name else images[:1]
    return net.to(device, dtype), x.to(device, dtype), weights.to(device, dtype)


def _disc_gsc(net, x, weights, coefficients) -> float:
    """Geometric mean over ``coefficients`` (points of the sphere) of GSC(layer 1, output) of the
    network whose first layer is Σ c_j W_j, on the batch ``x`` (exact Jacobian)."""
    work = copy.deepcopy(net)
    first = weight_layers(work)[0]
    logs = []
    for c in coefficients:
        with torch.no_grad():
            first.weight.copy_(torch.einsum("j,joi->oi", c.to(weights), weights))
        logs.append(math.log(gsc_exact(work, x, first)))
    return math.exp(sum(logs) / len(logs))


def discs_figure2(S, gen: Generators, device: torch.device | str = "cpu",
                  names=tuple(DISC_ARCHITECTURES)) -> Figure2Discs:
    """Figure 2's discs: for each architecture in ``names`` and each of ``S.disc_seeds`` seeds
    (``S.linear_layers`` linear layers of ``S.width``, 3 outputs), the output on the first cat of
    the CIFAR-10 test split (BatchNorm networks: in a batch with ``S.disc_bn_batch`` − 1 other test
    images drawn from ``gen.data``) as a function of layer 1's weights W(c) = Σ_j c_j W_j on the
    sphere ‖c‖ = 1, drawn on an ``S.disc_resolution``² disc (:mod:`gradprobe.measure.discs`);
    W_A, W_B, W_C are layer 1 of three networks seeded from ``gen.weights``, the network itself is
    the first. Also the roughness at pixel steps 1, 2, 4, the disc network's own GSC, and for the
    exploding architectures a float64 control."""
    positive_int("disc_bn_batch", S.disc_bn_batch)
    positive_int("disc_seeds", S.disc_seeds)
    for name in names:
        one_of("architecture", name, tuple(ARCHITECTURES))
    images, labels = cifar10("test")
    mean, std = channel_stats()
    shown = int(np.flatnonzero(labels == CIFAR10_CLASSES.index("cat"))[0])
    others = torch.randperm(len(labels), generator=gen.data)[:S.disc_bn_batch - 1].tolist()
    batch_images = to_tensor(images[[shown] + others], mean, std).flatten(1)
    coefficients, mask = discs.sphere_grid(S.disc_resolution)
    # pixels of every second row and column: the float64 control and the roughness at step 2
    index = torch.full(mask.shape, -1, dtype=torch.long)
    index[mask] = torch.arange(int(mask.sum()))
    sub = index[::2, ::2][mask[::2, ::2]]
    pictures, rough, gscs, f64, rounding = {}, {}, {}, {}, {}
    for name in progress(list(names), desc="discs"):
        pictures[name], rough[name], gscs[name] = [], [], []
        for seed in range(S.disc_seeds):
            seed_value = int(torch.randint(0, 2**31, (1,), generator=gen.weights))
            net, x, weights = _disc_setup(name, S, seed_value, batch_images, device)
            colours = discs.colours(discs.disc_outputs(net, x, 0, weights, coefficients.to(device)).cpu())
            picture = discs.to_image(colours, mask)
            pictures[name].append(picture)
            rough[name].append(torch.tensor([discs.roughness(picture[::k, ::k], mask[::k, ::k]) for k in DISC_STEPS]))
            at = torch.cat([coefficients[:1], coefficients[torch.randint(len(coefficients), (GSC_POINTS - 1,),
                                                                          generator=gen.data)]])
            gscs[name].append(_disc_gsc(net, x, weights, at))
            if name in FLOAT64_CONTROL:
                net64, x64, w64 = _disc_setup(name, S, seed_value, batch_images, device, torch.float64)
                c64 = discs.colours(discs.disc_outputs(net64, x64, 0, w64, coefficients[sub].to(device).double()).cpu())
                sub_mask = mask[::2, ::2]
                f64.setdefault(name, []).append(torch.tensor(
                    [discs.roughness(discs.to_image(colours[sub], sub_mask), sub_mask),
                     discs.roughness(discs.to_image(c64.float(), sub_mask), sub_mask)]))
                if seed == 0:
                    rounding[name] = _rounding(net, x, weights, net64, x64, w64, coefficients)
        rough[name], gscs[name] = torch.stack(rough[name]), torch.tensor(gscs[name])
    return Figure2Discs(images[shown], CIFAR10_CLASSES[labels[shown]], mask, pictures, rough, gscs,
                        {n: torch.stack(v) for n, v in f64.items()}, rounding)


def _rounding(net, x, weights, net64, x64, w64, coefficients, points: int = 8) -> tuple[float, float]:
    """Largest colour difference over ``points`` points between the shared-product disc and one
    network per point, in float32 and in float64."""
    some = coefficients[torch.linspace(0, len(coefficients) - 1, points).long()]
    out = []
    for n, xx, w in ((net, x, weights), (net64, x64, w64)):
        c = some.to(xx)
        fast = discs.colours(discs.disc_outputs(n, xx, 0, w, c))
        slow = discs.colours(discs.disc_outputs_naive(n, xx, 0, w, c))
        out.append(float((fast - slow).norm(dim=1).max()))
    return out[0], out[1]


def figure2_discs(fig2: Figure2Discs, S, part: int) -> plt.Figure:
    """Philipp et al.'s Figure 2 in two figures of six panels: ``part`` 1 is A the input image,
    B the colour legend (output direction o/‖o‖) and C–F the first four discs; ``part`` 2 the
    other discs (G–K). Each disc (seed 0) is titled with its roughness and its network's GSC."""
    one_of("part", part, (1, 2))
    names = list(fig2.pictures)
    fig, axes = plt.subplots(2, 3, figsize=(8, 5.6))
    axes = axes.flatten()
    panels = []
    if part == 1:
        axes[0].imshow(fig2.image)
        axes[0].set_title(f"A  input ({fig2.label})")
        legend_image, _ = discs.legend_disc(S.disc_resolution)
        axes[1].imshow(legend_image.numpy())
        axes[1].set_title("B  colour of o/‖o‖")
        panels = list(zip(axes[2:], names[:4], "CDEF"))
    else:
        panels = list(zip(axes, names[4:], "GHIJK"))
    for ax, name, letter in panels:
        ax.imshow(fig2.pictures[name][0].numpy())
        ax.set_title(f"{letter}  {name}\nroughness {fig2.roughness[name][0, 0]:.2f}, GSC {fig2.gsc[name][0]:.3g}")
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def figure2_roughness(fig2: Figure2Discs, S) -> plt.Figure:
    """What the discs show, measured: A roughness against resolution (pixel steps 1, 2, 4; mean over
    seeds) with the slopes of confetti (0) and of a smooth picture (−1), dotted; B roughness against each
    disc network's own GSC (every seed); C the float64 control: roughness of the same pixels
    computed in float64 against float32."""
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(8.5, 3.4))
    resolutions = np.array([S.disc_resolution / k for k in DISC_STEPS])
    for name in fig2.pictures:
        a.plot(resolutions, fig2.roughness[name].mean(0).numpy(), **{**plots.OURS, **style_of(name)},
               label=name)
        b.scatter(fig2.gsc[name].numpy(), fig2.roughness[name][:, 0].numpy(), s=14, color=style_of(name)["color"],
                  marker="s" if name.endswith("ResNet") else "o")
    full = [float(r[:, 0].mean()) for r in fig2.roughness.values()]
    for anchor, slope in ((max(full), 0), (min(full), -1)):    # dotted: confetti (flat), smooth (∝ 1/resolution)
        a.plot(resolutions, anchor * (resolutions / resolutions[0]) ** slope, **{**plots.THEORY, "linewidth": 1})
    a.set(xscale="log", yscale="log", xlabel="pixels across the disc", ylabel="roughness",
          title="A  roughness vs resolution")
    _ticks(a, "x", resolutions[::-1])
    _ticks(a)
    b.set(xscale="log", yscale="log", xlabel="GSC of the disc's network", ylabel="roughness",
          title="B  roughness vs own GSC")
    _ticks(b)
    for name, values in fig2.float64.items():
        c.scatter(values[:, 0].numpy(), values[:, 1].numpy(), s=16, color=style_of(name)["color"], label=name)
    lo = min(float(v.min()) for v in fig2.float64.values()) * 0.9 if fig2.float64 else 0.1
    hi = max(float(v.max()) for v in fig2.float64.values()) * 1.1 if fig2.float64 else 1
    c.plot([lo, hi], [lo, hi], **plots.REFERENCE)
    c.set(xlabel="roughness, float32", ylabel="roughness, float64", title="C  not rounding")
    if fig2.float64:
        c.legend(loc="upper left", fontsize="x-small")
    fig.tight_layout()
    handles, labels = a.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=3, frameon=False)
    return fig


def roughness_table(fig2: Figure2Discs) -> pd.DataFrame:
    """Per disc architecture: roughness at full resolution and its resolution exponent α (mean ±
    SE over seeds), the median GSC of the discs' networks, and for the float64 control the
    roughness ratio float64/float32 and the largest colour change of one network per point
    against the shared products in float32 and float64."""
    rows = {}
    for name in fig2.pictures:
        row = {"roughness": Estimate.of(fig2.roughness[name][:, 0]).text(),
               "resolution exponent α": Estimate.of(fig2.exponents(name)).text(),
               "GSC of the disc network": float(fig2.gsc[name].median())}
        if name in fig2.float64:
            v = fig2.float64[name]
            row["float64 / float32"] = Estimate.of(v[:, 1] / v[:, 0]).text()
            row["one network per point: largest change, float32 / float64"] = \
                f"{fig2.rounding[name][0]:.2g} / {fig2.rounding[name][1]:.2g}"
        rows[name] = row
    return pd.DataFrame(rows).T.fillna("")


def check_figure2(page, fig2: Figure2Discs) -> None:
    """The rows of Figure 2 (our reading of it: the paper's discussion of the discs is not in the
    text available to us): roughness rises with each disc network's own GSC, the confetti is the
    function and not rounding (float64 control; rounding machinery), and it does not depend on
    the resolution while smooth discs do. Glues ``disc_*``."""
    claims = page.claims
    rho = fig2.rank_correlations()
    _glue_mean(page, "disc_spearman", rho, ".2f")
    for n in ("ReLU", "batch-ReLU", "batch-tanh", "layer-tanh", "looks-linear ReLU"):
        if n in fig2.pictures:
            key = _key(n)
            _glue_mean(page, f"disc_rough_{key}", fig2.roughness[n][:, 0], ".2g")
            _glue_mean(page, f"disc_alpha_{key}", fig2.exponents(n), ".2g")
            page.glue(f"disc_gsc_{key}", float(fig2.gsc[n].median()), ".3g")
    claims.add("discs are rougher the larger their network's GSC",
               at_least(rho, 0.7, paper="confetti where gradients explode"),
               kind=RECONSTRUCTION, source="philipp2018, Fig. 2",
               quote="Illustrations of networks of different architectures as functions of the parameter in a "
                     "single linear layer.",
               note="Spearman's rank correlation over the architectures of roughness with the GSC of each disc's own "
                    "network and batch, one per seed; 0.7 is our threshold")
    if fig2.float64:
        ratios = torch.cat([v[:, 1] / v[:, 0] for v in fig2.float64.values()])
        _glue_mean(page, "disc_f64_ratio", ratios, ".3f")
        worst32 = max(fig2.rounding, key=lambda n: fig2.rounding[n][0])
        page.glue("disc_f32_change", fig2.rounding[worst32][0], ".2g")
        page.glue("disc_f32_worst", worst32)
        page.glue("disc_f64_change", max(v[1] for v in fig2.rounding.values()), ".1g")
        claims.add("confetti is the function, not rounding: float64 discs are as rough as float32",
                   close(1.0, Estimate.of(ratios, "discs"), rel=0.05),
                   kind=RECONSTRUCTION, source="philipp2018, Fig. 2",
                   note="roughness of the same pixels computed in float64 over float32, every seed of "
                        f"{', '.join(fig2.float64)}; ±5% is our tolerance")
        worst = max(fig2.rounding[n][1] / float(fig2.roughness[n][:, 0].mean()) for n in fig2.rounding)
        claims.add("float64 discs: rounding moves colours by under 1% of the roughness",
                   at_most(worst, 0.01), kind=MACHINERY, source="philipp2018, Fig. 2",
                   note="largest colour change of gradprobe.measure.discs.disc_outputs against one network per "
                        "point (disc_outputs_naive) at 8 points in float64, over the disc's roughness")
    step = 2 * math.pi / fig2.mask.shape[0]        # a pixel's relative change of the layer's weights
    gsc = {n: float(fig2.gsc[n].median()) for n in fig2.pictures}
    confetti = [n for n in fig2.pictures if gsc[n] * step >= 10]
    smooth = [n for n in fig2.pictures if gsc[n] * step * max(DISC_STEPS) <= 1]
    page.glue("disc_step", step, ".3f")
    page.glue("disc_confetti", ", ".join(confetti) or "none")
    page.glue("disc_smooth", ", ".join(smooth) or "none")
    checks = {**{f"{n} α": close(0.0, fig2.exponents(n), abs=0.15) for n in confetti},
              **{f"{n} α": at_least(fig2.exponents(n), 0.5) for n in smooth}}
    if checks:
        claims.add("confetti where a pixel step is amplified past 1, smooth pictures where it is not",
                   all_of(checks), kind=RECONSTRUCTION, source="philipp2018, Fig. 2",
                   note="α: roughness ∝ (pixel step)^α over steps 1, 2, 4, per seed. A pixel moves the first layer's "
                        "weights by 2π/R relatively, the output by GSC·2π/R: confetti (|α| ≤ 0.15) expected where "
                        "this is ≥ 10 at the finest step, a smooth picture (α ≥ 0.5) where it is ≤ 1 at the "
                        "coarsest; our thresholds")


# =========================================================================== Figure 3
CHANCE = 0.9            # training error of a classifier that has learned nothing (10 balanced classes)
KEEP = 0.9              # effective depth: linearize top layers while 90% of the improvement over chance is kept
MIN_IMPROVEMENT = 0.2   # a network that has not improved on chance by this much has no effective depth
PROBE_IMAGES = 200      # fixed training images on which GSC is tracked during training
DATA_SEED = 0           # the training subset, the same for every run


@dataclass(frozen=True)
class TrainTrial:
    """One training run of Figure 3, a configuration of :func:`gradprobe.sweep.run`: architecture,
    linear layers, Adam learning rate, seed, width, input pooling, training images, batch size,
    steps, evaluation images, number of checkpoints and device."""

    arch: str
    depth: int
    lr: float
    seed: int
    width: int
    pool: int
    images: int
    batch: int
    steps: int
    eval_images: int
    checkpoints: int
    device: str = "cpu"


def checkpoint_steps(steps: int, checkpoints: int) -> list[int]:
    """The steps at which a run is measured: ``steps``/2^(n−1), ..., steps/2, steps (n =
    ``checkpoints``), without repeats."""
    positive_int("steps", steps)
    positive_int("checkpoints", checkpoints)
    return sorted({max(1, round(steps / 2 ** k)) for k in range(checkpoints)})


@functools.lru_cache(maxsize=2)
def _training_data(images: int, pool: int, eval_images: int):
    g = torch.Generator().manual_seed(DATA_SEED)
    cifar = cifar10_tensors(images, 1, generator=g)
    x = cifar.train_x
    x = (F.avg_pool2d(x, pool) if pool > 1 else x).flatten(1)
    order = torch.randperm(images, generator=g)
    return x, cifar.train_y, x[order[:eval_images]], cifar.train_y[order[:eval_images]], x[order[:PROBE_IMAGES]]


def _grid(net: nn.Module) -> list[int]:
    """Children counts m at which the top is linearized: every one up to 20, else ~20 evenly."""
    n = len(list(net.children()))
    step = max(1, math.ceil(n / 20))
    return sorted(set(range(0, n + 1, step)) | {n})


def _adam(net, lr, device):
    fused = torch.device(device).type in ("cpu", "cuda")
    return torch.optim.Adam(net.parameters(), lr=lr, fused=fused)


def train_trial(t: TrainTrial) -> dict:
    """One run of Figure 3 (a :mod:`gradprobe.sweep` trial): train ``t.arch`` with ``t.depth``
    linear layers of ``t.width`` units on ``t.images`` CIFAR-10 training images (averaged over
    ``t.pool``² pixels and flattened) with Adam at ``t.lr`` for ``t.steps`` mini-batches of
    ``t.batch``. At each of :func:`checkpoint_steps` it measures, on ``t.eval_images`` training
    images, the training error with the top m linear layers linearized around the initial weights
    (every m of the grid; m = 0 is the network itself), and GSC(l, output) on 200 training images
    (also at initialization). At the end: the residual trick per layer
    (:func:`gradprobe.measure.linearize.layer_residuals`), and for ResNets the Pythagorean terms
    of every block (:func:`block_terms`). Weights and batches come from the configuration's seed."""
    gens = sweep.seed_trial(t)
    dev = torch.device(t.device)
    x, y, x_eval, y_eval, x_probe = (v.to(dev) for v in _training_data(t.images, t.pool, t.eval_images))
    net = architecture(t.arch, t.depth, t.width, in_dim=x.shape[1], out_dim=10, generator=gens.weights).to(dev)
    initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
    points, depths = gsc_points(net)
    gsc = [gsc_profile(net, x_probe, points, generator=gens.data)]
    marks = checkpoint_steps(t.steps, t.checkpoints)
    states = {}

    def keep(step, model, *rest):
        if step in marks:
            states[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    hist = fit(net, x, y, steps=t.steps, batch_size=t.batch, optimizer=_adam(net, t.lr, dev), generator=gens.data,
               callback=keep)
    final = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ms = _grid(net)
    errors = []
    for mark in marks:
        net.load_state_dict(states.get(mark, final))
        errors.append(linearize.linearized_errors(net, initial, x_eval, y_eval, ms))
        gsc.append(gsc_profile(net, x_probe, points, generator=gens.data))
    net.load_state_dict(final)
    return {"marks": marks, "counts": [linearize.linear_layers_in_top(net, m) for m in ms],
            "errors": torch.stack(errors), "gsc": torch.stack(gsc), "gsc_depths": depths,
            "residuals": linearize.layer_residuals(net, initial, x_eval),
            "blocks": block_terms(net, x_eval) if _is_resnet(net) else torch.zeros(0, 5, dtype=torch.float64),
            "accuracy": torch.tensor(hist.accuracy), "diverged": hist.diverged}


@dataclass
class Figure3:
    """Every run of Figure 3 (``results[TrainTrial]``) with the settings that made them."""

    trials: list[TrainTrial]
    results: dict
    archs: list[str]
    depths: list[int]
    lrs: list[float]
    seeds: list[int]

    def runs(self, arch: str, depth: int, lr: float) -> list[dict]:
        return [self.results[t] for t in self.trials if (t.arch, t.depth, t.lr) == (arch, depth, lr)]

    def final_errors(self, arch: str, depth: int, lr: float | None = None) -> torch.Tensor:
        """Per seed, the training error at the end (at the best learning rate when ``lr`` is None)."""
        lr = self.best_lr(arch, depth) if lr is None else lr
        return torch.tensor([float(r["errors"][-1, 0]) for r in self.runs(arch, depth, lr)])

    def best_lr(self, arch: str, depth: int) -> float:
        """The learning rate with the lowest mean final training error over seeds."""
        return min(self.lrs, key=lambda lr: float(self.final_errors(arch, depth, lr).mean()))

    def effective_depths(self, arch: str, depth: int) -> torch.Tensor:
        """[seeds, checkpoints] effective depth at the best learning rate (NaN where the network has
        not improved on chance by :data:`MIN_IMPROVEMENT`)."""
        return torch.tensor([[linearize.effective_depth_kept(depth, r["counts"], e, CHANCE, KEEP, MIN_IMPROVEMENT)
                              for e in r["errors"]] for r in self.runs(arch, depth, self.best_lr(arch, depth))])

    def marks(self) -> list[int]:
        return self.results[self.trials[0]]["marks"]


def train_figure3(S, seed: int = 0, device: torch.device | str = "cpu", scheduler=None) -> Figure3:
    """Figure 3's depth sweep: :func:`train_trial` for every architecture of ``S.train_archs``,
    depth of ``S.train_depths``, learning rate of ``S.learning_rates`` and ``S.train_seeds`` seeds
    (numbered from ``seed``·1000), run by :func:`gradprobe.sweep.run` (stored, resumable; on the
    ``scheduler`` or ``$GRADPROBE_SCHEDULER``)."""
    for name in S.train_archs:
        one_of("architecture", name, tuple(ARCHITECTURES))
    for name in ("train_width", "train_pool", "train_images", "train_batch", "train_steps", "eval_images",
                 "checkpoints", "train_seeds"):
        positive_int(name, getattr(S, name))
    if any(not lr > 0 for lr in S.learning_rates) or not S.learning_rates:
        raise ValueError(f"learning_rates must be positive numbers, got {S.learning_rates!r}")
    seeds = [seed * 1000 + s for s in range(S.train_seeds)]
    trials = [TrainTrial(arch, depth, float(lr), s, S.train_width, S.train_pool, S.train_images, S.train_batch,
                         S.train_steps, S.eval_images, S.checkpoints, str(torch.device(device)))
              for arch in S.train_archs for depth in S.train_depths for lr in S.learning_rates for s in seeds]
    done = sweep.run(train_trial, trials, scheduler=scheduler, desc="Figure 3 runs")
    if done.failed:
        trial, error = next(iter(done.failed.items()))
        raise RuntimeError(f"{len(done.failed)} training runs failed; the first, {trial}:\n{error}")
    return Figure3(trials, done.results, list(S.train_archs), list(S.train_depths),
                   [float(v) for v in S.learning_rates], seeds)


def _errorbar(ax, x, samples, **kw):
    e = [Estimate.of(s) if len(s) > 1 else Estimate.single(float(s[0])) for s in samples]
    means = np.array([v.mean for v in e])
    se = np.array([0.0 if not math.isfinite(v.se) else v.se for v in e])
    return ax.errorbar(x, means, yerr=2 * se, capsize=2, **kw)


def figure3_depth(f3: Figure3) -> plt.Figure:
    """Figure 3 against depth (at the best learning rate per architecture and depth; mean ± 2 SE
    over seeds): A the final training error, B the effective depth (NaN where the network has not
    left chance), C GSC(1, output) at initialization (open) and after training (filled)."""
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(8.5, 3.4))
    for arch in f3.archs:
        kw = dict(color=style_of(arch)["color"], linestyle=style_of(arch)["linestyle"], marker="o", markersize=3)
        _errorbar(a, f3.depths, [f3.final_errors(arch, d) for d in f3.depths], label=arch, **kw)
        eff = [f3.effective_depths(arch, d)[:, -1] for d in f3.depths]
        ok = [i for i, e in enumerate(eff) if torch.isfinite(e).all()]
        if ok:
            _errorbar(b, [f3.depths[i] for i in ok], [eff[i] for i in ok], **kw)
        for which, fill in ((0, "white"), (-1, None)):
            g = [torch.tensor([float(r["gsc"][which, 0]) for r in f3.runs(arch, d, f3.best_lr(arch, d))])
                 for d in f3.depths]
            c.plot(f3.depths, [float(v.log().mean().exp()) for v in g], marker="o", markersize=4,
                   markerfacecolor=fill, color=kw["color"], linestyle=kw["linestyle"], linewidth=1)
    a.axhline(CHANCE, **plots.REFERENCE, label="chance")
    a.set(xscale="log", xlabel="linear layers", ylabel="training error", title="A  error vs depth", ylim=(0, 1))
    b.plot(f3.depths, f3.depths, **plots.REFERENCE)
    b.set(xscale="log", yscale="log", xlabel="linear layers", ylabel="effective depth", title="B  effective depth")
    c.set(xscale="log", yscale="log", xlabel="linear layers", ylabel="GSC(1, output)",
          title="C  GSC: init ○, trained ●")
    for ax in (a, b, c):
        _ticks(ax, "x", f3.depths)
    _ticks(b)
    _ticks(c)
    fig.tight_layout()
    _legend_below(fig, [a], ncol=3)
    return fig


def figure3_training(f3: Figure3, depth: int) -> plt.Figure:
    """Figure 3 through training, for the networks of ``depth`` linear layers at their best
    learning rate: D the effective depth at each checkpoint (mean ± 2 SE over seeds, where every
    seed has left chance), E the share of the improvement over chance kept when the top m linear
    layers are linearized (end of training, mean over seeds), F the residual trick after training:
    each layer's change of function relative to its initial function, ‖r_l‖/‖g_l(θ⁰)‖."""
    if depth not in f3.depths:
        raise ValueError(f"depth {depth} was not trained; the depths are {f3.depths}")
    fig, (d, e, f) = plt.subplots(1, 3, figsize=(8.5, 3.4))
    marks = f3.marks()
    for arch in f3.archs:
        kw = dict(color=style_of(arch)["color"], linestyle=style_of(arch)["linestyle"])
        eff = f3.effective_depths(arch, depth)
        ok = [i for i in range(len(marks)) if torch.isfinite(eff[:, i]).all()]
        if ok:
            _errorbar(d, [marks[i] for i in ok], [eff[:, i] for i in ok], marker="o", markersize=3, label=arch, **kw)
        runs = f3.runs(arch, depth, f3.best_lr(arch, depth))
        kept = torch.stack([(CHANCE - r["errors"][-1]) / (CHANCE - r["errors"][-1, 0]) for r in runs]).mean(0)
        e.plot(runs[0]["counts"], kept.numpy(), marker=".", label=arch, **kw)
        residuals = torch.stack([r["residuals"] for r in runs]).mean(0)
        f.plot(np.arange(1, len(residuals) + 1), residuals.numpy(), marker=".", **kw)
    d.axhline(depth, **plots.REFERENCE)
    d.set(xscale="log", xlabel="training step", ylabel="effective depth", title=f"D  over training ({depth} layers)")
    _ticks(d, "x", marks)
    e.axhline(KEEP, **plots.REFERENCE)
    e.set(xlabel="top linear layers linearized", ylabel="share of improvement kept", title="E  linearizing the top",
          ylim=(-0.05, 1.05))
    f.set(yscale="log", xlabel="layer or block (input → output)", ylabel="‖g(θ) − g(θ⁰)‖ / ‖g(θ⁰)‖",
          title="F  residual trick, trained")
    _ticks(f, "y", [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10])
    fig.tight_layout()
    handles, labels = e.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=3, frameon=False)
    return fig


def figure3_table(f3: Figure3) -> pd.DataFrame:
    """One row per architecture and depth: the best learning rate, the final training error and
    the effective depth at the end (mean ± SE over seeds; effective depth over the seeds that left
    chance, with their count), GSC(1, output) at initialization and after training (geometric
    mean over seeds)."""
    rows = []
    for arch in f3.archs:
        for depth in f3.depths:
            lr = f3.best_lr(arch, depth)
            runs = f3.runs(arch, depth, lr)
            eff = f3.effective_depths(arch, depth)[:, -1]
            ok = eff[torch.isfinite(eff)]
            gsc = lambda i: float(torch.tensor([float(r["gsc"][i, 0]) for r in runs]).log().mean().exp())  # noqa: E731
            rows.append({"architecture": arch, "linear layers": depth, "best lr": f"{lr:g}",
                         "training error": Estimate.of(f3.final_errors(arch, depth)).text(),
                         "effective depth": (Estimate.of(ok).text() if len(ok) > 1 else
                                             (f"{float(ok[0]):.3g} (1 seed)" if len(ok) else "—")),
                         "seeds that left chance": f"{len(ok)}/{len(eff)}",
                         "GSC(1, out) init → trained": f"{gsc(0):.3g} → {gsc(-1):.3g}"})
    return pd.DataFrame(rows).set_index(["architecture", "linear layers"])


def check_figure3(page, f3: Figure3, focus_depth: int) -> None:
    """The rows of Figure 3, decided over seeds (``needs="book"``): the exploding architectures
    train worse at the largest depth than at their best; looks-linear ReLU and the batch-ReLU
    ResNet train far better there; the Pythagorean equation still holds in the trained ResNet;
    the exploding architectures' effective depth (our linearization measure) at ``focus_depth``
    is below looks-linear ReLU's. Glues ``f3_*``."""
    claims = page.claims
    deepest = max(f3.depths)
    exploding = [a for a in f3.archs if a in EXPLODING]
    page.glue("f3_deepest", deepest)
    page.glue("f3_focus", focus_depth)
    page.glue("f3_chance", CHANCE, ".2g")
    page.glue("f3_keep", KEEP, ".0%")
    page.glue("f3_min_improvement", MIN_IMPROVEMENT, ".2g")

    def best_depth(arch):
        return min(f3.depths, key=lambda d: float(f3.final_errors(arch, d).mean()))

    def eff(arch):
        e = f3.effective_depths(arch, focus_depth)[:, -1]
        e = e[torch.isfinite(e)]
        return Estimate.of(e) if len(e) > 1 else Estimate.single(float(e[0]) if len(e) else math.nan)

    for a in f3.archs:
        key = _key(a)
        _glue_mean(page, f"f3_err_deep_{key}", f3.final_errors(a, deepest), ".2f")
        _glue_mean(page, f"f3_err_best_{key}", f3.final_errors(a, best_depth(a)), ".2f")
        page.glue(f"f3_best_depth_{key}", best_depth(a))
        page.glue(f"f3_eff_{key}", eff(a).mean, ".3g")
        r = torch.stack([r["residuals"] for r in f3.runs(a, focus_depth, f3.best_lr(a, focus_depth))])
        page.glue(f"f3_resid_{key}", float(r[:, 1:-1].median()), ".2f")
        page.glue(f"f3_k_{key}", 1 / float(r[:, 1:-1].median()), ".2g")
    larger_scales = {a for scale in ("book", "paper") for a in settings(scale).train_archs}
    for a in sorted(larger_scales - set(f3.archs)):
        page.glue_not_run(*(f"f3_{what}_{_key(a)}" for what in ("err_deep", "err_best", "best_depth", "eff",
                                                                 "resid", "k")))
    if "batch-ReLU ResNet" not in f3.archs:
        page.glue_not_run("f3_pyth_rms", "f3_pyth_z")
    if exploding:
        claims.add("exploding architectures train worse at the largest depth than at their best depth",
                   all_of({f"{a} ({deepest} vs {best_depth(a)})": difference_at_least(
                       f3.final_errors(a, deepest), f3.final_errors(a, best_depth(a)), 0.05) for a in exploding},
                       paper="depth limited"),
                   source="philipp2018, abstract; Fig. 3",
                   quote="exploding gradients exist and that they limit the depth to which networks can be "
                         "effectively trained, both in theory and in practice",
                   note="final training error at the best Adam learning rate per depth; by at least 0.05 (ours). Adam "
                        "throughout: the abstract says it does not solve the problem", needs="book")
    if "looks-linear ReLU" in f3.archs and exploding:
        claims.add("looks-linear ReLU trains far better than the exploding architectures at the largest depth",
                   all_of({a: difference_at_least(f3.final_errors(a, deepest),
                                                  f3.final_errors("looks-linear ReLU", deepest), 0.1)
                           for a in exploding}, paper="mitigated"),
                   source="philipp2018, summary",
                   quote="an orthogonal/structured initialization can substantially mitigate gradient growth",
                   note="final training errors at the largest depth; by at least 0.1 (ours)", needs="book")
    if "batch-ReLU ResNet" in f3.archs and "batch-ReLU" in f3.archs:
        claims.add("the batch-ReLU ResNet trains far better than plain batch-ReLU at the largest depth",
                   difference_at_least(f3.final_errors("batch-ReLU", deepest),
                                       f3.final_errors("batch-ReLU ResNet", deepest), 0.1),
                   source="philipp2018, abstract",
                   quote="ResNets ... can circumvent the exploding gradient problem, enabling the effective training "
                         "of much deeper networks",
                   note="final training errors; by at least 0.1 (ours)", needs="book")
        blocks = [r["blocks"] for r in f3.runs("batch-ReLU ResNet", deepest, f3.best_lr("batch-ReLU ResNet", deepest))]
        rms = torch.stack([b[:, 3].pow(2).mean().sqrt() for b in blocks])
        _glue_mean(page, "f3_pyth_rms", rms, ".3f")
        _glue_mean(page, "f3_pyth_z", torch.stack([b[:, 4].mean() for b in blocks]), ".2f")
        claims.add("after training, the Pythagorean equation still holds in every block of the ResNet",
                   at_most(rms, 0.05, paper="‖s + r‖² ≈ ‖s‖² + ‖r‖²"),
                   source="philipp2018, abstract",
                   quote="We show this is a direct consequence of the Pythagorean equation.",
                   note=f"RMS over the blocks of ‖s+r‖²/(‖s‖²+‖r‖²) − 1 in the trained {deepest}-layer ResNet, on "
                        "training images, per seed; 5% is our tolerance", needs="book")
    if "looks-linear ReLU" in f3.archs and exploding:
        claims.add("exploding gradients limit effective depth (linearization measure)",
                   all_of({a: difference_at_least(eff("looks-linear ReLU"), eff(a), 0.0) for a in exploding},
                          paper="effective depth limited"),
                   kind=RECONSTRUCTION, source="philipp2018, abstract; Fig. 3",
                   quote="they limit the depth to which networks can be effectively trained",
                   note=f"effective depth at {focus_depth} linear layers, end of training: looks-linear ReLU's minus "
                        "each exploding architecture's; the measure (linearizing the top layers around the initial "
                        "weights while 90% of the improvement over chance is kept) is ours", needs="book")
