"""Layer-wise learning-rate rules as ``torch.optim`` optimizers, a linear warm-up, and a runner
that compares them on CIFAR-10 in parallel processes.

Every rule here treats one parameter tensor as one "layer" and scales its step by the ratio of
the weight norm to the gradient norm (the *trust ratio*). With γ the global learning rate, η the
trust coefficient, β the weight decay, μ the momentum, g = ∇L(w) and w the layer's weights:

- :class:`LARS` (You, Gitman & Ginsburg 2017): local lr λ = η‖w‖/(‖g‖ + β‖w‖),
  v ← μv + γλ(g + βw), w ← w − v. The step is always scaled (up or down) to η‖w‖-size.
- :class:`LARC` (NVIDIA apex's LARC): λ = η‖w‖/(‖g‖ + β‖w‖); *clip* mode uses min(λ, γ) as the
  layer's lr, *scale* mode γλ; then SGD with momentum on (g + βw).
- :class:`LAMB` (You et al. 2020): Adam moments m̂, v̂; u = m̂/(√v̂ + ε) + βw;
  w ← w − γ·(‖w‖/‖u‖)·u.
- :class:`LALC`, *layer-wise asymmetric learning-rate clipping* (Paik & Choi 2023). The paper's
  algorithm is not available to this book; this is a **reconstruction** from its name and its
  theory: the layer's lr is γ_l = min(γ, η‖w‖/‖g + βw‖), so no layer's gradient step is larger
  than the fraction η of its weight norm (early layers, whose gradients are exploded at
  initialization, are clipped), while no layer's lr is ever raised above γ (asymmetric: clip down,
  never up; LARS scales both ways). Then SGD with momentum. As reconstructed it coincides with
  LARC's clip mode (without weight decay; with it, LALC takes the norm of g + βw); the tests
  check that equality.

Parameters with at most one dimension (biases, BatchNorm's γ and β) keep the global lr and get no
weight decay when ``exclude_1d=True`` (the default of every rule here), as in common LARS and LAMB
practice. A layer whose weight or gradient norm is zero keeps the global lr (trust ratio 1).

:func:`linear_warmup` is a schedule for :func:`gradprobe.train.fit` (or ``LambdaLR``).
:class:`Trial` and :func:`run_trials` train a BN network on CIFAR-10 with one rule per trial,
trials spread over processes with one thread each (deterministic whatever the process count).
"""
from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim import Optimizer

__all__ = ["LARS", "LARC", "LAMB", "LALC", "OPTIMIZERS", "make_optimizer", "linear_warmup",
           "Trial", "TrialResult", "run_trial", "run_trials"]


def _check_nonnegative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_positive(name: str, value) -> None:
    _check_nonnegative(name, value)
    if value == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _trust(weight_norm: torch.Tensor, denominator: torch.Tensor, eta: float) -> torch.Tensor:
    """η‖w‖/denominator, or 1 when either norm is zero (an all-zero layer keeps the global lr)."""
    ok = (weight_norm > 0) & (denominator > 0)
    return torch.where(ok, eta * weight_norm / torch.where(ok, denominator, torch.ones_like(denominator)),
                       torch.ones_like(weight_norm))


def _layerwise(p: torch.Tensor, group: dict) -> bool:
    return not (group["exclude_1d"] and p.ndim <= 1)


class _SGDLike(Optimizer):
    """SGD with momentum where each layer's gradient is first multiplied by ``_local_lr``/γ."""

    def __init__(self, params, lr, momentum, weight_decay, trust_coefficient, eps, exclude_1d, **extra):
        _check_positive("lr", lr)
        _check_nonnegative("momentum", momentum)
        if momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        _check_nonnegative("weight_decay", weight_decay)
        _check_positive("trust_coefficient", trust_coefficient)
        _check_nonnegative("eps", eps)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, eps=eps, exclude_1d=bool(exclude_1d),
                                      **extra))

    def _local_lr(self, p, g, group) -> torch.Tensor:  # the layer's learning rate γ_l
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if _layerwise(p, group):
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    d = g * (self._local_lr(p, p.grad, group) / group["lr"])
                else:
                    d = g
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    d = state["momentum_buffer"]
                p.add_(d, alpha=-group["lr"])
        return loss


