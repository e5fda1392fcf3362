"""Claims: a paper's statement, the paper's value, the value measured here, and whether it holds.

A chapter collects its claims in a :class:`Claims` and shows them as a "paper vs this book" table
with ✓ or ✗ per row; the same table goes to ``<chapter>.claims.json`` beside the executed notebook.
A claim that fails stays in the table, failing.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Claim", "Claims"]


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    return str(value)


def _number(name: str, what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"claim {name!r}: {what} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Claim:
    """One row of the table. ``tolerance`` is a text such as "±3%" or "≥ 100×"; ``source`` cites the
    paper (key from references.bib and the place, e.g. "ghost2024, Eq. 1")."""

    name: str
    paper: float | str
    measured: float | str
    tolerance: str
    passed: bool
    source: str
    note: str = ""


class Claims:
    """The claims of one chapter, in the order they were checked."""

    def __init__(self, chapter: str):
        if not chapter or not isinstance(chapter, str) or any(c in chapter for c in "/\\ "):
            raise ValueError(f"chapter must be a short name without spaces or slashes, got {chapter!r}")
        self.chapter = chapter
        self.rows: list[Claim] = []

    def _add(self, claim: Claim) -> Claim:
        if any(c.name == claim.name for c in self.rows):
            raise ValueError(f"claim {claim.name!r} was already checked in chapter {self.chapter!r}")
        if not claim.source:
            raise ValueError(f"claim {claim.name!r} needs a source (which paper, which place)")
        self.rows.append(claim)
        return claim

    def close(self, name: str, paper, measured, *, rel: float | None = None, abs: float | None = None,
              source: str, note: str = "") -> Claim:
        """Claim that ``measured`` equals the paper's number ``paper`` within ``rel`` (relative, e.g.
        0.03 for 3%) or ``abs`` (absolute). A NaN or infinite measurement fails."""
        p, m = _number(name, "paper", paper), _number(name, "measured", measured)
        if (rel is None) == (abs is None):
            raise ValueError(f"claim {name!r}: give exactly one of rel= or abs=")
        tol = rel * math.fabs(p) if rel is not None else abs
        if tol is None or tol < 0:
            raise ValueError(f"claim {name!r}: tolerance must be non-negative")
        passed = math.isfinite(m) and math.fabs(m - p) <= tol
        text = f"±{rel:.0%}" if rel is not None and rel >= 0.01 else (f"±{rel:g} rel" if rel is not None else f"±{abs:g}")
        return self._add(Claim(name, p, m, text, bool(passed), source, note))

    def holds(self, name: str, paper: str, measured, passed: bool, *, criterion: str, source: str,
              note: str = "") -> Claim:
        """A claim whose check is computed by the chapter: ``paper`` states it in words, ``measured``
        is the number (or text) observed here, ``passed`` the outcome of ``criterion`` (e.g.
        "plain/ResNet ratio ≥ 100")."""
        if not isinstance(passed, bool):
            raise ValueError(f"claim {name!r}: passed must be a bool computed from the measurement, got {passed!r}")
        if isinstance(measured, numbers.Real) and not math.isfinite(float(measured)):
            passed = False
        return self._add(Claim(name, paper, measured, criterion, passed, source, note))

    # ------------------------------------------------------------------ display and files
    @property
    def all_passed(self) -> bool:
        return all(c.passed for c in self.rows)

    def _cells(self):
        head = ["", "claim", "paper", "this book", "tolerance", "source"]
        body = [["✓" if c.passed else "✗", c.name, _fmt(c.paper), _fmt(c.measured), c.tolerance, c.source]
                for c in self.rows]
        return head, body

    def summary(self) -> str:
        n = sum(c.passed for c in self.rows)
        return f"{n} of {len(self.rows)} claims hold" + ("" if n == len(self.rows) else
                                                        f"; failing: {', '.join(c.name for c in self.rows if not c.passed)}")

    def _repr_markdown_(self) -> str:
        head, body = self._cells()
        esc = lambda s: str(s).replace("|", "\\|")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(esc(x) for x in row) + " |" for row in body]
        return "\n".join(lines) + f"\n\n**{self.summary()}.**"

    def __repr__(self) -> str:
        head, body = self._cells()
        widths = [max(len(str(r[i])) for r in [head] + body) for i in range(len(head))]
        line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
        return "\n".join([line(head)] + [line(r) for r in body] + [self.summary()])

    def save(self, path: str | Path | None = None) -> Path:
        """Write the claims to ``path`` (default ``<chapter>.claims.json`` in the working directory,
        which the book runner sets to the executed notebook's folder)."""
        path = Path(path) if path is not None else Path(f"{self.chapter}.claims.json")
        rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(c).items()}
                for c in self.rows]
        path.write_text(json.dumps({"chapter": self.chapter, "all_passed": self.all_passed, "claims": rows},
                                   indent=2, ensure_ascii=False) + "\n")
        return path
