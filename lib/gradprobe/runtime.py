"""Where computations run and how they are seeded."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .checks import nonnegative_int

__all__ = ["device", "seed", "progress", "Generators"]


def device(prefer: str = "auto") -> torch.device:
    """Return the device to compute on.

    ``prefer="auto"`` gives CUDA when a GPU is present, else the CPU; ``"cpu"`` and ``"cuda"``
    (or ``"cuda:N"``) ask for one explicitly. Asking for CUDA where there is none is an error,
    not a silent fall-back, so a paper-scale run never crawls on a CPU by accident.
    """
    if not isinstance(prefer, str):
        raise ValueError(f"device(prefer=...) takes 'auto', 'cpu' or 'cuda[:N]', got {prefer!r}")
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if prefer == "cpu":
        return torch.device("cpu")
    if prefer.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
        return torch.device(prefer)
    raise ValueError(f"device(prefer=...) takes 'auto', 'cpu' or 'cuda[:N]', got {prefer!r}")


@dataclass(frozen=True)
class Generators:
    """Independent random streams: ``data`` for inputs and targets, ``weights`` for parameters.

    Separate streams matter: with one shared seed the first input batch and the first weight
    matrix would be the same draw.
    """

    seed: int
    data: torch.Generator
    weights: torch.Generator


def seed(n: int) -> Generators:
    """Seed Python's, NumPy's and torch's global generators with ``n`` and return two separate
    torch generators (CPU), one for data and one for weights, derived from ``n``."""
    n = nonnegative_int("seed", n)
    random.seed(n)
    np.random.seed(n % 2**32)
    torch.manual_seed(n)
    streams = np.random.SeedSequence(n).spawn(2)
    data, weights = (torch.Generator().manual_seed(int(s.generate_state(1)[0])) for s in streams)
    return Generators(seed=n, data=data, weights=weights)


def progress(iterable=None, **kwargs):
    """A tqdm progress bar for long loops, silent when ``GRADPROBE_QUIET`` is set (the book runner
    sets it: it shows its own per-cell progress and the built book should not carry bars)."""
    kwargs.setdefault("disable", bool(os.environ.get("GRADPROBE_QUIET")))
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
