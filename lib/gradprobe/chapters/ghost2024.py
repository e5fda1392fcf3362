"""Chapter *A ghost that never leaves* (2024): the tables and sweeps behind its Appendix B.

- :func:`relu_b14`, :func:`b12_table`, :func:`b14_table`: Propositions B.12 and B.14 measured on
  Gaussian, Laplace and uniform inputs (:mod:`gradprobe.theory.distributions`);
- :func:`batchnorm_z`, :func:`operator_table`: Proposition B.8's z and the single-operator ratios,
  theory beside measurement;
- :func:`network_ratios`, :func:`block_ratios`, :func:`b17_sweep`: Proposition B.17, the 1/√L
  residual network (:func:`gradprobe.networks.mlp.scaled_residual_net`) against a plain one.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..checks import int_at_least, positive_int
from ..measure.stats import scaling_ratios
from ..networks.layers import init_weights_
from ..networks.mlp import ScaledResidualBlock, mlp, scaled_residual_net
from ..theory.distributions import DISTRIBUTIONS, activation_moments, mean_abs
from ..theory.operators import batchnorm_z_moments, theory_ratios

__all__ = ["relu_b14", "b12_table", "b14_table", "batchnorm_z", "operator_table", "network_ratios", "block_ratios",
           "b17_sweep"]


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


def network_ratios(net: nn.Module, repeats: int = 4, batch: int = 128,
                   generator: torch.Generator | None = None) -> tuple[float, float]:
    """Whole-network (R_f, R_b), averaged over ``repeats`` input batches x ~ N(0, I_d) with output
    gradients ∂ℓ/∂y ~ N(0, I_d/d) (the network's weights stay fixed, as Remark B.2 asks)."""
    positive_int("repeats", repeats)
    positive_int("batch", batch)
    width = next(m for m in net.modules() if isinstance(m, nn.Linear)).in_features
    rf, rb = [], []
    for _ in range(repeats):
        x = torch.randn(batch, width, generator=generator)
        g = torch.randn(batch, width, generator=generator) / math.sqrt(width)
        f, b = scaling_ratios(net, x, g)
        rf.append(f)
        rb.append(b)
    return float(np.mean(rf)), float(np.mean(rb))


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
