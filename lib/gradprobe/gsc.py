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

import contextlib
import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import jacrev, replace_all_batch_norm_modules_

from .measure import weight_layers
from .models import PreActBlock, _Elementwise

__all__ = ["ARCHITECTURES", "architecture", "gsc_points", "rate_per_layer", "InitSurvey", "init_survey", "qm_norm", "gsc_from_jacobian", "gsc_exact", "gsc_profile", "GSCTracker", "preserved_buffers",
           "activation_modules", "preactivation_std", "sign_diversity", "DomainStats", "domain_stats",
           "dilution", "dilution_prediction", "ResidualCheck", "residual_check", "residual_checks"]


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


@contextlib.contextmanager
def preserved_buffers(model: nn.Module):
    """Restore every buffer (BatchNorm's running statistics) on exit, so that measuring a network
    in training mode leaves it as it was."""
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        yield model
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved[name])


def _module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise ValueError(f"{type(module).__name__} is not a submodule of the model")


def _outputs(model, x, modules):
    """Run the model once, returning its output and the outputs of ``modules`` (graph kept)."""
    seen = [None] * len(modules)

    def hook(i):
        def fn(module, inputs, output):
            seen[i] = output
        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    if any(s is None for s in seen):
        raise ValueError("some modules were not called in the forward pass")
    return out, seen


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
        handle = src.register_forward_hook(lambda m, i, o: z)
        try:
            if tgt is None:
                y = work(x)
                return loss(y) if loss is not None else y
            return _outputs(work, x, [tgt])[1][0]
        finally:
            handle.remove()

    jac = jacrev(f)(f_k.detach())
    return float(gsc_from_jacobian(jac.detach(), f_k, f_l.detach().reshape(-1)))


# The architectures of Philipp et al.'s Figure 1 (kwargs of gradprobe.models.mlp); "layer-"/"batch-"
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
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if isinstance(linear_layers, bool) or not isinstance(linear_layers, int) or linear_layers < 2:
        raise ValueError(f"linear_layers must be an integer >= 2, got {linear_layers!r}")
    from .models import mlp
    return mlp(linear_layers - 1, width, in_dim=in_dim, out_dim=width if out_dim is None else out_dim,
               generator=generator, **ARCHITECTURES[name])


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
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be a positive integer, got {probes!r}")
    if target is not None and loss is not None:
        raise ValueError("give target or loss, not both")
    modules = weight_layers(model) if modules is None else list(modules)
    with preserved_buffers(model), torch.enable_grad():
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
    """A ``callback`` for :func:`gradprobe.train.fit`: every ``every`` steps, record the GSC
    profile of the model on the fixed batch ``x`` (``gsc_profile`` with its defaults)."""

    x: torch.Tensor
    every: int = 10
    probes: int = 1
    generator: torch.Generator | None = None
    steps: list[int] = field(default_factory=list)
    profiles: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self):
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive integer, got {self.every!r}")

    def __call__(self, step, model, xb=None, yb=None, loss=None):
        if step % self.every == 0:
            self.steps.append(step)
            self.profiles.append(gsc_profile(model, self.x, probes=self.probes, generator=self.generator))

    def table(self) -> torch.Tensor:
        """[recorded steps, layers] GSC values."""
        return torch.stack(self.profiles) if self.profiles else torch.empty(0)