class LARS(_SGDLike):
    """LARS (You et al. 2017): each layer's lr is γ·η‖w‖/(‖g‖ + β‖w‖), up or down.

    v ← μv + γ·λ·(g + βw) with λ = η‖w‖/(‖g‖ + β‖w‖ + ε), then w ← w − v. The step of every
    layer has norm ≈ γη‖w‖ whatever its gradient's size. Defaults: η = 0.001 (the paper's).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 0.0, exclude_1d: bool = True):
        super().__init__(params, lr, momentum, weight_decay, trust_coefficient, eps, exclude_1d)

    def _local_lr(self, p, g, group):
        wn = p.norm()
        denom = g.norm() + group["weight_decay"] * wn + group["eps"]
        return group["lr"] * _trust(wn, denom, group["trust_coefficient"])


class LARC(_SGDLike):
    """LARC as in NVIDIA apex: λ = η‖w‖/(‖g‖ + β‖w‖ + ε); ``clip=True`` uses min(λ, γ) as the
    layer's lr (never above the global lr γ), ``clip=False`` uses γλ (LARS-like scaling).
    Then SGD with momentum on g + βw. Defaults: η = 0.02 and ε = 1e-8 (apex's)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.02, clip: bool = True, eps: float = 1e-8, exclude_1d: bool = True):
        super().__init__(params, lr, momentum, weight_decay, trust_coefficient, eps, exclude_1d, clip=bool(clip))

    def _local_lr(self, p, g, group):
        wn = p.norm()
        lam = _trust(wn, g.norm() + group["weight_decay"] * wn + group["eps"], group["trust_coefficient"])
        ok = (wn > 0) & (g.norm() > 0)
        if group["clip"]:
            return torch.where(ok, torch.clamp(lam, max=group["lr"]), torch.full_like(lam, group["lr"]))
        return torch.where(ok, group["lr"] * lam, torch.full_like(lam, group["lr"]))


class LALC(_SGDLike):
    """Layer-wise asymmetric learning-rate clipping, **as reconstructed in this book** (the paper's
    algorithm is not available): each layer's lr is

        γ_l = min(γ, η·‖w‖ / ‖g + βw‖),

    i.e. the gradient step of a layer is at most the fraction η of its weight norm, and a layer's lr
    is clipped down from the global γ but never raised above it. Then SGD with momentum μ. The one
    extra hyper-parameter is η (``trust_coefficient``, the largest relative step per iteration;
    default 0.02). Without weight decay it equals ``LARC(clip=True, eps=0)`` with the same η.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.02, exclude_1d: bool = True):
        super().__init__(params, lr, momentum, weight_decay, trust_coefficient, 0.0, exclude_1d)

    def _local_lr(self, p, g, group):
        wn = p.norm()
        gn = (g.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else g).norm()
        ok = (wn > 0) & (gn > 0)
        cap = group["trust_coefficient"] * wn / torch.where(ok, gn, torch.ones_like(gn))
        return torch.where(ok, torch.clamp(cap, max=group["lr"]), torch.full_like(cap, group["lr"]))


class LAMB(Optimizer):
    """LAMB (You et al. 2020): Adam's direction rescaled per layer to the weight norm.

    m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),
    u = m̂/(√v̂ + ε) + βw, w ← w − γ·(‖w‖/‖u‖)·u. Defaults: γ = 1e-3, betas (0.9, 0.999), ε = 1e-6.
    With ``exclude_1d`` the 1-d parameters take the plain Adam step γu (trust ratio 1).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, exclude_1d: bool = True):
        _check_positive("lr", lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        _check_positive("eps", eps)
        _check_nonnegative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      exclude_1d=bool(exclude_1d)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["exp_avg"].mul_(b1).add_(p.grad, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                u = (state["exp_avg"] / (1 - b1 ** t)) / ((state["exp_avg_sq"] / (1 - b2 ** t)).sqrt() + group["eps"])
                if _layerwise(p, group):
                    if group["weight_decay"]:
                        u = u.add(p, alpha=group["weight_decay"])
                    u = u * _trust(p.norm(), u.norm(), 1.0)
                p.add_(u, alpha=-group["lr"])
        return loss


OPTIMIZERS = ("sgd", "lars", "larc", "lamb", "lalc")


def make_optimizer(name: str, params, lr: float, **options) -> Optimizer:
    """An optimizer by name: ``"sgd"`` (torch's SGD, momentum 0.9 unless given), ``"lars"``,
    ``"larc"``, ``"lamb"`` or ``"lalc"``; ``options`` go to its constructor."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(map(repr, OPTIMIZERS))}")
    if name == "sgd":
        options.setdefault("momentum", 0.9)
        _check_positive("lr", lr)
        return torch.optim.SGD(params, lr=lr, **options)
    return {"lars": LARS, "larc": LARC, "lamb": LAMB, "lalc": LALC}[name](params, lr=lr, **options)


def linear_warmup(warmup_steps: int):
    """The schedule factor(step) = min(1, (step + 1)/warmup_steps) (Goyal et al. 2017's gradual
    warm-up, linear from γ/warmup_steps at step 0 to γ at step warmup_steps − 1), as a function of
    the step for :func:`gradprobe.train.fit` (``schedule=``) or ``torch.optim.lr_scheduler.LambdaLR``.
    ``warmup_steps=0`` means no warm-up (factor 1)."""
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    return functools.partial(_warmup_factor, warmup_steps)


def _warmup_factor(warmup_steps: int, step: int) -> float:
    return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)


# ----------------------------------------------------------------------------- comparing rules

@dataclass(frozen=True)
class Trial:
    """One training run: a BatchNorm-ReLU MLP (:func:`gradprobe.models.mlp` on flattened images)
    trained on a fixed CIFAR-10 subset with one optimizer. ``options`` are extra optimizer keyword
    arguments as ``(name, value)`` pairs; the data subset is drawn with ``data_seed`` (the same for
    every trial), weights and mini-batch order with ``seed``; ``device`` as :func:`gradprobe.device`."""

    optimizer: str
    lr: float
    seed: int
    steps: int
    batch_size: int
    warmup_steps: int = 0
    options: tuple = ()
    depth: int = 30
    width: int = 256
    n_train: int = 10000
    n_test: int = 2000
    data_seed: int = 0
    device: str = "cpu"
    label: str = ""

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(map(repr, OPTIMIZERS))}")
        for name in ("steps", "batch_size", "depth", "width", "n_train", "n_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Trial.{name} must be a positive integer, got {value!r}")


@dataclass
class TrialResult:
    """What a :class:`Trial` gave: final test accuracy and loss (a diverged run is evaluated as
    it stands, typically at chance), the mean training loss of the last 10% of steps, the step of
    divergence (None if none) and the per-step training loss."""

    trial: Trial
    test_accuracy: float
    test_loss: float
    final_train_loss: float
    diverged_at: int | None
    loss: list = field(default_factory=list)


@functools.lru_cache(maxsize=2)
def _data(n_train: int, n_test: int, data_seed: int):
    from .train import cifar10_tensors
    d = cifar10_tensors(n_train, n_test, "cpu", torch.Generator().manual_seed(data_seed))
    return d.train_x.flatten(1), d.train_y, d.test_x.flatten(1), d.test_y


def run_trial(trial: Trial) -> TrialResult:
    """Train one :class:`Trial` (on its ``device``; on the CPU with the current thread settings) and
    evaluate it on the test subset."""
    from . import models
    from .runtime import device as pick_device, seed as seed_all
    from .train import evaluate, fit

    torch.set_flush_denormal(True)
    train_x, train_y, test_x, test_y = _data(trial.n_train, trial.n_test, trial.data_seed)
    dev = pick_device(trial.device)
    train_x, train_y, test_x, test_y = (t.to(dev) for t in (train_x, train_y, test_x, test_y))
    gen = seed_all(trial.seed)
    net = models.mlp(trial.depth, trial.width, "relu", norm="batch", in_dim=train_x.shape[1], out_dim=10,
                     generator=gen.weights).to(dev)
    opt = make_optimizer(trial.optimizer, net.parameters(), trial.lr, **dict(trial.options))
    hist = fit(net, train_x, train_y, steps=trial.steps, batch_size=trial.batch_size, optimizer=opt,
               generator=gen.data, schedule=linear_warmup(trial.warmup_steps), diverge_above=1e3)
    test_loss, test_acc = evaluate(net, test_x, test_y)
    tail = hist.loss[-max(1, len(hist.loss) // 10):]
    final = math.nan if hist.diverged else sum(tail) / len(tail)
    return TrialResult(trial, test_acc, test_loss, final, hist.diverged_at, hist.loss)


def _run_one_thread(trial: Trial) -> TrialResult:
    torch.set_num_threads(1)
    return run_trial(trial)


def run_trials(trials, processes: int = 1) -> list[TrialResult]:
    """Run :class:`Trial` s, in order, in ``processes`` worker processes ("spawn"), each with one
    torch thread, so that results do not depend on the number of processes. ``processes=1`` runs
    them here, one after another, also with one thread (restored afterwards)."""
    trials = list(trials)
    if not all(isinstance(t, Trial) for t in trials):
        raise ValueError("run_trials takes a list of Trial objects")
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive integer, got {processes!r}")
    if processes == 1 or len(trials) <= 1:
        threads = torch.get_num_threads()
        try:
            return [_run_one_thread(t) for t in trials]
        finally:
            torch.set_num_threads(threads)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        return list(pool.map(_run_one_thread, trials))
