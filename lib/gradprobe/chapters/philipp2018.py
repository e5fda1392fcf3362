"""Chapter *The exploding gradient problem demystified* (Philipp, Song & Carbonell 2018): the
drivers, figures, tables and claims of ``notebooks/02_philipp2018.ipynb``, in the notebook's order.

- the architectures of Figure 1, used by every section: :data:`ARCHITECTURES`, :func:`architecture`;
- the definitions: :func:`gsc_check` (the GSC estimate against the exact Jacobian);
- Figure 1: :func:`init_survey` (one architecture), :func:`survey_figure1` (all of them),
  :func:`figure1_table`, :func:`figure1`;
- the residual trick: :func:`residual_trick` (figure), :func:`pythagorean_table`;
- the cross-reference to chapter 1: :func:`cross_reference`;
- Figure 2: :func:`discs_figure2` (driver), :func:`figure2`, :func:`roughness_table`,
  :func:`roughness_rank_correlation`, :func:`disc_rounding` (fast discs against slow ones);
- Figure 3: :func:`train_figure3` (driver), :func:`figure3_table`, :func:`linearize_figure3`
  (effective depth), :func:`figure3`;
- :func:`check_claims`: the "paper vs this book" table.

Drivers take the notebook's settings ``S`` (a :class:`~gradprobe.book.scales.Settings`, or any
object with the same attributes), its :class:`~gradprobe.runtime.Generators` and a device, and
draw from the generators in the order the notebook always has: a result depends only on the
seed and the settings. Figure functions return the figure; the notebook saves and shows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..book import plots
from ..book.claims import Claims
from ..book.scales import Settings
from ..checks import int_at_least, one_of, positive, positive_int
from ..data.cifar10 import CIFAR10_CLASSES, cifar10, to_tensor
from ..data.tensors import channel_stats, cifar10_tensors
from ..measure import discs, linearize
from ..measure.gsc import (GSCTracker, ResidualCheck, domain_stats, gsc_exact, gsc_points, gsc_profile,
                           residual_checks)
from ..measure.rates import fit_rate
from ..networks.mlp import PreActBlock, mlp
from ..runtime import Generators, progress
from ..theory import gaussian
from ..train.loop import History, evaluate, fit

__all__ = ["ARCHITECTURES", "architecture", "gsc_check", "InitSurvey", "init_survey", "survey_figure1",
           "SPEC_RATE", "EXPLODES", "collapsed", "figure1_table", "COLOURS", "style_of", "figure1",
           "residual_trick", "pythagorean_table", "cross_reference", "DISC_ARCHITECTURES", "Figure2Discs",
           "discs_figure2", "figure2", "roughness_table", "roughness_rank_correlation", "RoundingCheck",
           "disc_rounding", "TrainingRun", "Figure3Runs", "train_figure3", "figure3_table", "Linearization",
           "linearize_figure3", "figure3", "check_claims"]

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


# =========================================================================== the definitions
def gsc_check(weights: torch.Generator | None = None, data: torch.Generator | None = None,
              linear_layers: int = 8, width: int = 12, batch: int = 10, probes: int = 500) -> pd.DataFrame:
    """GSC(k, output) of a small batch-ReLU ResNet (``linear_layers`` linear layers of ``width``
    units, weights from ``weights``) on a Gaussian batch [batch, width] (from ``data``) at the
    residual stream's points, exactly (``gsc_exact``, the full Jacobian) and estimated with
    ``probes`` Gaussian probes (``gsc_profile``, probes from ``data``): the table of the chapter's
    definitions section, rounded to 3 decimals. On the CPU."""
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


# =========================================================================== Figure 1
@dataclass
class InitSurvey:
    """Figure 1 for one architecture: per seed (rows), GSC(l, output) at ``depths`` (linear layers
    from the input), the :class:`~gradprobe.measure.gsc.DomainStats` per nonlinearity layer, and
    for residual networks the :class:`~gradprobe.measure.gsc.ResidualCheck` of every block (else an
    empty list per seed)."""

    name: str
    depths: list[int]
    gsc: torch.Tensor
    std: torch.Tensor
    sign_diversity: torch.Tensor
    qm: torch.Tensor
    blocks: list[list[ResidualCheck]]

    @property
    def rates(self) -> torch.Tensor:
        """GSC growth per linear layer toward the input, per seed (:func:`~gradprobe.measure.rates.fit_rate`
        of GSC against ``depths``, reversed)."""
        return torch.tensor([fit_rate(g, depths=self.depths, reverse=True).rate for g in self.gsc])

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
    rows, doms, blocks, depths = [], [], [], None
    for _ in range(seeds):
        net = architecture(name, linear_layers, width, generator=weights).to(device)
        x = torch.randn(batch, width, generator=data).to(device)
        modules, depths = gsc_points(net)
        rows.append(gsc_profile(net, x, modules, probes=probes, generator=data))
        doms.append(domain_stats(net, x))
        is_resnet = any(isinstance(m, PreActBlock) for m in net.modules())
        blocks.append(residual_checks(net, x, probes=max(probes, 2), generator=data) if is_resnet else [])
    return InitSurvey(name, depths, torch.stack(rows), torch.stack([d.std for d in doms]),
                      torch.stack([d.sign_diversity for d in doms]), torch.stack([d.qm for d in doms]), blocks)


def survey_figure1(S: Settings, gen: Generators, device: torch.device | str = "cpu") -> dict[str, InitSurvey]:
    """Figure 1's survey: :func:`init_survey` of every architecture of :data:`ARCHITECTURES`, in
    its order, with ``S.seeds`` networks of ``S.linear_layers`` linear layers of width ``S.width``
    on ``S.batch`` Gaussian inputs, ``S.probes`` probes per GSC estimate."""
    return {name: init_survey(name, S.seeds, S.linear_layers, S.width, S.batch, S.probes,
                              data=gen.data, weights=gen.weights, device=device)
            for name in progress(list(ARCHITECTURES), desc="architectures")}


# GSC rates per linear layer measured while planning this book, not the paper's ([spec] in the table).
SPEC_RATE = {"batch-ReLU": 1.21, "batch-tanh": 1.10, "layer-tanh": 1.09, "SELU": 1.04, "ReLU": 1.01,
             "layer-ReLU": 1.00, "tanh": 1.005, "looks-linear ReLU": 1.000}
EXPLODES = 1.03   # a GSC rate per linear layer above this "explodes" [spec]


def collapsed(s: InitSurvey) -> bool:
    """The domain collapses: at the last nonlinearity the sign diversity is below 0.1 or the
    pre-activation std below 0.2 of the first's (means over seeds)."""
    return bool(s.sign_diversity[:, -1].mean() < 0.1 or s.std[:, -1].mean() < 0.2 * s.std[:, 0].mean())