def rate_per_layer(values, depths) -> float:
    """The growth per linear layer toward the input: exp(−slope) of the least-squares line of
    log(values) against ``depths`` (values listed input to output). > 1: GSC explodes."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    d = torch.as_tensor(depths, dtype=torch.float64).flatten()
    if v.numel() != d.numel() or v.numel() < 2:
        raise ValueError(f"need one value per depth and at least 2, got {v.numel()} values and {d.numel()} depths")
    if not bool(torch.isfinite(v).all()) or bool((v <= 0).any()):
        raise ValueError("values must be finite and positive (their logarithm is fitted)")
    y, dc = v.log(), d - d.mean()
    slope = float((dc * (y - y.mean())).sum() / (dc * dc).sum())
    return math.exp(-slope)


@dataclass
class InitSurvey:
    """Figure 1 for one architecture: per seed (rows), GSC(l, output) at ``depths`` (linear layers
    from the input), the :class:`DomainStats` per nonlinearity layer, and for residual networks
    the :class:`ResidualCheck` of every block (else an empty list per seed)."""

    name: str
    depths: list[int]
    gsc: torch.Tensor
    std: torch.Tensor
    sign_diversity: torch.Tensor
    qm: torch.Tensor
    blocks: list[list[ResidualCheck]]

    @property
    def rates(self) -> torch.Tensor:
        """GSC growth per linear layer toward the input, per seed (:func:`rate_per_layer`)."""
        return torch.tensor([rate_per_layer(g, self.depths) for g in self.gsc])

    def block_values(self, field_name: str) -> torch.Tensor:
        """[seeds, blocks] of one :class:`ResidualCheck` field."""
        return torch.tensor([[getattr(c, field_name) for c in checks] for checks in self.blocks])


def init_survey(name: str, seeds: int, linear_layers: int = 50, width: int = 100, batch: int = 100, probes: int = 1,
                data: torch.Generator | None = None, weights: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> InitSurvey:
    """Philipp et al.'s Figure 1 measurements of architecture ``name`` at initialization on
    Gaussian noise x ~ N(0, I) [batch, width], for ``seeds`` fresh networks and inputs (weights
    from ``weights``, inputs and probes from ``data``). Networks run in training mode."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
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


# --------------------------------------------------------------------------- collapsing domain
def activation_modules(model: nn.Module) -> list[nn.Module]:
    """The nonlinearity modules of a ``gradprobe.models`` network, input to output (identities,
    such as a residual network's stem, excluded)."""
    acts = [m for m in model.modules() if isinstance(m, _Elementwise) and m.name != "identity"]
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


@dataclass(frozen=True)
class DomainStats:
    """Per nonlinearity layer (input to output): pre-activation standard deviation, sign
    diversity and quadratic mean over all entries (the forward scale)."""

    std: torch.Tensor
    sign_diversity: torch.Tensor
    qm: torch.Tensor


@torch.no_grad()
def domain_stats(model: nn.Module, x: torch.Tensor) -> DomainStats:
    """:func:`preactivation_std`, :func:`sign_diversity` and the root mean square of the input of
    every nonlinearity of ``model`` on the batch ``x`` (BatchNorm's running statistics kept)."""
    acts = activation_modules(model)
    seen = [None] * len(acts)
    handles = [m.register_forward_pre_hook(lambda m, inp, i=i: seen.__setitem__(i, inp[0].detach()))
               for i, m in enumerate(acts)]
    try:
        with preserved_buffers(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return DomainStats(std=torch.stack([preactivation_std(z) for z in seen]).cpu(),
                       sign_diversity=torch.stack([sign_diversity(z) for z in seen]).cpu(),
                       qm=torch.stack([z.pow(2).mean().sqrt() for z in seen]).cpu())


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
    (‖J_s‖_qm = 1 exactly). Wrap the call in :func:`preserved_buffers` if the branch has
    BatchNorm in training mode.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be a positive integer, got {probes!r}")
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
    """:func:`residual_check` for every :class:`gradprobe.models.PreActBlock` of ``model``
    (input to output), each at the input it receives when ``model`` runs on ``x``."""
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no PreActBlock (build it with residual='preact')")
    inputs = [None] * len(blocks)
    handles = [b.register_forward_pre_hook(lambda m, inp, i=i: inputs.__setitem__(i, inp[0].detach()))
               for i, b in enumerate(blocks)]
    try:
        with preserved_buffers(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    with preserved_buffers(model):
        return [residual_check(b.residual, z, probes, generator) for b, z in zip(blocks, inputs)]
