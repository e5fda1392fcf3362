"""Claims: a paper's statement, what this book measured, and a verdict that does not depend on luck.

A chapter states each claim as one **comparison** of a measurement with the paper:

    claims.add("ReLU rate per layer", close(1.467, Estimate.of(rates), rel=0.03),
               kind=PAPER, source="ghost2024, Eq. (1)", quote="r(ReLU) = π/(π−1) ≈ 1.467")

The comparison (:func:`close`, :func:`at_least`, :func:`at_most`, :func:`between`,
:func:`ordered`, :func:`ratio_at_least`, :func:`difference_at_least`, :func:`all_of`) writes its
own criterion text from the same numbers and bounds that decide the verdict, so the two cannot
drift apart.

**Measurements carry their uncertainty** (:class:`Estimate`): a sample over seeds or repeats gives
its mean and standard error (SE). The criterion is reduced to a signed *distance* d, in the units
of the measurement (d > 0: the criterion holds at the mean), and a *margin* m = z·SE (z = 2 by
default; never below a rounding floor of 10⁻⁶ of the numbers compared). The verdict is

- ``holds``        d > m: the criterion holds by more than its margin;
- ``fails``        d < −m: it fails by more than its margin;
- ``inconclusive`` |d| ≤ m: more seeds or a larger scale would decide it;
- ``not testable`` this scale cannot test it (the row names the scale that can).

A single run of a random or chaotic quantity (:meth:`Estimate.single`) has no standard error: its
verdict is at best ``inconclusive``. A plain number is taken as exact (quadrature, closed forms):
pass a sample for anything random.

**Kinds of row**, counted apart: a *paper claim* (the paper's words and place), an *erratum*
(where the paper is shown wrong, with the evidence), a *reconstruction* (a claim about a setting the
paper does not give), and a *check of this book's machinery* (quadrature against closed forms,
samplers against theory), shown in a separate table and never counted among the paper's claims.

Rows belong to the **section** they were added in (:meth:`Claims.section`), so each section can
show its own small table (:meth:`Claims.table`) beside its figure; the chapter ends with the whole
table and its counts. :meth:`Claims.save` writes ``<chapter>.claims.json`` with every row, the
counts and the provenance of the run (:func:`provenance`). Tables render as HTML (the book and
Jupyter), markdown and plain text (the terminal).
"""
from __future__ import annotations

import datetime
import html
import json
import math
import numbers
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["HOLDS", "FAILS", "INCONCLUSIVE", "NOT_TESTABLE", "VERDICTS", "PAPER", "ERRATUM",
           "RECONSTRUCTION", "MACHINERY", "KINDS", "Estimate", "Check", "close", "at_least", "at_most",
           "between", "ordered", "ratio_at_least", "difference_at_least", "all_of", "not_testable",
           "Claim", "Claims", "ClaimsTable", "provenance", "SCALE_ORDER"]

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE = "holds", "fails", "inconclusive", "not testable"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE)
SYMBOLS = {HOLDS: "✓", FAILS: "✗", INCONCLUSIVE: "?", NOT_TESTABLE: "–"}
COLOURS = {HOLDS: "#1a7f37", FAILS: "#cf222e", INCONCLUSIVE: "#9a6700", NOT_TESTABLE: "#6e7781"}

PAPER, ERRATUM, RECONSTRUCTION, MACHINERY = "paper claim", "erratum", "reconstruction", "machinery check"
KINDS = (PAPER, ERRATUM, RECONSTRUCTION, MACHINERY)
KIND_PLURALS = {PAPER: "paper claims", ERRATUM: "errata", RECONSTRUCTION: "reconstructions",
                MACHINERY: "machinery checks"}
SCALE_ORDER = ("smoke", "book", "paper")
ROUNDING = 1e-6          # relative floor of every margin: float32 rounding must never decide a verdict


# --------------------------------------------------------------------------- numbers with uncertainty
def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.4g}"