def figure1_table(survey: dict[str, InitSurvey]) -> pd.DataFrame:
    """The table under Figure 1, one row per architecture: GSC rate per linear layer (mean and sd
    over seeds), the [spec] rate, median GSC(1, 50), pre-activation std and sign diversity at the
    first and last nonlinearity, forward RMS last/first, and the verdict (explodes: rate >
    :data:`EXPLODES`; else collapses: :func:`collapsed`; else neither). Rounded for display."""
    rows = []
    for name, s in survey.items():
        rate = s.rates
        rows.append({"architecture": name, "GSC rate / linear layer": float(rate.mean()),
                     "± (sd over seeds)": float(rate.std()) if len(rate) > 1 else 0.0,
                     "expected [spec]": SPEC_RATE.get(name, np.nan),
                     "GSC(1, 50)": float(s.gsc[:, 0].median()),
                     "pre-act std first → last": f"{s.std[:, 0].mean():.3g} → {s.std[:, -1].mean():.3g}",
                     "sign diversity first → last":
                         f"{s.sign_diversity[:, 0].mean():.3g} → {s.sign_diversity[:, -1].mean():.3g}",
                     "forward RMS last / first": float((s.qm[:, -1] / s.qm[:, 0]).mean())})
    table = pd.DataFrame(rows).set_index("architecture")
    table["verdict"] = ["explodes" if r > EXPLODES else ("collapses" if collapsed(survey[n]) else "neither")
                        for n, r in table["GSC rate / linear layer"].items()]
    return table.round({"GSC rate / linear layer": 4, "± (sd over seeds)": 4, "expected [spec]": 3,
                        "GSC(1, 50)": 1, "forward RMS last / first": 3})


# This paper's colour map: one colour per nonlinearity and normalization, dashed for the ResNet.
COLOURS = dict(zip(["ReLU", "layer-ReLU", "batch-ReLU", "tanh", "layer-tanh", "batch-tanh", "SELU",
                    "looks-linear ReLU"], matplotlib.colormaps["tab10"].colors))


def style_of(name: str) -> dict:
    """Line style of architecture ``name`` in every figure of the chapter: its plain version's
    colour (:data:`COLOURS`), dashed for a ResNet."""
    base = name.removesuffix(" ResNet")
    return dict(color=COLOURS[base], linestyle="--" if name.endswith("ResNet") else "-", linewidth=1.4)


def _block_outputs(s: InitSurvey) -> np.ndarray:
    """The linear layer at each block's output (3, 5, 7, ...)."""
    return 1 + 2 * np.arange(1, len(s.blocks[0]) + 1)


