"""The house plot style, and saving figures beside the executed notebook."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.rcParams["savefig.bbox"] = "tight"
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

__all__ = ["style", "savefig", "show", "per_layer", "band", "PAPER", "OURS", "THEORY", "PAPER_POINT", "REFERENCE"]

# How the three kinds of line are told apart in every figure of the book.
PAPER = dict(color="0.25", linestyle="--", linewidth=1.5)   # the paper's value
THEORY = dict(color="tab:red", linestyle=":", linewidth=2)   # a prediction computed here
OURS = dict(marker="o", markersize=3, linewidth=1.5)          # measured here
PAPER_POINT = dict(color="k", marker="x", linestyle="none", markersize=9)  # a number quoted from a paper
REFERENCE = dict(color="0.5", linewidth=1)                    # a neutral reference line (1, chance, ...)


def style() -> None:
    """Apply the book's style: seaborn whitegrid, colour-blind palette, readable sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.figsize": (6.4, 4.0),
                         "axes.titlesize": "medium", "legend.fontsize": "small", "savefig.bbox": "tight"})
    _retina()


def _retina() -> None:
    """Inline figures at twice the pixel density in a Jupyter kernel (sharp on high-resolution
    screens and in the built book); nothing outside IPython."""
    ipython = sys.modules.get("IPython")
    if ipython is None or ipython.get_ipython() is None:
        return
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    set_matplotlib_formats("retina")


def savefig(fig, name: str, folder: str | Path = "figures") -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` relative to the working directory, which the book
    runner sets to the executed notebook's folder, so figures live with their notebook."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
        raise ValueError(f"figure name must be letters, digits, '_', '-' or '.', got {name!r}")
    path = (Path(folder) / f"{name}.png").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def show(fig, name: str, folder: str | Path = "figures") -> None:
    """Save ``fig`` (:func:`savefig`) and display it: the one call a notebook's figure cell makes."""
    savefig(fig, name, folder)
    plt.show()


def per_layer(ax, values, label: str | None = None, *, ylabel: str, log: bool = True, start: int = 1, **kw):
    """Plot one value per layer (layer index ``start``, ``start+1``, ... from input to output)."""
    ks = range(start, start + len(values))
    line = ax.plot(list(ks), [float(v) for v in values], label=label, **{**OURS, **kw})
    ax.set_xlabel("layer index k (input → output)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    return line


def band(ax, xs, runs, label: str | None = None, *, center: str = "median", **line):
    """The median (or ``center="mean"``) over runs (rows of ``runs`` [n_runs, len(xs)]) as a line,
    and the min–max range over runs as a shaded band of the same colour: the book's way of showing
    spread over seeds."""
    import numpy as np

    values = np.asarray(runs, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(xs):
        raise ValueError(f"runs must be [n_runs, {len(xs)}] to match xs, got shape {values.shape}")
    if center not in ("median", "mean"):
        raise ValueError(f"center must be 'median' or 'mean', got {center!r}")
    middle = np.median(values, 0) if center == "median" else values.mean(0)
    (drawn,) = ax.plot(xs, middle, label=label, **line)
    ax.fill_between(xs, values.min(0), values.max(0), color=drawn.get_color(), alpha=0.2, linewidth=0)
    return drawn


style()