@dataclass(frozen=True)
class Estimate:
    """A measured number: its ``mean``, the standard error ``se`` of that mean (0: exact up to
    rounding; NaN: unknown, one run of a random quantity) and the ``n`` samples behind it
    (``over`` says what they are: "seeds", "repeats", ...)."""

    mean: float
    se: float = 0.0
    n: int = 1
    over: str = ""

    def __post_init__(self):
        if not isinstance(self.mean, numbers.Real) or isinstance(self.mean, bool):
            raise ValueError(f"an estimate's mean must be a number, got {self.mean!r}")
        if not (math.isnan(self.se) or self.se >= 0):
            raise ValueError(f"a standard error must be >= 0 or NaN (unknown), got {self.se!r}")

    @classmethod
    def of(cls, values, over: str = "seeds") -> "Estimate":
        """Mean and standard error (sample standard deviation / √n) of ``values``, one per
        independent run. One value gives an unknown standard error (:meth:`single`)."""
        v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float).ravel()
        if v.size == 0:
            raise ValueError("Estimate.of needs at least one value")
        if v.size == 1:
            return cls.single(float(v[0]), over)
        if not np.all(np.isfinite(v)):
            return cls(float(np.mean(v)), math.nan, int(v.size), over)
        return cls(float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)), int(v.size), over)

    @classmethod
    def exact(cls, value) -> "Estimate":
        """A number without sampling error (quadrature, a closed form, a count): SE 0."""
        return cls(float(value), 0.0, 1, "exact")

    @classmethod
    def single(cls, value, over: str = "run") -> "Estimate":
        """One run of a random quantity: its standard error is unknown, so it decides nothing."""
        return cls(float(value), math.nan, 1, over)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.mean)

    def text(self) -> str:
        """"1.211 ± 0.003 (5 seeds)": mean ± SE and the samples; a plain number when exact."""
        if self.over == "exact" or (self.se == 0 and self.n == 1):
            return _fmt(self.mean)
        if math.isnan(self.se):
            return f"{_fmt(self.mean)} (1 {self.over})" if self.n == 1 else f"{_fmt(self.mean)} (SE unknown)"
        return f"{_fmt(self.mean)} ± {self.se:.2g} ({self.n} {self.over})"


def as_estimate(value) -> Estimate:
    """An :class:`Estimate` from an Estimate, a number (exact) or a sequence of runs (a sample)."""
    if isinstance(value, Estimate):
        return value
    if isinstance(value, bool):
        raise ValueError(f"a measurement must be a number or a sample of numbers, got {value!r}")
    if isinstance(value, numbers.Real):
        return Estimate.exact(value)
    if hasattr(value, "detach") and getattr(value, "ndim", 1) == 0:
        return Estimate.exact(float(value))
    try:
        return Estimate.of(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"a measurement must be a number, a sequence of numbers or an Estimate, "
                         f"got {value!r}") from err


# --------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class Check:
    """One comparison: its generated ``criterion`` text, the ``measured`` text, the paper's value
    or words (``paper``), the signed ``distance`` (> 0: holds at the mean), the ``margin`` and the
    ``verdict``. Build it with :func:`close`, :func:`at_least`, ... rather than by hand."""

    criterion: str
    measured: str
    paper: str
    distance: float
    margin: float
    verdict: str
    value: float = math.nan      # the main measured number (for files and plots)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def _decide(distance: float, se: float, z: float, scale: float) -> tuple[str, float]:
    """(verdict, margin) for a signed distance with standard error ``se``."""
    if not isinstance(z, numbers.Real) or isinstance(z, bool) or z <= 0:
        raise ValueError(f"z (standard errors of margin) must be a positive number, got {z!r}")
    floor = ROUNDING * max(abs(scale), 1e-12)
    if math.isnan(distance):
        return FAILS, math.nan                     # a NaN measurement (a diverged run) fails
    if math.isnan(se):
        return INCONCLUSIVE, math.nan              # one run of a random quantity decides nothing
    margin = max(z * se, floor)
    if distance > margin:
        return HOLDS, margin
    if distance < -margin:
        return FAILS, margin
    return INCONCLUSIVE, margin