def figure1(survey: dict[str, InitSurvey], S: Settings) -> plt.Figure:
    """Philipp et al.'s Figure 1 (panels A–D) and two reconstructed panels: A/B GSC(l, 50) of the
    plain networks and ResNets with the BN-ReLU theory √(π/(π−1))^(L−l), C pre-activation std,
    D sign diversity, E dilution k and F branch GSC of the ResNets' blocks; median and min–max
    band over seeds (``S.linear_layers``, ``S.width``, ``S.seeds`` name the setting)."""
    if not survey:
        raise ValueError("figure1 needs a survey of at least one architecture (survey_figure1)")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    (a, b, c), (d, e, f) = axes
    for name, s in survey.items():
        ax = b if name.endswith("ResNet") else a
        plots.band(ax, s.depths, s.gsc, name, **style_of(name))
        nl = np.arange(1, s.std.shape[1] + 1)
        plots.band(c, nl, s.std, **style_of(name))
        plots.band(d, nl, s.sign_diversity, **style_of(name))
        if s.blocks[0]:
            blocks = _block_outputs(s)
            plots.band(e, blocks, s.block_values("k"), **style_of(name))
            plots.band(f, blocks, s.block_values("gsc_residual"), **style_of(name))
    relu_theory = gaussian.norm_rate("relu") ** (S.linear_layers - np.arange(1, S.linear_layers + 1))
    a.plot(np.arange(1, S.linear_layers + 1), relu_theory, **plots.THEORY,
           label="√(π/(π−1))^(50−l) (BN-ReLU theory)")
    for ax, title in ((a, "A  GSC(l, 50), plain networks"), (b, "B  GSC(l, 50), ResNets (same y scale)")):
        ax.set(yscale="log", xlabel="linear layer l (input → output)", ylabel="GSC(l, 50) (dimensionless)",
               title=title)
        ax.set_ylim(0.3, 3e4)
        ax.legend(fontsize="x-small", ncol=2)
    c.set(yscale="log", xlabel="nonlinearity layer (input → output)", ylabel="pre-activation std across inputs",
          title="C  pre-activation standard deviation")
    d.set(xlabel="nonlinearity layer (input → output)", ylabel="sign diversity min(P,N)/(P+N)",
          title="D  sign diversity", ylim=(0, 0.52))
    e.set(xlabel="linear layer at the block's output", ylabel="dilution k = ‖s‖/‖r‖",
          title="E  dilution (ResNets) [recon panel]")
    f.set(yscale="log", xlabel="linear layer at the block's output", ylabel="GSC of the residual branch",
          title="F  branch GSC (ResNets) [recon panel]")
    fig.suptitle(f"Figure 1: {S.linear_layers} linear layers, width {S.width}, Gaussian inputs; "
                 f"median and min–max over {S.seeds} networks (dashed: ResNet)", y=1.0)
    fig.tight_layout()
    return fig


# =========================================================================== the residual trick
def _resnets(survey: dict[str, InitSurvey]) -> list[str]:
    names = [n for n in survey if n.endswith("ResNet")]
    if not names:
        raise ValueError("the survey holds no ResNet; survey every architecture with survey_figure1")
    return names


def residual_trick(survey: dict[str, InitSurvey]) -> plt.Figure:
    """The residual trick per block of every ResNet of the survey (a figure of this book, not the
    paper's): the Pythagorean errors |‖s+r‖²/(‖s‖²+‖r‖²) − 1| and |‖J_s+J_r‖²/(‖J_s‖²+‖J_r‖²) − 1|
    against the 5% of the spec, and the dilution formula √((k² + GSC(r)²)/(k² + 1)) against the
    measured block GSC."""
    resnets = _resnets(survey)
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    for name in resnets:
        s = survey[name]
        blocks = _block_outputs(s)
        plots.band(a, blocks, s.block_values("forward_error").abs(), name, **style_of(name))
        plots.band(b, blocks, s.block_values("jacobian_error").abs(), **style_of(name))
        c.scatter(s.block_values("gsc_block").flatten(), s.block_values("gsc_predicted").flatten(), s=6,
                  color=style_of(name)["color"], label=name)
    for ax, what in ((a, "activations ‖s+r‖²/(‖s‖²+‖r‖²)"), (b, "Jacobians ‖J_s+J_r‖²/(‖J_s‖²+‖J_r‖²)")):
        ax.axhline(0.05, **plots.PAPER, label="5% [spec claim]")
        ax.set(yscale="log", xlabel="linear layer at the block's output", ylabel="|ratio − 1|",
               title=f"Pythagorean error, {what}")
    a.legend(fontsize="x-small")
    lims = [0.95, max(float(survey[n].block_values("gsc_block").max()) for n in resnets) * 1.05]
    c.plot(lims, lims, **plots.THEORY, label="prediction = measurement")
    c.set(xlabel="block GSC, measured", ylabel="√((k² + GSC(r)²)/(k² + 1))", title="dilution formula, every block")
    c.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def _prediction_error(s: InitSurvey) -> torch.Tensor:
    """|predicted/measured block GSC − 1| per seed and block."""
    return (s.block_values("gsc_predicted") / s.block_values("gsc_block") - 1).abs()


