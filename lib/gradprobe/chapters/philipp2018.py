"""Chapter *The exploding gradient problem demystified* (Philipp, Song & Carbonell 2018): the
architectures of its Figure 1 and the survey of each at initialization (GSC, collapsing domain,
residual trick)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import int_at_least, one_of, positive_int
from ..measure.gsc import ResidualCheck, domain_stats, gsc_points, gsc_profile, residual_checks
from ..measure.rates import fit_rate
from ..networks.mlp import PreActBlock, mlp

__all__ = ["ARCHITECTURES", "architecture", "InitSurvey", "init_survey"]

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


def init_survey(name: str, seeds: int, linear_layers: int = 50, width: int = 100, batch: int = 100, probes: int = 1,
                data: torch.Generator | None = None, weights: torch.Generator | None = None,
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