def _number(what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def close(paper, measured, *, rel: float | None = None, abs: float | None = None, z: float = 2.0) -> Check:
    """|measured − paper| ≤ tolerance, the tolerance ``rel``·|paper| or ``abs``. Holds when the
    whole ±z·SE interval lies inside the band, fails when it lies wholly outside."""
    p, m = _number("the paper's value", paper), as_estimate(measured)
    if (rel is None) == (abs is None):
        raise ValueError("give exactly one of rel= or abs=")
    tol = _number("the tolerance", rel if rel is not None else abs)
    if tol < 0:
        raise ValueError(f"the tolerance must be >= 0, got {tol}")
    band = tol * math_abs(p) if rel is not None else tol
    text = f"|x − {_fmt(p)}| ≤ {_fmt(band)}" + (f" (±{rel:.3g}·paper)" if rel is not None else "")
    distance = band - math_abs(m.mean - p) if m.finite else math.nan
    verdict, margin = _decide(distance, m.se, z, max(math_abs(p), band))
    return Check(text, m.text(), _fmt(p), distance, margin, verdict, m.mean)


math_abs = abs  # ``abs`` is a keyword argument of close(); keep the builtin reachable


def at_least(measured, bound, *, paper: str | None = None, z: float = 2.0) -> Check:
    """measured ≥ bound."""
    b, m = _number("the bound", bound), as_estimate(measured)
    distance = m.mean - b if m.finite or m.mean == math.inf else math.nan
    verdict, margin = _decide(distance, m.se, z, b if b else m.mean)
    return Check(f"x ≥ {_fmt(b)}", m.text(), paper if paper is not None else f"≥ {_fmt(b)}", distance, margin,
                 verdict, m.mean)


def at_most(measured, bound, *, paper: str | None = None, z: float = 2.0) -> Check:
    """measured ≤ bound."""
    b, m = _number("the bound", bound), as_estimate(measured)
    distance = b - m.mean if m.finite else (-math.inf if m.mean == math.inf else math.nan)
    verdict, margin = _decide(distance, m.se, z, b if b else m.mean)
    return Check(f"x ≤ {_fmt(b)}", m.text(), paper if paper is not None else f"≤ {_fmt(b)}", distance, margin,
                 verdict, m.mean)


def between(measured, low, high, *, paper: str | None = None, z: float = 2.0) -> Check:
    """low ≤ measured ≤ high."""
    lo, hi, m = _number("the lower bound", low), _number("the upper bound", high), as_estimate(measured)
    if lo > hi:
        raise ValueError(f"the lower bound {lo} exceeds the upper bound {hi}")
    distance = min(m.mean - lo, hi - m.mean) if m.finite else math.nan
    verdict, margin = _decide(distance, m.se, z, max(math_abs(lo), math_abs(hi)))
    return Check(f"{_fmt(lo)} ≤ x ≤ {_fmt(hi)}", m.text(), paper if paper is not None else f"in [{_fmt(lo)}, {_fmt(hi)}]",
                 distance, margin, verdict, m.mean)


def _combine(verdicts) -> str:
    verdicts = list(verdicts)
    if any(v == FAILS for v in verdicts):
        return FAILS
    if any(v == NOT_TESTABLE for v in verdicts):
        return NOT_TESTABLE
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def ordered(values: dict, *, increasing: bool = True, paper: str | None = None, z: float = 2.0) -> Check:
    """The named measurements are strictly ordered as given (increasing by default): every
    consecutive pair differs in the stated direction by more than z·√(SE_a² + SE_b²)."""
    if not isinstance(values, dict) or len(values) < 2:
        raise ValueError("ordered() needs a dict of at least two named measurements")
    names, ests = list(values), [as_estimate(v) for v in values.values()]
    sign = 1 if increasing else -1
    parts = []
    for a, b in zip(ests, ests[1:]):
        d = sign * (b.mean - a.mean) if a.finite and b.finite else math.nan
        parts.append((d,) + _decide(d, math.hypot(a.se, b.se), z, max(math_abs(a.mean), math_abs(b.mean))))
    rel = " < " if increasing else " > "
    verdict = _combine(v for _, v, _ in parts)
    worst = min(parts, key=lambda p: -math.inf if math.isnan(p[0]) else p[0] - (p[2] if math.isfinite(p[2]) else 0))
    return Check(rel.join(names), "; ".join(f"{n} {e.text()}" for n, e in zip(names, ests)),
                 paper if paper is not None else rel.join(names), worst[0], worst[2], verdict)


def ratio_at_least(numerator, denominator, k: float, *, paper: str | None = None, z: float = 2.0) -> Check:
    """numerator / denominator ≥ k, decided on log(ratio) − log(k) with the delta-method standard
    error √((SE_a/a)² + (SE_b/b)²) (independent estimates of positive quantities)."""
    a, b, k = as_estimate(numerator), as_estimate(denominator), _number("the factor k", k)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if a.mean <= 0 or b.mean <= 0 or not (a.finite and b.finite):
        distance, se = math.nan, math.nan
    else:
        distance = math.log(a.mean / b.mean) - math.log(k)
        se = math.hypot(a.se / a.mean, b.se / b.mean)
    verdict, margin = _decide(distance, se, z, 1.0)
    ratio = a.mean / b.mean if b.mean else math.inf
    return Check(f"a/b ≥ {_fmt(k)}", f"a/b = {_fmt(ratio)} (a = {a.text()}, b = {b.text()})",
                 paper if paper is not None else f"≥ {_fmt(k)}×", distance, margin, verdict, ratio)


def difference_at_least(a, b, delta: float = 0.0, *, paired: bool = False, paper: str | None = None,
                        z: float = 2.0) -> Check:
    """a − b ≥ delta. With ``paired=True`` (a and b are samples of equal length, one value per
    seed, the seeds shared) the standard error is that of the per-seed differences; otherwise
    √(SE_a² + SE_b²)."""
    delta = _number("delta", delta)
    if paired:
        va, vb = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
        if va.shape != vb.shape or va.size < 2:
            raise ValueError(f"paired samples need equal lengths of at least 2, got {va.size} and {vb.size}")
        d = Estimate.of(va - vb, "paired seeds")
        ea, eb = Estimate.of(va), Estimate.of(vb)
        distance, se = d.mean - delta, d.se
    else:
        ea, eb = as_estimate(a), as_estimate(b)
        distance, se = ea.mean - eb.mean - delta, math.hypot(ea.se, eb.se)
    if not (ea.finite and eb.finite):
        distance = math.nan
    verdict, margin = _decide(distance, se, z, max(math_abs(ea.mean), math_abs(eb.mean), math_abs(delta)))
    return Check(f"a − b ≥ {_fmt(delta)}" + (" (paired)" if paired else ""),
                 f"a = {ea.text()}, b = {eb.text()}, a − b = {_fmt(ea.mean - eb.mean)}",
                 paper if paper is not None else f"a − b ≥ {_fmt(delta)}", distance, margin, verdict,
                 ea.mean - eb.mean)


def all_of(checks: dict, *, paper: str | None = None) -> Check:
    """Every named check holds (holds if all hold, fails if any fails, else inconclusive)."""
    if not isinstance(checks, dict) or not checks or not all(isinstance(c, Check) for c in checks.values()):
        raise ValueError("all_of() needs a non-empty dict of name -> Check")
    verdict = _combine(c.verdict for c in checks.values())
    worst = min(checks.values(), key=lambda c: c.distance if not math.isnan(c.distance) else -math.inf)
    crit = "all of: " + "; ".join(f"{n}: {c.criterion}" for n, c in checks.items())
    measured = "; ".join(f"{n} {c.measured}" for n, c in checks.items())
    return Check(crit, measured, paper if paper is not None else "all hold", worst.distance, worst.margin, verdict)


def not_testable(paper, at: str, *, measured=None, reason: str = "") -> Check:
    """A claim this scale cannot test: ``at`` names the scale that can (e.g. "paper")."""
    if at not in SCALE_ORDER:
        raise ValueError(f"at must be one of {SCALE_ORDER}, got {at!r}")
    m = "—" if measured is None else as_estimate(measured).text()
    return Check(f"needs {at} scale" + (f": {reason}" if reason else ""), m,
                 paper if isinstance(paper, str) else _fmt(paper), math.nan, math.nan, NOT_TESTABLE)


# --------------------------------------------------------------------------- rows and tables
@dataclass(frozen=True)
class Claim:
    """One row: the check, what kind of statement it is, where the paper says it (``source``: key
    of references.bib and place), the paper's words (``quote``), a ``note`` and the ``section``
    (a MyST label of the chapter) it belongs to."""

    name: str
    kind: str
    check: Check
    source: str
    quote: str = ""
    note: str = ""
    section: str = ""

    @property
    def verdict(self) -> str:
        return self.check.verdict


class ClaimsTable:
    """A view of some rows, shown as an HTML, markdown or plain-text table."""

    COLUMNS = ("", "claim", "kind", "paper", "this book", "criterion", "margin", "source", "note")

    def __init__(self, rows: list[Claim], title: str = ""):
        self.rows, self.title = list(rows), title

    def _cells(self, row: Claim) -> list[str]:
        c = row.check
        paper = c.paper + (f" — “{row.quote}”" if row.quote else "")
        margin = "—" if c.verdict == NOT_TESTABLE or not math.isfinite(c.margin) else f"±{_fmt(c.margin)}"
        return [SYMBOLS[c.verdict], row.name, row.kind, paper, c.measured, c.criterion, margin, row.source, row.note]

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {verdict: count}} over the rows."""
        out = {}
        for r in self.rows:
            out.setdefault(r.kind, {v: 0 for v in VERDICTS})[r.verdict] += 1
        return out

    def summary(self) -> str:
        """"Paper claims: 5 hold, 1 fails, 2 inconclusive; machinery checks: 3 hold" (kinds in order)."""
        counts = self.counts()
        parts = []
        for kind in KINDS:
            if kind in counts:
                c = counts[kind]
                parts.append(f"{KIND_PLURALS[kind]}: " + ", ".join(_plural(c[v], v) for v in VERDICTS if c[v]))
        return "; ".join(parts) if parts else "no claims"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.COLUMNS)
        body = []
        for r in self.rows:
            cells = self._cells(r)
            colour = COLOURS[r.verdict]
            first = (f'<td class="verdict {r.verdict.replace(" ", "-")}" title="{r.verdict}" '
                     f'style="color:{colour};font-weight:bold;text-align:center">{cells[0]}</td>')
            body.append(f'<tr class="claim-row">{first}' + "".join(f"<td>{html.escape(x)}</td>" for x in cells[1:]) + "</tr>")
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return (f'<table class="gradprobe-claims">{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
                f'</tbody></table><p class="gradprobe-claims-summary"><strong>{html.escape(self.summary())}.</strong> '
                "✓ holds by more than its margin, ✗ fails by more than its margin, ? inconclusive, – not testable "
                "at this scale.</p>")

    def _repr_markdown_(self) -> str:
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(self.COLUMNS) + " |", "|" + "---|" * len(self.COLUMNS)]
        lines += ["| " + " | ".join(esc(x) for x in self._cells(r)) + " |" for r in self.rows]
        return (f"**{self.title}**\n\n" if self.title else "") + "\n".join(lines) + f"\n\n**{self.summary()}.**"

    def __repr__(self) -> str:
        cols = (0, 1, 3, 4, 5)  # verdict, claim, paper, this book, criterion: what fits a terminal
        cols += (8,) if any(r.note for r in self.rows) else ()
        rows = [[self.COLUMNS[i] for i in cols]] + [[self._cells(r)[i] for i in cols] for r in self.rows]
        widths = [min(48, max(len(r[i]) for r in rows)) for i in range(len(cols))]
        cut = lambda s, w: s if len(s) <= w else s[: w - 1] + "…"
        lines = ["  ".join(cut(x, w).ljust(w) for x, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(([self.title] if self.title else []) + lines + [self.summary()])


def _plural(n: int, verdict: str) -> str:
    if verdict == HOLDS:
        return f"{n} hold" + ("s" if n == 1 else "")
    if verdict == FAILS:
        return f"{n} fail" + ("s" if n == 1 else "")
    return f"{n} {verdict}"


class Claims:
    """The claims of one chapter, in the order they were checked, grouped by section."""

    def __init__(self, chapter: str, scale: str = "book", seed: int = 0, device: str = "cpu"):
        if not chapter or not isinstance(chapter, str) or any(c in chapter for c in "/\\ "):
            raise ValueError(f"chapter must be a short name without spaces or slashes, got {chapter!r}")
        if scale not in SCALE_ORDER:
            raise ValueError(f"scale must be one of {SCALE_ORDER}, got {scale!r}")
        self.chapter, self.scale, self.seed, self.device = chapter, scale, seed, str(device)
        self.rows: list[Claim] = []
        self.sections: dict[str, str] = {}
        self._section = ""
        self._started = time.perf_counter()

    def section(self, label: str, title: str) -> "Claims":
        """Rows added from now on belong to the section with the MyST ``label`` (the target written
        as ``(label)=`` above its heading in the notebook), titled ``title``."""
        if not label or any(c in label for c in " /\\"):
            raise ValueError(f"a section label is a MyST target name without spaces, got {label!r}")
        self.sections[label] = title
        self._section = label
        return self

    def add(self, name: str, check: Check, *, kind: str = PAPER, source: str, quote: str = "", note: str = "",
            needs: str | None = None) -> Claim:
        """Add one row. ``needs`` = a scale ("book", "paper"): below it, the row is shown as
        ``not testable`` (the measurement and criterion stay visible)."""
        if not isinstance(check, Check):
            raise ValueError(f"claim {name!r}: check must be a Check from close(), at_least(), ..., got {check!r}")
        if kind not in KINDS:
            raise ValueError(f"claim {name!r}: kind must be one of {KINDS}, got {kind!r}")
        if not source:
            raise ValueError(f"claim {name!r} needs a source (which paper, which place)")
        if any(c.name == name for c in self.rows):
            raise ValueError(f"claim {name!r} was already checked in chapter {self.chapter!r}")
        if needs is not None:
            if needs not in SCALE_ORDER:
                raise ValueError(f"claim {name!r}: needs must be one of {SCALE_ORDER}, got {needs!r}")
            if SCALE_ORDER.index(self.scale) < SCALE_ORDER.index(needs):
                check = Check(f"needs {needs} scale; at it: {check.criterion}", check.measured, check.paper,
                              check.distance, check.margin, NOT_TESTABLE, check.value)
        row = Claim(name, kind, check, source, quote, note, self._section)
        self.rows.append(row)
        return row

    # ------------------------------------------------------------------ views
    def table(self, section: str | None = None, *, kinds=None, title: str | None = None) -> ClaimsTable:
        """The rows of ``section`` (default: the current one), optionally only some ``kinds``."""
        label = self._section if section is None else section
        if label not in self.sections and label != "":
            raise ValueError(f"no section {label!r}; sections: {', '.join(self.sections) or 'none'}")
        rows = [r for r in self.rows if r.section == label and (kinds is None or r.kind in kinds)]
        return ClaimsTable(rows, self.sections.get(label, "") if title is None else title)

    def summary_table(self) -> ClaimsTable:
        """All rows except the machinery checks (the chapter's closing table)."""
        return ClaimsTable([r for r in self.rows if r.kind != MACHINERY], "Paper vs this book: every claim")

    def machinery_table(self) -> ClaimsTable:
        return ClaimsTable([r for r in self.rows if r.kind == MACHINERY], "Checks of this book's machinery")

    def counts(self) -> dict[str, dict[str, int]]:
        return ClaimsTable(self.rows).counts()

    def summary(self) -> str:
        return ClaimsTable(self.rows).summary()

    def _repr_html_(self) -> str:
        return self.summary_table()._repr_html_()

    def _repr_markdown_(self) -> str:
        return self.summary_table()._repr_markdown_()

    def __repr__(self) -> str:
        return repr(self.summary_table())

    # ------------------------------------------------------------------ file
    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return v
        rows = []
        for r in self.rows:
            d = {"name": r.name, "kind": r.kind, "verdict": r.verdict, "section": r.section,
                 "section_title": self.sections.get(r.section, ""), "source": r.source, "quote": r.quote,
                 "note": r.note}
            d.update({k: clean(v) for k, v in asdict(r.check).items() if k != "verdict"})
            rows.append(d)
        return {"chapter": self.chapter, "counts": self.counts(), "summary": self.summary(),
                "provenance": provenance(self.scale, self.seed, self.device, time.perf_counter() - self._started),
                "claims": rows}

    def save(self, path: str | Path | None = None) -> Path:
        """Write ``<chapter>.claims.json`` (in the working directory, which the book runner sets to
        the executed notebook's folder) with every row, the counts and the run's provenance."""
        path = Path(path) if path is not None else Path(f"{self.chapter}.claims.json")
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path


# --------------------------------------------------------------------------- provenance
def _git_commit() -> str:
    commit = os.environ.get("GRADPROBE_GIT_COMMIT")
    if commit:
        return commit
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(scale: str, seed: int, device: str, wall_seconds: float | None = None) -> dict:
    """Where and how a run was made: git commit, scale, seed, torch and Python versions, the device
    (and the CPU's instruction-set path or the GPU's name), torch's thread count, date, wall time."""
    import torch

    info = {"git_commit": _git_commit(), "scale": scale, "seed": seed, "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    if wall_seconds is not None:
        info["wall_seconds"] = round(float(wall_seconds), 1)
    return info