def pythagorean_table(survey: dict[str, InitSurvey]) -> pd.DataFrame:
    """Per ResNet: largest and median |forward Pythagorean error|, largest |Jacobian error|,
    largest |predicted/measured − 1| of the dilution formula over blocks and seeds, and the
    dilution k of the last block (mean over seeds). Rounded to 3 decimals."""
    pyth = pd.DataFrame({name: {
        "max |forward error|": float(survey[name].block_values("forward_error").abs().max()),
        "median |forward error|": float(survey[name].block_values("forward_error").abs().median()),
        "max |Jacobian error|": float(survey[name].block_values("jacobian_error").abs().max()),
        "max |predicted/measured − 1|": float(_prediction_error(survey[name]).max()),
        "dilution k of the last block": float(survey[name].block_values("k")[:, -1].mean()),
    } for name in _resnets(survey)}).T
    return pyth.round(3)


# =========================================================================== cross-reference
def cross_reference(survey: dict[str, InitSurvey]) -> str:
    """Three lines: the batch-ReLU GSC rate per layer measured in Figure 1, its square against
    π/(π−1) (the variance rate of chapter 1) and √(π/(π−1))."""
    _require(survey, ["batch-ReLU"])
    bn_rate = float(survey["batch-ReLU"].rates.mean())
    return (f"batch-ReLU GSC rate per layer (Philipp et al.'s measure): {bn_rate:.4f}\n"
            f"its square: {bn_rate ** 2:.4f};   π/(π−1) = {gaussian.RELU_RATE:.4f}  (variance rate, chapter 1)\n"
            f"√(π/(π−1)) = {gaussian.norm_rate('relu'):.4f}")


# =========================================================================== Figure 2
# Nine discs, as Figure 2 C–K [recon: which nine].
DISC_ARCHITECTURES = ["ReLU", "layer-ReLU", "batch-ReLU", "tanh", "layer-tanh", "batch-tanh", "SELU",
                      "looks-linear ReLU", "batch-ReLU ResNet"]


@dataclass
class Figure2Discs:
    """Figure 2: the input ``image`` (uint8 [32, 32, 3], CIFAR-10 test image of class ``label``),
    the sphere's ``coefficients`` [P, 3] and disc ``mask``, and per architecture the disc
    ``pictures`` [R, R, 3], their ``roughness`` and the ``setups`` (network, input batch, the three
    weight matrices of layer 1) they were drawn from."""

    image: np.ndarray
    label: str
    coefficients: torch.Tensor
    mask: torch.Tensor
    pictures: dict[str, torch.Tensor]
    roughness: dict[str, float]
    setups: dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]


def discs_figure2(S: Settings, gen: Generators, device: torch.device | str = "cpu",
                  names=tuple(DISC_ARCHITECTURES)) -> Figure2Discs:
    """Figure 2's discs: for each architecture in ``names`` (``S.linear_layers`` linear layers of
    ``S.width``, 3 outputs) the output on the first cat of the CIFAR-10 test split (BatchNorm
    networks: in a batch with ``S.disc_bn_batch`` − 1 other test images drawn from ``gen.data``)
    as a function of layer 1's weights W(c) = Σ_j c_j W_j on the sphere ‖c‖ = 1, drawn on an
    ``S.disc_resolution``² disc (:mod:`gradprobe.measure.discs`); W_A, W_B, W_C are layer 1 of
    three networks seeded from ``gen.weights``, the network itself is the first."""
    positive_int("disc_bn_batch", S.disc_bn_batch)
    for name in names:
        one_of("architecture", name, tuple(ARCHITECTURES))
    images, labels = cifar10("test")
    mean, std = channel_stats()
    shown = int(np.flatnonzero(labels == CIFAR10_CLASSES.index("cat"))[0])
    others = torch.randperm(len(labels), generator=gen.data)[:S.disc_bn_batch - 1].tolist()
    batch_images = to_tensor(images[[shown] + others], mean, std).flatten(1).to(device)
    coefficients, mask = discs.sphere_grid(S.disc_resolution)
    pictures, rough, disc_setups = {}, {}, {}
    for name in progress(list(names), desc="discs"):
        seeds = torch.randint(0, 2**31, (3,), generator=gen.weights).tolist()

        def build(g, name=name):
            return architecture(name, S.linear_layers, S.width, in_dim=3072, out_dim=3, generator=g)

        weights = discs.layer_weight_samples(build, 0, [torch.Generator().manual_seed(s) for s in seeds])
        net = build(torch.Generator().manual_seed(seeds[0])).to(device)
        x = batch_images if "batch" in name else batch_images[:1]
        out = discs.disc_outputs(net, x, 0, weights.to(device), coefficients.to(device))
        pictures[name] = discs.to_image(discs.colours(out.cpu()), mask)
        disc_setups[name] = (net, x, weights.to(device))
        rough[name] = discs.roughness(pictures[name], mask)
    return Figure2Discs(images[shown], CIFAR10_CLASSES[labels[shown]], coefficients, mask, pictures, rough,
                        disc_setups)


