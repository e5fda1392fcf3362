"""The three scales of every notebook: ``smoke`` (CI, < 60 s on 2 CPU cores), ``book`` (the built
book, < 10 min on 2 CPU cores) and ``paper`` (the paper's own settings, for a GPU)."""
from __future__ import annotations

from types import SimpleNamespace

__all__ = ["SCALES", "Settings", "settings"]

SCALES = ("smoke", "book", "paper")


class Settings(SimpleNamespace):
    """The chosen scale's settings as attributes; displays the whole table, chosen column marked."""

    def __init__(self, table: dict, scale: str, notes: dict | None = None):
        super().__init__(**table[scale])
        self._table, self._scale, self._notes = table, scale, notes or {}

    def _rows(self):
        head = ["setting"] + [f"**{s}** (this run)" if s == self._scale else s for s in SCALES]
        head += ["note"] if self._notes else []
        body = [[k] + [str(self._table[s][k]) for s in SCALES] + ([self._notes.get(k, "")] if self._notes else [])
                for k in self._table[SCALES[0]]]
        return head, body

    def _repr_markdown_(self) -> str:
        head, body = self._rows()
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in body])

    def __repr__(self) -> str:
        head, body = self._rows()
        head = [h.replace("*", "") for h in head]
        return "\n".join("  ".join(r) for r in [head] + body)


def settings(table: dict, scale: str, notes: dict | None = None) -> Settings:
    """Pick ``table[scale]`` after checking that the table has the three scales with the same keys.

    ``notes`` maps a setting to a short remark (e.g. "paper: 4096"), shown in the table.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if set(table) != set(SCALES):
        raise ValueError(f"the settings table needs exactly the scales {SCALES}, got {tuple(table)}")
    keys = list(table[SCALES[0]])
    for s in SCALES[1:]:
        if list(table[s]) != keys:
            raise ValueError(f"scale {s!r} has settings {list(table[s])}, expected {keys} (same names, same order)")
    return Settings(table, scale, notes)
