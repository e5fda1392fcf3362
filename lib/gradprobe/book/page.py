"""One chapter's run: where it computes, how it is seeded, its claims, and the numbers its prose uses.

A chapter notebook opens with

    page = Page("ghost2024", scale, seed, device)      # style, device, seeds, claims, clock

and ends with ``page.finish()``, which saves the claims file and glues the values of the chapter's
opening box (scale, wall time, the one-line result). Numbers in the
prose come from :meth:`Page.glue` (MyST-NB's ``glue``) and appear in markdown as
``{glue:text}`name``` (or ``{glue:text}`name:.3f```): never typed from an earlier run.
"""
from __future__ import annotations

import time

import torch

from ..runtime import Generators, device as pick_device, seed as seed_all
from . import plots
from .claims import Claims
from .scales import SCALES

__all__ = ["Page"]


def _glue(name: str, value) -> None:
    """MyST-NB's glue without display; a no-op where MyST-NB is not installed (plain Python)."""
    try:
        from myst_nb import glue
    except ImportError:
        return
    glue(name, value, display=False)


def _duration(seconds: float) -> str:
    """"41 s", "3 min 05 s", "5.2 h", "3.1 days"."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3 * 3600:
        return f"{seconds / 3600:.1f} h"
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"


class Page:
    """The run of chapter ``chapter`` at ``scale`` with ``seed`` on ``device``.

    Sets the house plot style, picks the device (:func:`gradprobe.device`), seeds every generator
    (:func:`gradprobe.seed`: ``gen.data`` and ``gen.weights``), sets ``threads`` torch threads on the
    CPU when given, starts the clock and opens the chapter's :class:`Claims`.
    """

    def __init__(self, chapter: str, scale: str, seed: int = 0, device: str = "auto", threads: int | None = None):
        self.chapter, self.scale, self.seed = chapter, scale, seed
        self.device: torch.device = pick_device(device)
        if threads is not None and self.device.type == "cpu":
            torch.set_num_threads(threads)
        torch.set_flush_denormal(True)    # diverging runs produce denormal numbers, slow on a CPU
        plots.style()
        self.gen: Generators = seed_all(seed)
        self.claims = Claims(chapter, scale=scale, seed=seed, device=str(self.device))
        self._started = time.perf_counter()
        self.glue("scale", scale)

    def glue(self, name: str, value, fmt: str | None = None):
        """Make ``value`` available to the page's prose as ``{glue:text}`name```; with ``fmt``
        (e.g. ``".3g"``) the value is glued as formatted text. Returns the value."""
        _glue(name, format(value, fmt) if fmt else value)
        return value

    def glue_list(self, name: str, values, fmt: str | None = None) -> str:
        """Glue ``values`` as one phrase, "a, b and c" (each formatted with ``fmt``), for prose
        that lists one number per size of a sweep whose sizes differ between scales."""
        items = [format(v, fmt) if fmt else str(v) for v in values]
        if not items:
            raise ValueError(f"glue_list({name!r}): no values")
        text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        _glue(name, text)
        return text

    def glue_not_run(self, *names: str) -> None:
        """Glue "not run at <scale> scale" under each name: for prose numbers of an experiment
        this scale leaves out (e.g. an architecture only the book scale trains), so the page
        still builds and says why the number is missing."""
        for name in names:
            _glue(name, f"(not run at {self.scale} scale)")

    def finish(self, settings=None, cost=None) -> Claims:
        """Save the claims file and glue the opening box's values: ``wall`` (this run's wall time)
        and ``summary`` (the claims' counts in words).

        With the chapter's ``settings`` (:class:`gradprobe.book.scales.Settings`) and ``cost``, a
        function of one scale's settings to the chapter's work in units of its own (e.g. sample
        passes through a layer), also glue ``estimate_smoke``, ``estimate_book`` and
        ``estimate_paper``: this run's seconds per unit of work times each scale's work, on this
        run's device. The estimate is linear in the cost model and says nothing about a faster
        device."""
        self.claims.save()
        seconds = time.perf_counter() - self._started
        self.glue("wall", _duration(seconds))
        self.glue("summary", self.claims.summary())
        if (settings is None) != (cost is None):
            raise ValueError("give both settings and cost to estimate the other scales, or neither")
        if cost is not None:
            here = float(cost(settings.at(self.scale)))
            if not here > 0:
                raise ValueError(f"cost of this run's settings must be positive, got {here}")
            for scale in SCALES:
                self.glue(f"estimate_{scale}", _duration(seconds * float(cost(settings.at(scale))) / here))
        return self.claims