def figure2(fig2: Figure2Discs, survey: dict[str, InitSurvey], S: Settings) -> plt.Figure:
    """Philipp et al.'s Figure 2: A the input image, B the colour legend (output direction o/‖o‖),
    C–K one disc per architecture titled with its roughness and median GSC(1, 50) from the
    Figure 1 ``survey``."""
    _require(survey, fig2.pictures)
    fig, axes = plt.subplots(2, 6, figsize=(16, 6))
    axes = axes.flatten()
    axes[0].imshow(fig2.image)
    axes[0].set_title(f"A  input ({fig2.label})")
    legend_image, _ = discs.legend_disc(S.disc_resolution)
    axes[1].imshow(legend_image.numpy())
    axes[1].set_title("B  colour of output o/‖o‖")
    for ax, name, letter in zip(axes[2:], fig2.pictures, "CDEFGHIJK"):
        ax.imshow(fig2.pictures[name].numpy())
        ax.set_title(f"{letter}  {name}\nroughness {fig2.roughness[name]:.2f}, "
                     f"GSC(1,50) {survey[name].gsc[:, 0].median():.3g}", fontsize="small")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"Figure 2: the output as a function of layer 1's weights ({S.disc_resolution}² azimuthal discs)")
    fig.tight_layout()
    return fig


def _roughness_frame(fig2: Figure2Discs, survey: dict[str, InitSurvey]) -> pd.DataFrame:
    _require(survey, fig2.pictures)
    return pd.DataFrame({"roughness": fig2.roughness, "GSC(1, 50) at init (Fig. 1)":
                         {n: float(survey[n].gsc[:, 0].median()) for n in fig2.pictures}})


def roughness_table(fig2: Figure2Discs, survey: dict[str, InitSurvey]) -> pd.DataFrame:
    """Per disc: its roughness beside the architecture's median GSC(1, 50) at initialization
    (Figure 1). Rounded to 3 decimals."""
    return _roughness_frame(fig2, survey).round(3)


def roughness_rank_correlation(fig2: Figure2Discs, survey: dict[str, InitSurvey]) -> float:
    """Spearman's rank correlation of the discs' roughness with GSC(1, 50) (Figure 2 against
    Figure 1: exploding architectures draw confetti)."""
    return float(_roughness_frame(fig2, survey).rank().corr().iloc[0, 1])


@dataclass(frozen=True)
class RoundingCheck:
    """The largest colour difference over ``points`` points of one disc between the shared-product
    computation (``discs.disc_outputs``) and one network per point (``discs.disc_outputs_naive``)."""

    name: str
    points: int
    largest: float

    def __str__(self) -> str:
        return (f"{self.name:11s} largest colour difference, shared products vs one network per point: "
                f"{self.largest:.1g}")


def disc_rounding(fig2: Figure2Discs, names=("ReLU", "batch-tanh", "batch-ReLU"),
                  points: int = 16) -> list[RoundingCheck]:
    """Is a confetti disc a picture of the function or of rounding errors? For each disc in
    ``names``, recompute ``points`` of its points (evenly spaced in the pixel order) the slow way
    and compare colours (:class:`RoundingCheck`)."""
    int_at_least("points", points, 2)
    _require(fig2.setups, names)
    some = torch.linspace(0, len(fig2.coefficients) - 1, points).long()
    checks = []
    for name in names:
        net, x, w = fig2.setups[name]
        c = fig2.coefficients[some].to(x.device)
        fast = discs.colours(discs.disc_outputs(net, x, 0, w, c))
        slow = discs.colours(discs.disc_outputs_naive(net, x, 0, w, c))
        checks.append(RoundingCheck(name, points, float((fast - slow).norm(dim=1).max())))
    return checks


# =========================================================================== Figure 3
PROBE_IMAGES = 200   # fixed training images on which GSC is tracked during training
BATCH_SIZE = 128


@dataclass
class TrainingRun:
    """One training run of Figure 3: architecture label ``arch`` ("batch-ReLU (50 layers)"),
    optimizer and learning rate, the trained ``net`` and its ``initial`` state_dict, the
    :class:`~gradprobe.train.loop.History`, the :class:`~gradprobe.measure.gsc.GSCTracker`, and
    the final training error (on the evaluation images, batch statistics) and test error (running
    statistics)."""

    arch: str
    optimizer: str
    lr: float
    net: nn.Module
    initial: dict
    hist: History
    tracker: GSCTracker
    train_error: float
    test_error: float


