"""Philipp, Song & Carbonell's measures of a network: the gradient scale coefficient (GSC), the
collapsing domain (pre-activation standard deviation, sign diversity) and dilution.

Notation. The network is a composition of layers; f_k is the output of layer k, treated as one
vector for the whole batch (BatchNorm couples the samples of a batch, so the batch is the
function's input). ``J`` is the Jacobian ∂f_l/∂f_k, with one column per entry of f_k.

- quadratic-mean norm          ‖A‖_qm = ‖A‖_F / √n  for A with n columns    (:func:`qm_norm`)
- gradient scale coefficient   GSC(k, l) = ‖J‖_qm · ‖f_k‖ / ‖f_l‖            (:func:`gsc_from_jacobian`)

GSC is the factor by which a small *relative* change of f_k changes f_l relatively, on average
over directions; it does not change when a layer's output is rescaled. ``gsc_exact`` builds J with
``torch.func.jacrev`` (small networks); ``gsc_profile`` estimates ‖J‖_F² = E_u ‖Jᵀu‖² with
Gaussian probes u, one backward pass for every layer at once (any size). With a scalar loss f_0,
J is a row and GSC(k, 0) = ‖∂f_0/∂f_k‖ ‖f_k‖ / (√n_k |f_0|) exactly, with no probes.

A residual block f = s + r (skip s, branch r) is k-diluted when ‖s‖/‖r‖ = k. If the Pythagorean
equation holds, ‖s + r‖² ≈ ‖s‖² + ‖r‖² and ‖J_s + J_r‖²_qm ≈ ‖J_s‖²_qm + ‖J_r‖²_qm, an identity skip
gives GSC(block)² = (k² + GSC(r)²) / (k² + 1) (:func:`dilution_prediction`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import jacrev, replace_all_batch_norm_modules_

from ..checks import positive_int
from ..networks.layers import Elementwise
from ..networks.mlp import PreActBlock
from .hooks import hooks, preserved_state, record, weight_layers

__all__ = ["qm_norm", "gsc_from_jacobian", "gsc_exact", "gsc_points", "gsc_profile", "GSCTracker",
           "activation_modules", "preactivation_std", "sign_diversity", "DomainStats", "domain_stats",
           "dilution", "dilution_prediction", "ResidualCheck", "residual_check", "residual_checks",
           "pseudo_linearity", "input_cosine", "pythagorean_cross_term"]


def qm_norm(a: torch.Tensor) -> torch.Tensor:
    """‖A‖_qm = ‖A‖_F / √n, n = the number of columns (last dimension) of ``a``: the root mean
    square gain of A on a random direction. For a vector it is its quadratic mean."""
    if a.dim() == 0 or a.shape[-1] == 0:
        raise ValueError(f"qm_norm needs a vector or matrix with at least one column, got shape {tuple(a.shape)}")
    return a.norm() / math.sqrt(a.shape[-1])


def gsc_from_jacobian(jacobian: torch.Tensor, f_k: torch.Tensor, f_l: torch.Tensor) -> torch.Tensor:
    """GSC(k, l) = ‖J‖_qm ‖f_k‖ / ‖f_l‖ for the Jacobian J = ∂f_l/∂f_k given as a matrix
    [numel(f_l), numel(f_k)] (or any shape whose trailing part is f_k's shape)."""
    n_k, n_l = f_k.numel(), f_l.numel()
    if jacobian.numel() != n_k * n_l:
        raise ValueError(f"jacobian has {jacobian.numel()} entries but f_l and f_k have {n_l} and {n_k}")
    return qm_norm(jacobian.reshape(n_l, n_k)) * f_k.norm() / f_l.norm()


def _module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise ValueError(f"{type(module).__name__} is not a submodule of the model")


def _outputs(model, x, modules):
    """Run the model once, returning its output and the outputs of ``modules`` (graph kept)."""
    with record(model, modules, gradients=False, detach=False) as rec:
        out = model(x)
    if any(s is None for s in rec.activations):
        raise ValueError("some modules were not called in the forward pass")
    return out, rec.activations


def gsc_exact(model: nn.Module, x: torch.Tensor, source: nn.Module, target: nn.Module | None = None,
              loss=None) -> float:
    """GSC(k, l) exactly, from the full Jacobian of the batch map f_k -> f_l (``torch.func.jacrev``).

    f_k is the output of ``source``; f_l the output of ``target`` (default: the model's output);
    with ``loss`` (a function of the model's output to a scalar) f_l is that scalar f_0. The
    Jacobian has numel(f_l) × numel(f_k) entries: for small networks and batches only.
    In training mode BatchNorm uses the batch's statistics (its running statistics are not touched).
    """
    if target is not None and loss is not None:
        raise ValueError("give target or loss, not both")
    work = copy.deepcopy(model)
    if work.training:
        replace_all_batch_norm_modules_(work)  # batch statistics, no running-statistics update
    named = dict(work.named_modules())
    src = named[_module_name(model, source)]
    tgt = named[_module_name(model, target)] if target is not None else None
    with torch.no_grad():
        out, (f_k,) = _outputs(work, x, [src])
        f_l = loss(out) if loss is not None else (_outputs(work, x, [tgt])[1][0] if tgt is not None else out)

    def f(z):
        with hooks([src], lambda i, inputs, output: z):
            if tgt is None:
                y = work(x)
                return loss(y) if loss is not None else y
            return _outputs(work, x, [tgt])[1][0]

    jac = jacrev(f)(f_k.detach())
    return float(gsc_from_jacobian(jac.detach(), f_k, f_l.detach().reshape(-1)))


def gsc_points(model: nn.Module) -> tuple[list[nn.Module], list[int]]:
    """Where Figure 1A measures GSC, and the depth of each point in linear layers from the input:
    every Linear of a plain network; the stem, every block's output and the head of a residual
    network (the residual stream, not the branches' inner layers)."""
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    linears = weight_layers(model)
    if not blocks:
        return linears, list(range(1, len(linears) + 1))
    modules = [linears[0]] + blocks + [linears[-1]]
    return modules, [1] + [1 + 2 * (b + 1) for b in range(len(blocks))] + [len(linears)]


def gsc_profile(model: nn.Module, x: torch.Tensor, modules: list[nn.Module] | None = None,
                target: nn.Module | None = None, loss=None, probes: int = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """GSC(k, l) for every module k in ``modules`` (default: every Linear, input to output) from
    one forward pass, by hooks.

    Reference layer l: the model's output (default), the output of ``target``, or the scalar
    ``loss(output)`` (then exact: one backward pass). Otherwise ‖J‖²_F is estimated as the mean of
    ‖Jᵀu‖² over ``probes`` Gaussian vectors u ~ N(0, I) drawn from ``generator``; the relative
    error of one probe is about √(2/rank J), ~1% for a batch of 100 at width 100. Parameters'
    ``.grad`` and BatchNorm's running statistics are left untouched.
    """
    positive_int("probes", probes)
    if target is not None and loss is not None:
        raise ValueError("give target or loss, not both")
    modules = weight_layers(model) if modules is None else list(modules)
    with preserved_state(model), torch.enable_grad():
        watched = modules + ([target] if target is not None else [])
        out, seen = _outputs(model, x, watched)
        feats = seen[:len(modules)]
        ref = seen[-1] if target is not None else out
        if loss is not None:
            f0 = loss(out)
            if f0.numel() != 1:
                raise ValueError(f"loss must return a scalar, got shape {tuple(f0.shape)}")
            grads = torch.autograd.grad(f0, feats, allow_unused=True)
            sq = [torch.zeros(()) if g is None else g.detach().pow(2).sum() for g in grads]
            ref_norm = f0.detach().abs().reshape(())
        else:
            sq = [0.0] * len(feats)
            for p in range(probes):
                u = torch.randn(ref.shape, generator=generator).to(ref.device)
                grads = torch.autograd.grad(ref, feats, u, retain_graph=p < probes - 1, allow_unused=True)
                sq = [s + (0.0 if g is None else g.detach().pow(2).sum()) for s, g in zip(sq, grads)]
            sq = [torch.as_tensor(s) / probes for s in sq]
            ref_norm = ref.detach().norm()
        values = [torch.sqrt(s / f.numel()) * f.detach().norm() / ref_norm for s, f in zip(sq, feats)]
    return torch.stack([torch.as_tensor(v, dtype=torch.float32).cpu() for v in values])


@dataclass
class GSCTracker:
    """A ``callback`` for :func:`gradprobe.train.loop.fit`: every ``every`` steps, record the GSC
    profile of the model on the fixed batch ``x`` (``gsc_profile`` with its defaults)."""

    x: torch.Tensor
    every: int = 10
    probes: int = 1
    generator: torch.Generator | None = None
    steps: list[int] = field(default_factory=list)
    profiles: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self):
        positive_int("every", self.every)

    def __call__(self, step, model, xb=None, yb=None, loss=None):
        if step % self.every == 0:
            self.steps.append(step)
            self.profiles.append(gsc_profile(model, self.x, probes=self.probes, generator=self.generator))

    def table(self) -> torch.Tensor:
        """[recorded steps, layers] GSC values."""
        return torch.stack(self.profiles) if self.profiles else torch.empty(0)


# --------------------------------------------------------------------------- collapsing domain
def activation_modules(model: nn.Module) -> list[nn.Module]:
    """The nonlinearity modules (:class:`~gradprobe.networks.layers.Elementwise`) of a network,
    input to output (identities, such as a residual network's stem, excluded)."""
    acts = [m for m in model.modules() if isinstance(m, Elementwise) and m.name != "identity"]
    if not acts:
        raise ValueError(f"{type(model).__name__} has no nonlinearity module to measure")
    return acts


def preactivation_std(z: torch.Tensor) -> torch.Tensor:
    """Per unit, the standard deviation of its pre-activation across the inputs (dimension 0),
    averaged over units. Small values: every input sees nearly the same, nearly linear, piece of
    the nonlinearity (the collapsing domain)."""
    if z.dim() < 2 or z.shape[0] < 2:
        raise ValueError(f"need a batch of at least 2 inputs [N, units], got shape {tuple(z.shape)}")
    return z.flatten(1).std(dim=0, unbiased=False).mean()


def sign_diversity(z: torch.Tensor) -> torch.Tensor:
    """Per unit, min(P, N) / (P + N) with P and N the numbers of inputs (dimension 0) for which
    its pre-activation is positive and negative, averaged over units. 0.5 for a unit that splits
    the inputs evenly; 0 when all inputs fall on one side of a ReLU (it acts linearly)."""
    if z.dim() < 2:
        raise ValueError(f"need a batch of inputs [N, units], got shape {tuple(z.shape)}")
    z = z.flatten(1)
    pos, neg = (z > 0).sum(0).float(), (z < 0).sum(0).float()
    return (torch.minimum(pos, neg) / (pos + neg).clamp_min(1)).mean()


def pseudo_linearity(z: torch.Tensor, fn) -> torch.Tensor:
    """How far the elementwise function ``fn`` is from linear on the pre-activations ``z``
    [N, units] of a batch: per unit, the root mean square residual of the best linear fit
    a + b·z to fn(z) across the inputs, divided by the root mean square of z, averaged over units.
    0: the unit acts linearly on these inputs (Philipp et al.'s pseudo-linearity, their Figure 5);
    ReLU on N(0, 1) inputs gives √(1/2 − 1/(2π) − 1/4) ≈ 0.30 for a large batch, tanh on N(0, 1)
    about 0.17. Scale-free for ReLU; computed in float64."""
    if z.dim() < 2 or z.shape[0] < 3:
        raise ValueError(f"need a batch of at least 3 inputs [N, units], got shape {tuple(z.shape)}")
    z = z.flatten(1).double()
    a = fn(z)
    zc, ac = z - z.mean(0), a - a.mean(0)
    vz, va, cov = zc.pow(2).mean(0), ac.pow(2).mean(0), (zc * ac).mean(0)
    residual = torch.where(vz > 0, va - cov ** 2 / vz.clamp_min(1e-300), va).clamp_min(0)
    scale = z.pow(2).mean(0).sqrt()
    return torch.where(scale > 0, residual.sqrt() / scale.clamp_min(1e-300), torch.zeros_like(scale)).mean().float()


def input_cosine(z: torch.Tensor) -> torch.Tensor:
    """The mean cosine similarity between the vectors of two different inputs of the batch ``z``
    [N, ...] (rows): 0 for independent high-dimensional inputs, 1 when every input is mapped to the
    same direction (a collapsed domain). Computed in float64."""
    if z.dim() < 2 or z.shape[0] < 2:
        raise ValueError(f"need a batch of at least 2 inputs, got shape {tuple(z.shape)}")
    u = z.flatten(1).double()
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    n = u.shape[0]
    return ((u.sum(0).pow(2).sum() - u.pow(2).sum()) / (n * (n - 1))).float()


@dataclass(frozen=True)
class DomainStats:
    """Per nonlinearity layer (input to output): pre-activation standard deviation, sign
    diversity and quadratic mean over all entries (the forward scale); with
    ``domain_stats(..., geometry=True)`` also the :func:`pseudo_linearity` of the nonlinearity and
    the :func:`input_cosine` of its pre-activations (else None)."""

    std: torch.Tensor
    sign_diversity: torch.Tensor
    qm: torch.Tensor
    pseudo_linearity: torch.Tensor | None = None
    cosine: torch.Tensor | None = None


@torch.no_grad()
def domain_stats(model: nn.Module, x: torch.Tensor, geometry: bool = False) -> DomainStats:
    """:func:`preactivation_std`, :func:`sign_diversity` and the root mean square of the input of
    every nonlinearity of ``model`` on the batch ``x`` (BatchNorm's running statistics kept); with
    ``geometry=True`` also :func:`pseudo_linearity` and :func:`input_cosine`."""
    acts = activation_modules(model)
    with record(model, acts, inputs=True) as rec, preserved_state(model):
        model(x)
    seen = rec.inputs
    extra = {}
    if geometry:
        extra = dict(pseudo_linearity=torch.stack([pseudo_linearity(z, m.fn) for m, z in zip(acts, seen)]).cpu(),
                     cosine=torch.stack([input_cosine(z) for z in seen]).cpu())
    return DomainStats(std=torch.stack([preactivation_std(z) for z in seen]).cpu(),
                       sign_diversity=torch.stack([sign_diversity(z) for z in seen]).cpu(),
                       qm=torch.stack([z.pow(2).mean().sqrt() for z in seen]).cpu(), **extra)


# --------------------------------------------------------------------------- dilution
def dilution(skip: torch.Tensor, residual: torch.Tensor) -> float:
    """k = ‖s‖ / ‖r‖: a block f = s + r is k-diluted."""
    r = float(residual.norm())
    if r == 0:
        raise ValueError("the residual branch is zero: dilution is infinite")
    return float(skip.norm()) / r


def dilution_prediction(k, gsc_residual):
    """GSC of a k-diluted block with an identity skip, from the Pythagorean equation:
    √((k² + GSC(r)²) / (k² + 1)). Works on floats and tensors."""
    return ((k ** 2 + gsc_residual ** 2) / (k ** 2 + 1)) ** 0.5


@dataclass(frozen=True)
class ResidualCheck:
    """One block f = x + r(x): dilution k = ‖x‖/‖r‖; Pythagorean errors
    ‖s+r‖²/(‖s‖²+‖r‖²) − 1 (forward) and ‖J_s+J_r‖²_qm/(1 + ‖J_r‖²_qm) − 1 (Jacobian); the
    block's and the branch's GSC, and the block GSC that :func:`dilution_prediction` predicts."""

    k: float
    forward_error: float
    jacobian_error: float
    gsc_block: float
    gsc_residual: float
    gsc_predicted: float


def residual_check(residual, x: torch.Tensor, probes: int = 4, generator: torch.Generator | None = None) -> ResidualCheck:
    """Check the residual trick on the block f(x) = x + residual(x) at the batch ``x``.

    ‖J‖²_F of the branch and of the block are estimated with the same ``probes`` Gaussian
    vectors u (``Jᵀu`` by one backward pass each); the skip's Jacobian is the identity
    (‖J_s‖_qm = 1 exactly). Wrap the call in :func:`~gradprobe.measure.hooks.preserved_state` if
    the branch has BatchNorm in training mode.
    """
    positive_int("probes", probes)
    with torch.enable_grad():
        xs = x.detach().requires_grad_(True)
        r = residual(xs)
        if r.shape != xs.shape:
            raise ValueError(f"an identity skip needs r(x) of x's shape {tuple(xs.shape)}, got {tuple(r.shape)}")
        ju, jr, jb = 0.0, 0.0, 0.0
        for p in range(probes):
            u = torch.randn(r.shape, generator=generator).to(r.device)
            (g,) = torch.autograd.grad(r, xs, u, retain_graph=p < probes - 1)
            ju += float(u.pow(2).sum()) / probes
            jr += float(g.pow(2).sum()) / probes
            jb += float((g + u).pow(2).sum()) / probes
    n = xs.numel()
    cross = jb / (ju + jr) - 1                     # 2⟨u, J_rᵀu⟩ / (‖u‖² + ‖J_rᵀu‖²): the Pythagorean error
    jr, jb = jr / n, jb / n                        # squared qm norms of J_r and J_s + J_r
    xs, r = xs.detach(), r.detach()
    s2, r2, f2 = float(xs.pow(2).sum()), float(r.pow(2).sum()), float((xs + r).pow(2).sum())
    k = math.sqrt(s2 / r2)
    g_res = math.sqrt(jr * s2 / r2)
    g_block = math.sqrt(jb * s2 / f2)
    return ResidualCheck(k=k, forward_error=f2 / (s2 + r2) - 1, jacobian_error=cross,
                         gsc_block=g_block, gsc_residual=g_res, gsc_predicted=float(dilution_prediction(k, g_res)))


def residual_checks(model: nn.Module, x: torch.Tensor, probes: int = 4,
                    generator: torch.Generator | None = None) -> list[ResidualCheck]:
    """:func:`residual_check` for every :class:`gradprobe.networks.mlp.PreActBlock` of ``model``
    (input to output), each at the input it receives when ``model`` runs on ``x``."""
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no PreActBlock (build it with residual='preact')")
    with record(model, blocks, inputs=True) as rec, preserved_state(model), torch.no_grad():
        model(x)
    with preserved_state(model):
        return [residual_check(b.residual, z, probes, generator) for b, z in zip(blocks, rec.inputs)]


def pythagorean_cross_term(skip: torch.Tensor, hidden: torch.Tensor, residual: torch.Tensor) -> tuple[float, float]:
    """The cross term of the Pythagorean equation ‖s + r‖² = ‖s‖² + ‖r‖² + 2⟨s, r⟩ of a residual
    block whose branch ends in a linear map, r = W h (rows: inputs of the batch): returns
    ``(cos, d_eff)`` with cos = ⟨s, r⟩/(‖s‖ ‖r‖) and the effective dimension
    d_eff = n_out ‖s‖² ‖h‖² / ‖sᵀh‖²_F (n_out: the width of r).

    If W has independent zero-mean Gaussian entries of variance σ², independent of s and h (as at
    initialization), then given s and h, ⟨s, r⟩ = ⟨W, sᵀh⟩ is Gaussian with mean 0 and variance
    σ²‖sᵀh‖²_F, and E‖r‖² = σ² n_out ‖h‖², so cos is close to N(0, 1/d_eff): the Pythagorean error
    ‖s+r‖²/(‖s‖²+‖r‖²) − 1 = 2 cos·k/(k² + 1) (k = ‖s‖/‖r‖) is unbiased, with a spread set by
    d_eff. d_eff is n_out·N when the N inputs' vectors are unrelated and n_out when they are all
    parallel (a collapsed domain)."""
    s, h, r = skip.flatten(1).double(), hidden.flatten(1).double(), residual.flatten(1).double()
    if not (s.shape == r.shape and h.shape[0] == s.shape[0]):
        raise ValueError(f"skip and residual must have the same shape and hidden as many rows, got "
                         f"{tuple(skip.shape)}, {tuple(residual.shape)} and {tuple(hidden.shape)}")
    cos = float((s * r).sum() / (s.norm() * r.norm()))
    d_eff = float(r.shape[1] * s.pow(2).sum() * h.pow(2).sum() / (s.T @ h).pow(2).sum())
    return cos, d_eff
