"""Forward and backward scaling ratios of single operators, as the ghost paper states them
(ghost 2024, Appendix B).

For an operator y = π(x) with input x, output-gradient ∂ℓ/∂y and input-gradient ∂ℓ/∂x,

    R_f(π) = Var[y] / Var[x],      R_b(π) = Var[∂ℓ/∂x] / Var[∂ℓ/∂y]          (Definition B.1)

where Var[·] is the mean over features of the per-feature variance over the samples (the batch;
measured by :func:`gradprobe.measure.stats.scaling_ratios`). :func:`theory_ratios` gives the
paper's values for a linear map (Prop. B.4), BatchNorm (Prop. B.8), ReLU (Prop. B.12) and a 2×2
max-pool (Remark B.16), and for a 2×2 average pool (a linear map, Prop. B.4, for contrast);
:func:`batchnorm_z_moments` the exact moments of Prop. B.8's z.
"""
from __future__ import annotations

import torch

from ..checks import int_at_least, is_int, one_of
from .gaussian import backward_ratio, forward_ratio, max_of_gaussians_variance

__all__ = ["OPERATORS", "theory_ratios", "batchnorm_z_moments"]

OPERATORS = ("linear", "batchnorm", "relu", "maxpool2x2", "avgpool2x2")


def theory_ratios(operator: str, *, weight: torch.Tensor | None = None, sigma: float = 1.0,
                  batch: int | None = None) -> tuple[float, float]:
    """The paper's (R_f, R_b) for standard Gaussian input (variance σ² for BatchNorm):

    - ``linear`` (``weight`` W of shape D×d): (‖W‖²_F / D, ‖W‖²_F / d)          Prop. B.4
    - ``batchnorm`` (``sigma``, ``batch`` B): (1/σ², (1/σ²)(1 − E z/B)), E z = 1   Prop. B.8
    - ``relu``: (½(1 − 1/π), ½)                                               Prop. B.12
    - ``maxpool2x2``: (Var[max of 4 iid N(0,1)] ≈ 0.492, ¼)                   Remark B.16
    - ``avgpool2x2``: (¼, 1/16), the mean of 4 iid inputs: W = (¼, ¼, ¼, ¼), D = 1, d = 4 in Prop. B.4
    """
    one_of("operator", operator, OPERATORS)
    if operator == "linear":
        if weight is None or weight.dim() != 2:
            raise ValueError("the linear operator needs weight=W, a 2-d tensor of shape (D, d)")
        fro2 = float(weight.double().square().sum())
        return fro2 / weight.shape[0], fro2 / weight.shape[1]
    if operator == "batchnorm":
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if not is_int(batch) or batch < 2:
            raise ValueError(f"the batchnorm operator needs batch=B, an integer >= 2, got {batch!r}")
        return 1 / sigma**2, (1 - 1 / batch) / sigma**2
    if operator == "relu":
        return forward_ratio("relu"), backward_ratio("relu")
    if operator == "avgpool2x2":
        return 0.25, 0.0625
    return max_of_gaussians_variance(4), 0.25


def batchnorm_z_moments(batch: int) -> tuple[float, float]:
    """Exact (E z, Var z) of Prop. B.8's z for Gaussian x and ∂ℓ/∂y: z = B ρ̂², ρ̂ the sample
    correlation of two independent Gaussian samples of size B, ρ̂² ~ Beta(½, (B−2)/2). So
    E z = B/(B−1) and Var z = 2B²(B−2)/((B−1)²(B+1)), the paper's 1 and 2 up to O(1/B)."""
    b = int_at_least("batch", batch, 3)
    return b / (b - 1), 2 * b * b * (b - 2) / ((b - 1) ** 2 * (b + 1))
