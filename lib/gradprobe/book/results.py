"""The book's results page, generated from every chapter's ``<chapter>.claims.json``.

:func:`write_results_page` writes ``results.md`` beside the executed notebooks: per chapter and kind
of row, how many claims hold, fail, are inconclusive or not testable at the scale that was run;
every row with its verdict, linked to the section of its chapter where it is checked; and the
provenance of each chapter's run (commit, scale, seed, versions, device, threads, date, wall time).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .claims import KIND_PLURALS, KINDS, MACHINERY, SYMBOLS, VERDICTS

__all__ = ["write_results_page", "load_claims"]

PROVENANCE = (("scale", "scale"), ("seed", "seed"), ("git_commit", "commit"), ("torch", "torch"),
              ("python", "Python"), ("device", "device"), ("cpu_capability", "CPU path"), ("mkl_cbwr", "MKL_CBWR"),
              ("gpu", "GPU"), ("threads", "threads"), ("date", "date"), ("wall_seconds", "claims wall time (s)"))


def load_claims(folder: str | Path) -> dict[str, tuple[str, dict]]:
    """{chapter: (notebook stem, claims file contents)} for every ``<chapter>.claims.json`` in
    ``folder`` whose notebook ``NN_<chapter>.ipynb`` is there too, in notebook order."""
    folder = Path(folder)
    found = {}
    for notebook in sorted(folder.glob("[0-9]*_*.ipynb")):
        chapter = notebook.stem.split("_", 1)[1]
        path = folder / f"{chapter}.claims.json"
        if path.is_file():
            found[chapter] = (notebook.stem, json.loads(path.read_text()))
    return found


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def html_id(label: str) -> str:
    """The id Sphinx gives a MyST target ``(label)=`` in the HTML (docutils' ``make_id``: lower
    case, runs of other characters as one hyphen), e.g. "one_number-rates" -> "one-number-rates"."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _link(stem: str, row: dict) -> str:
    name = _cell(row["name"]).replace("<", "&lt;").replace(">", "&gt;")
    # the section's MyST target as Sphinx writes it in the HTML (docutils ids: "one_number-x" -> "one-number-x")
    anchor = html_id(row.get("section") or "")
    return f'<a href="{stem}.html#{anchor}">{name}</a>' if anchor else f'<a href="{stem}.html">{name}</a>'


def write_results_page(folder: str | Path, title: str = "Results: what reproduces") -> Path:
    """Write ``folder/results.md`` from the claims files in ``folder`` and return its path."""
    folder = Path(folder)
    chapters = load_claims(folder)
    lines = [f"# {title}", "",
             "Every row of every chapter's claims tables, with its verdict: ✓ the criterion holds by more "
             "than its margin (twice the standard error over seeds or repeats, never less than rounding), "
             "✗ it fails by more than its margin, ? inconclusive (within the margin: more seeds or a larger "
             "scale would decide it), – not testable at the scale this book was run at. Checks of this book's "
             "own machinery (quadrature, samplers) are counted apart and are not claims of the papers.", ""]
    if not chapters:
        lines += ["No chapter has been executed yet: run `python -m gradprobe.book run`.", ""]
    # counts
    lines += ["## Counts", "", "| chapter | kind | " + " | ".join(f"{SYMBOLS[v]} {v}" for v in VERDICTS) + " |",
              "|---|---|" + "---|" * len(VERDICTS)]
    for chapter, (stem, data) in chapters.items():
        for kind in KINDS:
            counts = data.get("counts", {}).get(kind)
            if counts:
                lines.append(f'| <a href="{stem}.html">{stem}</a> | {KIND_PLURALS[kind]} | '
                             + " | ".join(str(counts.get(v, 0)) for v in VERDICTS) + " |")
    lines.append("")
    # rows
    for chapter, (stem, data) in chapters.items():
        lines += [f"## {stem}", "", "| | claim | kind | paper | this book | criterion | source |", "|---|---|---|---|---|---|---|"]
        rows = sorted(data["claims"], key=lambda r: r["kind"] == MACHINERY)  # machinery checks last
        for row in rows:
            lines.append(f"| {SYMBOLS[row['verdict']]} | {_link(stem, row)} | {row['kind']} | {_cell(row['paper'])} | "
                         f"{_cell(row['measured'])} | {_cell(row['criterion'])} | {_cell(row['source'])} |")
        lines.append("")
    # provenance
    lines += ["## Provenance of the runs", "", "| chapter | " + " | ".join(label for _, label in PROVENANCE) + " |",
              "|---|" + "---|" * len(PROVENANCE)]
    for chapter, (stem, data) in chapters.items():
        p = data.get("provenance", {})
        lines.append(f"| {stem} | " + " | ".join(_cell(p.get(key, "")) for key, _ in PROVENANCE) + " |")
    lines.append("")
    path = folder / "results.md"
    path.write_text("\n".join(lines))
    return path
