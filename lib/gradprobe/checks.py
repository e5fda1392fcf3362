"""Argument checks shared by the whole library: each raises ``ValueError`` naming the argument,
what it must be and what it got.

    positive_int("depth", depth)                  # depth must be a positive integer, got 0
    int_at_least("n", n, 2)                       # n must be an integer >= 2, got 1
    one_of("norm", norm, ("batch", "layer"))      # unknown norm 'group'; choose one of 'batch', 'layer'
    positive("lr", lr)                            # lr must be > 0, got 0.0
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["is_int", "int_at_least", "positive_int", "nonnegative_int", "nonnegative", "positive", "one_of",
           "probability", "labelled_images"]


def is_int(value) -> bool:
    """True for a Python or NumPy integer; False for anything else, a bool included (Python
    counts ``True`` as the integer 1, which is never what an integer argument means)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_at_least(name: str, value, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer >= ``minimum``; else ``ValueError("<name> must be a
    positive integer | a non-negative integer | an integer >= <minimum>, got <value>")``."""
    if not is_int(value) or value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def positive_int(name: str, value) -> int:
    """``value`` as an ``int`` if it is an integer >= 1 (see :func:`int_at_least`)."""
    return int_at_least(name, value, 1)


def nonnegative_int(name: str, value) -> int:
    """``value`` as an ``int`` if it is an integer >= 0 (see :func:`int_at_least`)."""
    return int_at_least(name, value, 0)


def nonnegative(name: str, value) -> None:
    """Refuse anything but a finite real number >= 0 (an int or a float, not a bool):
    ``ValueError("<name> must be a finite number >= 0, got <value>")``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def positive(name: str, value) -> None:
    """Refuse anything but a finite real number > 0: :func:`nonnegative`'s message for what is not
    a finite number >= 0, ``"<name> must be > 0, got 0"`` for zero."""
    nonnegative(name, value)
    if value == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def one_of(kind: str, value, allowed) -> None:
    """Refuse a ``value`` not in ``allowed``: ``ValueError("unknown <kind> <value>; choose one of
    <allowed, each as its repr>")``."""
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(map(repr, allowed))}")


def probability(name: str, p) -> None:
    """Refuse a probability outside [0, 1) (a dropout probability of 1 would drop everything):
    ``ValueError("<name> must be in [0, 1), got <p>")``."""
    if not 0 <= p < 1:
        raise ValueError(f"{name} must be in [0, 1), got {p}")


def labelled_images(x: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse anything but a non-empty batch of images [B, C, H, W] with one label each [B]."""
    if x.dim() != 4 or y.dim() != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"expected images [B, C, H, W] and labels [B] with B > 0, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
