"""The three scales of every notebook: ``smoke`` (CI, < 60 s on 2 CPU cores), ``book`` (the built
book, < 10 min on 2 CPU cores) and ``paper`` (the paper's own settings, for a GPU).

A notebook writes its settings once, at book scale, and overrides some of them for the others:

    S = settings(scale, book=dict(depth=50, width=256, repeats=64),
                 smoke=dict(width=64, repeats=4), paper=dict(repeats=4096),
                 notes={"repeats": "fresh weights each repeat"})
"""
from __future__ import annotations

from types import SimpleNamespace

__all__ = ["SCALES", "Settings", "settings"]

SCALES = ("smoke", "book", "paper")


class Settings(SimpleNamespace):
    """The chosen scale's settings as attributes; displays the whole table (every setting at every
    scale), the chosen column marked."""

    def __init__(self, table: dict, scale: str, notes: dict | None = None):
        super().__init__(**table[scale])
        self._table, self._scale, self._notes = table, scale, notes or {}

    def at(self, scale: str) -> SimpleNamespace:
        """The settings of another scale (e.g. to estimate what the paper scale costs)."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        return SimpleNamespace(**self._table[scale])

    @property
    def scale(self) -> str:
        return self._scale

    def _rows(self):
        head = ["setting"] + [f"**{s}** (this run)" if s == self._scale else s for s in SCALES]
        head += ["note"] if self._notes else []
        body = [[k] + [str(self._table[s][k]) for s in SCALES] + ([self._notes.get(k, "")] if self._notes else [])
                for k in self._table["book"]]
        return head, body

    def _repr_markdown_(self) -> str:
        head, body = self._rows()
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in body])

    def __repr__(self) -> str:
        head, body = self._rows()
        head = [h.replace("*", "") for h in head]
        return "\n".join("  ".join(r) for r in [head] + body)


def settings(scale: str, *, book: dict, smoke: dict | None = None, paper: dict | None = None,
             notes: dict | None = None) -> Settings:
    """The settings of ``scale``: ``book`` is the full set (name -> value, in display order);
    ``smoke`` and ``paper`` override some of its values at those scales. ``notes`` maps a setting
    to a short remark (e.g. "paper: 4096"), shown in the table. An override or a note of a
    setting that ``book`` does not have is an error (a typo would otherwise pass silently)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if not isinstance(book, dict) or not book:
        raise ValueError(f"book must be a non-empty dict of every setting, got {book!r}")
    overrides = {"smoke": smoke or {}, "paper": paper or {}}
    for name, given in [*overrides.items(), ("notes", notes or {})]:
        unknown = [k for k in given if k not in book]
        if unknown:
            raise ValueError(f"{name} names settings that book does not have: {', '.join(map(repr, unknown))}; "
                             f"the settings are {', '.join(book)}")
    table = {"smoke": {**book, **overrides["smoke"]}, "book": dict(book), "paper": {**book, **overrides["paper"]}}
    return Settings(table, scale, notes)