@dataclass
class Figure3Runs:
    """Every run of Figure 3 in training order, and the training images ``x_eval``, ``y_eval`` on
    which errors (and the linearization test) are measured."""

    runs: list[TrainingRun]
    x_eval: torch.Tensor
    y_eval: torch.Tensor

    @property
    def best(self) -> dict[str, TrainingRun]:
        """Per architecture (in training order), the run with the lowest training error."""
        return {arch: min((r for r in self.runs if r.arch == arch), key=lambda r: r.train_error)
                for arch in dict.fromkeys(r.arch for r in self.runs)}


def _figure3_setups(S: Settings) -> list[tuple[str, int]]:
    return [("batch-ReLU", S.linear_layers), ("batch-ReLU ResNet", S.linear_layers),
            ("batch-ReLU", S.shallow_layers)]


def train_figure3(S: Settings, gen: Generators, device: torch.device | str = "cpu") -> Figure3Runs:
    """Figure 3's training runs: batch-ReLU with ``S.linear_layers`` linear layers, its ResNet at
    equal depth and a plain batch-ReLU network of ``S.shallow_layers``, each with every optimizer
    ("Adam", or "SGD" with momentum 0.9) and learning rate of ``S.learning_rates``, for
    ``S.train_steps`` steps of 128 on ``S.train_images`` CIFAR-10 training images downsampled by
    ``S.train_pool`` and flattened; GSC(l, output) tracked every ``S.gsc_every`` steps on 200 fixed
    training images; errors on ``S.eval_images`` training images and 1000 test images."""
    for name in ("train_images", "train_pool", "train_steps", "eval_images", "gsc_every"):
        positive_int(name, getattr(S, name))
    for opt_name, lrs in S.learning_rates.items():
        one_of("optimizer", opt_name, ("Adam", "SGD"))
        for lr in lrs:
            positive("learning rate", lr)
    cifar = cifar10_tensors(S.train_images, 1000, device=device, generator=gen.data)

    def prep(x):
        return F.avg_pool2d(x, S.train_pool).flatten(1) if S.train_pool > 1 else x.flatten(1)

    x_train, x_test = prep(cifar.train_x), prep(cifar.test_x)
    probe_idx = torch.randperm(len(x_train), generator=gen.data)
    x_probe = x_train[probe_idx[:PROBE_IMAGES]]
    x_eval, y_eval = x_train[probe_idx[:S.eval_images]], cifar.train_y[probe_idx[:S.eval_images]]
    runs = []
    for arch, depth in _figure3_setups(S):
        for opt_name, lrs in S.learning_rates.items():
            for lr in lrs:
                net = architecture(arch, depth, S.width, in_dim=x_train.shape[1], out_dim=10,
                                   generator=gen.weights).to(device)
                initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
                opt = (torch.optim.Adam(net.parameters(), lr=lr) if opt_name == "Adam"
                       else torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9))
                tracker = GSCTracker(x_probe, every=S.gsc_every, generator=gen.data)
                hist = fit(net, x_train, cifar.train_y, steps=S.train_steps, batch_size=BATCH_SIZE, optimizer=opt,
                           generator=gen.data, callback=tracker)
                err = float(linearize.linearized_errors(net, initial, x_eval, y_eval, [0])[0])
                test_error = 1 - evaluate(net, x_test, cifar.test_y)[1]
                runs.append(TrainingRun(f"{arch} ({depth} layers)", opt_name, lr, net, initial, hist, tracker,
                                        err, test_error))
    return Figure3Runs(runs, x_eval, y_eval)


def figure3_table(training: Figure3Runs) -> pd.DataFrame:
    """One row per run of Figure 3: architecture, optimizer, learning rate, final training and
    test error, whether the run diverged, and GSC(1, output) at the first and last tracked step.
    Rounded to 3 decimals."""
    results = pd.DataFrame([{"arch": r.arch, "optimizer": r.optimizer, "lr": r.lr, "train_error": r.train_error,
                             "test_error": r.test_error, "diverged": r.hist.diverged,
                             "GSC(1, out) start → end":
                                 f"{r.tracker.table()[0, 0]:.3g} → {r.tracker.table()[-1, 0]:.3g}"}
                            for r in training.runs])
    results["lr"] = results["lr"].map("{:g}".format)
    return results.round(3)


@dataclass
class Linearization:
    """The effective-depth test of one trained network: training error with the top ``layers``
    (0, 1, 3, ...) linear layers replaced by their linearization around θ₀, and the effective
    depth (linear layers left when the most that keep the error within 2 points are linearized)."""

    arch: str
    layers: list[int]
    errors: torch.Tensor
    effective_depth: int

    def __str__(self) -> str:
        return (f"{self.arch:30s} training error with 0, 1, 3, ... linearized top layers {self.layers}: "
                f"{', '.join(f'{e:.3f}' for e in self.errors.tolist())}; effective depth {self.effective_depth}")


