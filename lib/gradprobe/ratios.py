"""Forward and backward scaling ratios of operators (ghost 2024, Appendix B).

For an operator y = π(x) with input x, output-gradient ∂ℓ/∂y and input-gradient ∂ℓ/∂x,

    R_f(π) = Var[y] / Var[x],      R_b(π) = Var[∂ℓ/∂x] / Var[∂ℓ/∂y]          (Definition B.1)

where Var[·] is the mean over features of the per-feature variance over the samples (the batch).
:func:`scaling_ratios` measures both on a batch; :func:`theory_ratios` gives the paper's values
for a linear map (Prop. B.4), BatchNorm (Prop. B.8), ReLU (Prop. B.12) and a 2×2 max-pool
(Remark after Cor. B.15). :func:`activation_moments` and :func:`relu_b14` check Propositions B.12
and B.14 on Gaussian, Laplace and uniform inputs; :func:`scaled_residual_net` and
:func:`plain_net` build the networks of Proposition B.17.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, stats
from torch import nn

from .models import ACTIVATIONS, activation as _activation, activation_fn, init_weights_
from .measure import scaling_ratios, variance  # noqa: F401  (defined there, used and re-exported here)
from .theory import backward_ratio, forward_ratio

__all__ = ["variance", "scaling_ratios", "theory_ratios", "OPERATORS", "max_of_gaussians_variance",
           "DISTRIBUTIONS", "sample", "mean_abs", "activation_moments", "relu_b14", "batchnorm_z", "batchnorm_z_moments",
           "operator_table", "b12_table", "b14_table", "ResidualBlock", "scaled_residual_net", "plain_net",
           "network_ratios", "block_ratios", "b17_sweep"]

OPERATORS = ("linear", "batchnorm", "relu", "maxpool2x2")
DISTRIBUTIONS = ("gaussian", "laplace", "uniform")


def max_of_gaussians_variance(n: int = 4) -> float:
    """Var[max(z_1, …, z_n)] for iid z_i ~ N(0, 1), by quadrature of the density n φ(x) Φ(x)^(n−1)
    (n = 4: 0.4917, the paper's "0.492 by numerical simulation" for a 2×2 max-pool)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    density = lambda x: n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)
    m1 = integrate.quad(lambda x: x * density(x), -np.inf, np.inf, epsabs=1e-13)[0]
    m2 = integrate.quad(lambda x: x * x * density(x), -np.inf, np.inf, epsabs=1e-13)[0]
    return m2 - m1 ** 2


def theory_ratios(operator: str, *, weight: torch.Tensor | None = None, sigma: float = 1.0,
                  batch: int | None = None) -> tuple[float, float]:
    """The paper's (R_f, R_b) for standard Gaussian input (variance σ² for BatchNorm):

    - ``linear`` (``weight`` W of shape D×d): (‖W‖²_F / D, ‖W‖²_F / d)          Prop. B.4
    - ``batchnorm`` (``sigma``, ``batch`` B): (1/σ², (1/σ²)(1 − E z/B)), E z = 1   Prop. B.8
    - ``relu``: (½(1 − 1/π), ½)                                               Prop. B.12
    - ``maxpool2x2``: (Var[max of 4 iid N(0,1)] ≈ 0.492, ¼)                   Remark B.16
    """
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; choose one of {', '.join(map(repr, OPERATORS))}")
    if operator == "linear":
        if weight is None or weight.dim() != 2:
            raise ValueError("the linear operator needs weight=W, a 2-d tensor of shape (D, d)")
        fro2 = float(weight.double().square().sum())
        return fro2 / weight.shape[0], fro2 / weight.shape[1]
    if operator == "batchnorm":
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
            raise ValueError(f"the batchnorm operator needs batch=B, an integer >= 2, got {batch!r}")
        return 1 / sigma**2, (1 - 1 / batch) / sigma**2
    if operator == "relu":
        return forward_ratio("relu"), backward_ratio("relu")
    return max_of_gaussians_variance(4), 0.25


# ---------------------------------------------------------------- Propositions B.12 and B.14
def sample(distribution: str, shape, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """Samples with mean 0 and variance 1 from a symmetric ``distribution``: ``gaussian``,
    ``laplace`` (scale 1/√2) or ``uniform`` (on [−√3, √3])."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {', '.join(map(repr, DISTRIBUTIONS))}")
    if distribution == "gaussian":
        return torch.randn(shape, generator=generator, dtype=dtype)
    u = torch.rand(shape, generator=generator, dtype=dtype)
    if distribution == "uniform":
        return (2 * u - 1) * math.sqrt(3.0)
    # Laplace by inversion: sign(u − ½) · b · (−log(1 − 2|u − ½|)), b = 1/√2
    c = u - 0.5
    return -torch.sign(c) * torch.log1p(-2 * c.abs()) / math.sqrt(2.0)


def mean_abs(distribution: str) -> float:
    """E|x| for the unit-variance ``distribution``: Gaussian √(2/π), Laplace 1/√2, uniform √3/2."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {', '.join(map(repr, DISTRIBUTIONS))}")
    return {"gaussian": math.sqrt(2 / math.pi), "laplace": 1 / math.sqrt(2.0), "uniform": math.sqrt(3.0) / 2}[distribution]


def activation_moments(act: str, distribution: str = "gaussian", n: int = 1_000_000,
                       generator: torch.Generator | None = None) -> tuple[float, float]:
    """(R_f, R_b) = (Var[g(x)]/Var[x], E[g'(x)²]) of the activation ``act`` for n samples x of a
    unit-variance ``distribution`` (Var[x] is the samples' variance, ≈ 1), g' by autograd. For
    Gaussian x Proposition B.12 says the first is at most the second (Chernoff 1981), with
    equality only for affine g."""
    if act not in ACTIVATIONS or act == "dropout":
        raise ValueError(f"unknown activation {act!r}; choose one of "
                         f"{', '.join(repr(a) for a in ACTIVATIONS if a != 'dropout')}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    x = sample(distribution, (n,), generator).requires_grad_(True)
    y = activation_fn(act)(x)
    (dy,) = torch.autograd.grad(y.sum(), x) if y.requires_grad else (torch.zeros_like(x),)
    r_f = y.detach().var(unbiased=False) / x.detach().var(unbiased=False)  # R_f = Var[g(x)]/Var[x]
    return float(r_f), float(dy.square().mean())


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
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 2:
        raise ValueError(f"batch must be an integer >= 2, got {batch!r}")
    x = (sigma * torch.randn(batch, features, generator=generator, dtype=torch.float64)).requires_grad_(True)
    g = torch.randn(batch, features, generator=generator, dtype=torch.float64)
    y = (x - x.mean(dim=0)) / x.var(dim=0, unbiased=False).sqrt()  # BatchNorm as in the paper, no ε
    (gx,) = torch.autograd.grad(y, x, g)
    r_b = gx.var(dim=0, unbiased=False) / g.var(dim=0, unbiased=False)
    return batch * (1 - x.detach().var(dim=0, unbiased=False) * r_b)


def operator_table(batches=(8, 32, 128, 512), samples: int = 65536, features: int = 4096, sigma: float = 2.0,
                   generator: torch.Generator | None = None):
    """The table of single-operator ratios, theory beside measurement (a pandas DataFrame).

    Inputs are standard Gaussian with ``samples`` rows: a linear map W (512×256, He init), ReLU
    on 64 features, a 2×2 max-pool on 16×8×8 feature maps (``samples``/16 images). BatchNorm is
    measured per feature, as Prop. B.8 states it, on x ~ N(0, σ²) in batches of B (``batches``)
    with ``features`` features: R_f = 1/σ_x² and R_b = (1/σ_x²)(1 − z/B) with σ_x² each feature's
    batch variance; the table lists σ_x²·R_f and σ_x²·R_b (the paper's 1 and 1 − E z/B with
    E z = 1) and the measured moments of z beside the exact ones (:func:`batchnorm_z_moments`).
    """
    import pandas as pd

    _positive(samples=samples, features=features)
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


def batchnorm_z_moments(batch: int) -> tuple[float, float]:
    """Exact (E z, Var z) of Prop. B.8's z for Gaussian x and ∂ℓ/∂y: z = B ρ̂², ρ̂ the sample
    correlation of two independent Gaussian samples of size B, ρ̂² ~ Beta(½, (B−2)/2). So
    E z = B/(B−1) and Var z = 2B²(B−2)/((B−1)²(B+1)), the paper's 1 and 2 up to O(1/B)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 3:
        raise ValueError(f"batch must be an integer >= 3, got {batch!r}")
    b = batch
    return b / (b - 1), 2 * b * b * (b - 2) / ((b - 1) ** 2 * (b + 1))


# ---------------------------------------------------------------- Proposition B.17
class ResidualBlock(nn.Module):
    """y = x + F(x)/√L with the branch F = BN ∘ W_2 ∘ act ∘ BN ∘ W_1 (a 2-layer plain network;
    ``scale`` = 1/√L, Balduzzi et al.'s 1/√L initialization written as in Prop. B.17)."""

    def __init__(self, width: int, scale: float, act: str = "relu", generator: torch.Generator | None = None):
        super().__init__()
        self.scale = scale
        self.branch = nn.Sequential(init_weights_(nn.Linear(width, width, bias=False), "he", act, generator),
                                    nn.BatchNorm1d(width), _activation(act),
                                    init_weights_(nn.Linear(width, width, bias=False), "he", act, generator),
                                    nn.BatchNorm1d(width))

    def forward(self, x):
        return x + self.scale * self.branch(x)


def _positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def scaled_residual_net(blocks: int, width: int = 128, act: str = "relu",
                        generator: torch.Generator | None = None) -> nn.Sequential:
    """L = ``blocks`` residual blocks y = x + F(x)/√L (:class:`ResidualBlock`), 2L weight layers."""
    _positive(blocks=blocks, width=width)
    return nn.Sequential(*[ResidualBlock(width, 1 / math.sqrt(blocks), act, generator) for _ in range(blocks)])


def plain_net(layers: int, width: int = 128, act: str = "relu", generator: torch.Generator | None = None) -> nn.Sequential:
    """A plain network of ``layers`` × (Linear (He init) -> BatchNorm -> act), no skips."""
    _positive(layers=layers, width=width)
    body = []
    for _ in range(layers):
        body += [init_weights_(nn.Linear(width, width, bias=False), "he", act, generator), nn.BatchNorm1d(width),
                 _activation(act)]
    return nn.Sequential(*body)


def network_ratios(net: nn.Module, repeats: int = 4, batch: int = 128,
                   generator: torch.Generator | None = None) -> tuple[float, float]:
    """Whole-network (R_f, R_b), averaged over ``repeats`` input batches x ~ N(0, I_d) with output
    gradients ∂ℓ/∂y ~ N(0, I_d/d) (the network's weights stay fixed, as Remark B.2 asks)."""
    _positive(repeats=repeats, batch=batch)
    width = next(m for m in net.modules() if isinstance(m, nn.Linear)).in_features
    rf, rb = [], []
    for _ in range(repeats):
        x = torch.randn(batch, width, generator=generator)
        g = torch.randn(batch, width, generator=generator) / math.sqrt(width)
        f, b = scaling_ratios(net, x, g)
        rf.append(f)
        rb.append(b)
    return float(np.mean(rf)), float(np.mean(rb))


def block_ratios(block: ResidualBlock, x: torch.Tensor, grad_y: torch.Tensor) -> dict:
    """Proposition B.17 on one block y = x + F(x)/√L: the measured (R_f, R_b) of the block and of
    its branch F on the same x and ∂ℓ/∂y, and the proposition's prediction 1 + R(F)/L
    (L = 1/scale²; it assumes x and F(x), and the two backward paths, uncorrelated)."""
    if not isinstance(block, ResidualBlock):
        raise ValueError(f"block_ratios needs a ResidualBlock, got {type(block).__name__}")
    blocks = 1 / block.scale ** 2
    whole = scaling_ratios(block, x, grad_y)
    branch = scaling_ratios(block.branch, x, grad_y)
    return {"block": whole, "branch": branch,
            "predicted": (1 + branch[0] / blocks, 1 + branch[1] / blocks)}


def b17_sweep(blocks=(4, 8, 16, 32, 64), width: int = 128, repeats: int = 4, batch: int = 128,
              act: str = "relu", generator: torch.Generator | None = None):
    """Proposition B.17 across depth (a pandas DataFrame, one row per L in ``blocks``): whole-network
    (R_f, R_b) and R_b/R_f of L residual blocks y = x + F(x)/√L and of a plain network of the same
    2L weight layers (:func:`plain_net`), and, for the first residual block, the measured (R_f, R_b)
    beside the proposition's 1 + R(F)/L (:func:`block_ratios`). Fresh weights for every L."""
    import pandas as pd

    rows = []
    for L in blocks:
        _positive(blocks=L)
        res = scaled_residual_net(L, width, act, generator)
        plain = plain_net(2 * L, width, act, generator)
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
