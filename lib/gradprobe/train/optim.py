"""Layer-wise learning-rate rules as ``torch.optim`` optimizers.

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

:func:`make_optimizer` builds one of them, or torch's SGD, by name.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer

from ..checks import nonnegative, one_of, positive

__all__ = ["LARS", "LARC", "LAMB", "LALC", "OPTIMIZERS", "make_optimizer"]


def _trust(weight_norm: torch.Tensor, denominator: torch.Tensor, eta: float) -> torch.Tensor:
    """η‖w‖/denominator, or 1 when either norm is zero (an all-zero layer keeps the global lr)."""
    ok = (weight_norm > 0) & (denominator > 0)
    return torch.where(ok, eta * weight_norm / torch.where(ok, denominator, torch.ones_like(denominator)),
                       torch.ones_like(weight_norm))


def _closure_loss(closure):
    """The loss that ``closure`` returns (evaluated with gradients enabled), or None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _layerwise(p: torch.Tensor, group: dict) -> bool:
    return not (group["exclude_1d"] and p.ndim <= 1)


class _SGDLike(Optimizer):
    """SGD with momentum where each layer's gradient is first multiplied by ``_local_lr``/γ."""

    def __init__(self, params, lr, momentum, weight_decay, trust_coefficient, eps, exclude_1d, **extra):
        positive("lr", lr)
        nonnegative("momentum", momentum)
        if momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        nonnegative("weight_decay", weight_decay)
        positive("trust_coefficient", trust_coefficient)
        nonnegative("eps", eps)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, eps=eps, exclude_1d=bool(exclude_1d),
                                      **extra))

    def _local_lr(self, p, g, group) -> torch.Tensor:  # the layer's learning rate γ_l
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = _closure_loss(closure)
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
        positive("lr", lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        positive("eps", eps)
        nonnegative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      exclude_1d=bool(exclude_1d)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _closure_loss(closure)
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
    one_of("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        options.setdefault("momentum", 0.9)
        positive("lr", lr)
        return torch.optim.SGD(params, lr=lr, **options)
    return {"lars": LARS, "larc": LARC, "lamb": LAMB, "lalc": LALC}[name](params, lr=lr, **options)