LINEARIZED_COUNTS = (0, 1, 3, 5, 9, 17, 33, 50)


def linearize_figure3(training: Figure3Runs, S: Settings) -> dict[str, Linearization]:
    """Figure 3C: for the best run of each architecture, the training error (on the evaluation
    images) with the top 0, 1, 3, 5, 9, ... (up to ``S.linear_layers``) linear layers linearized
    around the initial weights (:mod:`gradprobe.measure.linearize`), and its effective depth at a
    tolerance of 2 points."""
    counts = [c for c in LINEARIZED_COUNTS if c <= S.linear_layers]
    linearized = {}
    for arch, r in training.best.items():
        total = len(r.net.linears()) + 1
        cs = [c for c in counts if c <= total]
        ms = [linearize.children_for_layers(r.net, c) for c in cs]
        layers = [linearize.linear_layers_in_top(r.net, m) for m in ms]
        errs = linearize.linearized_errors(r.net, r.initial, training.x_eval, training.y_eval, ms)
        linearized[arch] = Linearization(arch, layers, errs,
                                         linearize.effective_depth(total, layers, errs, tolerance=0.02))
    return linearized


def figure3(training: Figure3Runs, linearized: dict[str, Linearization], S: Settings) -> plt.Figure:
    """Philipp et al.'s Figure 3 as reconstructed here: A GSC(1, output) during training, B the
    training error (mini-batch, running mean of 20 steps) against chance, C the training error
    with the top layers linearized (:func:`linearize_figure3`); the best run of each architecture
    drawn solid, the others faint."""
    best = training.best
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    window = 20
    for r in training.runs:
        kw = dict(color=COLOURS["batch-ReLU"] if r.arch.startswith("batch-ReLU (") else COLOURS["SELU"],
                  linestyle="--" if "ResNet" in r.arch else ("-" if str(S.linear_layers) in r.arch else ":"),
                  alpha=1.0 if r is best[r.arch] else 0.35)
        if "ResNet" not in r.arch and str(S.shallow_layers) + " layers" in r.arch:
            kw["color"] = "0.3"
        label = f"{r.arch}, {r.optimizer} {r.lr:g}"
        a.plot(r.tracker.steps, r.tracker.table()[:, 0].numpy(), label=label, **kw)
        err = 1 - np.convolve(r.hist.accuracy, np.ones(window) / window, mode="valid")
        b.plot(np.arange(len(err)) + window, err, **kw)
    a.set(yscale="log", xlabel="training step", ylabel="GSC(1, output) on 200 training images",
          title="A  GSC during training")
    a.legend(fontsize="xx-small", ncol=1)
    b.set(xlabel="training step", ylabel=f"training error (mini-batch, mean of {window})",
          title="B  error during training")
    b.axhline(0.9, **plots.PAPER, label="chance (0.9)")
    b.legend(fontsize="x-small")
    for arch, lin in linearized.items():
        c.plot(lin.layers, lin.errors.numpy(), marker="o", label=f"{arch}: effective depth {lin.effective_depth}")
    c.set(xlabel="top linear layers replaced by their linearization", ylabel="training error (fraction)",
          title="C  linearizing the top layers around θ₀ (best run each)")
    c.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


# =========================================================================== claims
EXPLODING = ["batch-ReLU", "batch-tanh", "layer-tanh", "SELU"]


def check_claims(survey: dict[str, InitSurvey], fig2: Figure2Discs, training: Figure3Runs,
                 S: Settings) -> Claims:
    """The chapter's "paper vs this book" table: the paper's statements about Figure 1 (which
    architectures explode, which collapse, the residual trick), Figure 2 (roughness follows GSC)
    and Figure 3 (plain batch-ReLU trains clearly worse than its ResNet), each with this book's
    measurement and criterion. The thresholds (1.03, 5%, 10%, 0.1) are the spec's."""
    _require(survey, list(ARCHITECTURES))
    claims = Claims("philipp2018")
    resnets = _resnets(survey)

    def rate(n):
        return float(survey[n].rates.mean())

    claims.close("batch-ReLU GSC rate per layer = √(π/(π−1)) (cross-reference, chapter 1)",
                 gaussian.norm_rate("relu"), rate("batch-ReLU"), rel=0.03,
                 source="philipp2018, Fig. 1A; paik2023; ghost2024")
    bn_gsc = survey["batch-ReLU"].gsc[:, 0].median()
    claims.holds("batch-ReLU GSC over 49 layers ≈ 10⁴", "≈ 10⁴ [spec]", float(bn_gsc),
                 bool(3.5 <= math.log10(bn_gsc) <= 4.5), criterion="10^3.5 … 10^4.5",
                 source="philipp2018, Fig. 1A")
    claims.holds("batch-ReLU, batch-tanh, layer-tanh, SELU explode at init", "GSC rate > 1.03 / layer",
                 f"{min(rate(n) for n in EXPLODING):.4g} (smallest)", all(rate(n) > EXPLODES for n in EXPLODING),
                 criterion="every rate > 1.03", source="philipp2018, abstract, Fig. 1A")
    fwd = [float((survey[n].qm[:, -1] / survey[n].qm[:, 0]).mean()) for n in EXPLODING]
    claims.holds("... although their forward activations are stable", "stable forward pass",
                 f"{min(fwd):.3g} … {max(fwd):.3g}", all(0.5 <= v <= 2 for v in fwd),
                 criterion="last/first pre-activation RMS in [0.5, 2]", source="philipp2018, abstract")
    sd = {n: float(survey[n].sign_diversity[:, -1].mean()) for n in ("ReLU", "layer-ReLU")}
    claims.holds("ReLU and layer-ReLU do not explode but collapse (sign diversity)", "0.46 → 0.03 [spec]",
                 f"{max(sd.values()):.3g} (larger of the two)",
                 all(rate(n) < EXPLODES and sd[n] < 0.1 for n in sd),
                 criterion="rate < 1.03 and last sign diversity < 0.1", source="philipp2018, abstract, Fig. 1C")
    tanh_ratio = float(survey["tanh"].std[:, -1].mean() / survey["tanh"].std[:, 0].mean())
    claims.holds("tanh does not explode but collapses (pre-activation std)", "1.0 → 0.09 [spec]", tanh_ratio,
                 bool(rate("tanh") < EXPLODES and tanh_ratio < 0.2),
                 criterion="rate < 1.03 and last/first std < 0.2", source="philipp2018, abstract, Fig. 1B")
    ll = survey["looks-linear ReLU"]
    claims.close("looks-linear ReLU: GSC rate 1", 1.0, rate("looks-linear ReLU"), rel=0.01,
                 source="philipp2018, Sec. on solutions [spec]")
    claims.holds("looks-linear ReLU: no collapse", "none", float(ll.sign_diversity[:, -1].mean()),
                 bool(ll.sign_diversity[:, -1].mean() > 0.4 and ll.std[:, -1].mean() > 0.8 * ll.std[:, 0].mean()),
                 criterion="last sign diversity > 0.4, std kept", source="philipp2018 [spec]")
    claims.holds("batch-ReLU ResNet rate falls toward 1", "×1.21 → ≲ ×1.02 [spec]", rate("batch-ReLU ResNet"),
                 rate("batch-ReLU ResNet") <= 1.025, criterion="≤ 1.025", source="philipp2018, abstract, Fig. 1")
    claims.holds("every ResNet's rate is below its plain version's or ≈ 1", "ResNets have lower gradients",
                 f"{max(rate(n) for n in resnets):.4g} (largest)",
                 all(rate(n) <= max(rate(n.removesuffix(' ResNet')), 1.02) for n in resnets),
                 criterion="rate ≤ max(plain rate, 1.02)", source="philipp2018, abstract")
    jac_err = max(float(survey[n].block_values("jacobian_error").abs().max()) for n in resnets)
    fwd_err = max(float(survey[n].block_values("forward_error").abs().max()) for n in resnets)
    claims.holds("Pythagorean equation per block (Jacobians)", "within 5% [spec]", jac_err, jac_err <= 0.05,
                 criterion="max over blocks ≤ 0.05", source="philipp2018, abstract")
    claims.holds("Pythagorean equation per block (activations)", "within 5% [spec]", fwd_err, fwd_err <= 0.05,
                 criterion="max over blocks ≤ 0.05", source="philipp2018, abstract",
                 note="fails in the collapsed ReLU/SELU ResNets, see the residual-trick section")
    pred_err = max(float(_prediction_error(survey[n]).max()) for n in resnets)
    claims.holds("dilution formula predicts block GSC", "within 10% [spec]", pred_err, pred_err <= 0.10,
                 criterion="max |pred/meas − 1| ≤ 0.10", source="philipp2018, residual trick")
    rank_corr = roughness_rank_correlation(fig2, survey)
    claims.holds("exploding architectures give rough discs", "confetti vs smooth (Fig. 2)", rank_corr,
                 rank_corr >= 0.7, criterion="Spearman(roughness, GSC) ≥ 0.7", source="philipp2018, Fig. 2")
    best = training.best
    plain_best = best[f"batch-ReLU ({S.linear_layers} layers)"]
    res_best = best[f"batch-ReLU ResNet ({S.linear_layers} layers)"]
    gap = plain_best.train_error - res_best.train_error
    claims.holds("trained: plain batch-ReLU clearly worse than its ResNet at equal depth", "worse training error",
                 f"{plain_best.train_error:.3f} vs {res_best.train_error:.3f}", bool(gap >= 0.1),
                 criterion="best-run training errors differ by ≥ 0.1", source="philipp2018, abstract, Fig. 3")
    return claims
