"""Every chapter notebook at smoke scale, as CI validates the book.

- papermill executes it (the book runner), nbval re-executes the result and compares every text
  output: the same numbers twice on one machine;
- its own claims file has, for every row, a kind, a verdict, a margin, the measurement with its
  uncertainty, and the run's provenance;
- executed again on a second CPU code path (``ATEN_CPU_CAPABILITY=avx2``, ``MKL_CBWR=AVX2``: other
  kernels, other rounding), every row has the same verdict (numbers may differ);
- the executed notebooks build into a book whose chapters show figures and their claims tables as
  HTML tables, with a results page gathering every chapter's rows.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradprobe.book import runner
from gradprobe.book.claims import KINDS, VERDICTS
from gradprobe.book.results import html_id

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = runner.notebooks(ROOT)
pytestmark = [pytest.mark.notebook, pytest.mark.slow]
PROVENANCE = {"git_commit", "scale", "seed", "torch", "python", "device", "cpu_capability", "threads", "date",
              "wall_seconds"}


def chapter_of(notebook: Path) -> str:
    """The chapter name a notebook's claims are filed under: its name without the number prefix."""
    return notebook.stem.split("_", 1)[1]


def claims_of(out: Path, notebook: Path) -> dict:
    path = out / f"{chapter_of(notebook)}.claims.json"
    assert path.is_file(), f"{notebook.name} writes its own claims file {path.name} beside the executed notebook"
    return json.loads(path.read_text())


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_reproduces_its_numbers(smoke_run, notebook, tmp_path):
    out, failed = smoke_run
    assert notebook.stem not in failed, f"{notebook.name} failed at smoke scale; see the runner's message above"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | {
        "GRADPROBE_QUIET": "1", "PYTHONHASHSEED": "0",
        "GRADPROBE_SWEEPS": str(tmp_path / "sweeps"),   # recompute every trial: nothing reused from the first run
    }
    check = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider", "-q",
         "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "--rootdir", str(out),
         str(out / notebook.name)],
        cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert check.returncode == 0, f"nbval: a re-execution of {notebook.name} printed different outputs:\n{check.stdout[-6000:]}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_claims_file_has_kind_verdict_margin_and_provenance(smoke_run, notebook):
    out, failed = smoke_run
    assert notebook.stem not in failed
    data = claims_of(out, notebook)
    assert data["chapter"] == chapter_of(notebook) and data["claims"], "the chapter's own rows"
    assert PROVENANCE <= set(data["provenance"]), f"missing provenance: {PROVENANCE - set(data['provenance'])}"
    assert data["provenance"]["scale"] == "smoke"
    for row in data["claims"]:
        assert row["kind"] in KINDS and row["verdict"] in VERDICTS, row
        assert row["criterion"] and row["measured"] and row["source"], row
        assert "margin" in row and "distance" in row, row
        assert row["section"], f"{row['name']!r} belongs to no section of its chapter"
    assert any(r["kind"] != "machinery check" for r in data["claims"]), "a chapter checks the paper, not only itself"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_same_verdicts_on_a_second_cpu_code_path(smoke_run, smoke_run_second_cpu_path, notebook):
    (out, failed), (out2, failed2) = smoke_run, smoke_run_second_cpu_path
    assert notebook.stem not in failed and notebook.stem not in failed2
    first = {r["name"]: r for r in claims_of(out, notebook)["claims"]}
    second = {r["name"]: r for r in claims_of(out2, notebook)["claims"]}
    assert claims_of(out2, notebook)["provenance"]["cpu_capability"] == "AVX2", "the second run took the AVX2 path"
    assert list(first) == list(second), "the same rows"
    differ = [f"{n!r}: {first[n]['verdict']} ({first[n]['measured']}) vs {second[n]['verdict']} ({second[n]['measured']})"
              for n in first if first[n]["verdict"] != second[n]["verdict"]]
    assert not differ, "verdicts that depend on the CPU's rounding:\n" + "\n".join(differ)


def test_book_builds_with_figures_claims_tables_and_results_page(smoke_run, built_book):
    out, _ = smoke_run
    html = built_book
    references = (html / "book" / "references.html").read_text()
    assert "Philipp" in references and "Bjorck" in references, "bibliography entries are rendered"
    assert "references.html#id" in (html / "book" / "intro.html").read_text(), "citations link to the references"
    results = (html / "executed" / "results.html").read_text()
    for notebook in NOTEBOOKS:
        page = (html / "executed" / f"{notebook.stem}.html").read_text()
        assert "<img" in page, f"{notebook.stem}: figures are visible"
        assert '<table class="gradprobe-claims' in page, f"{notebook.stem}: its claims tables are HTML tables"
        for row in claims_of(out, notebook)["claims"]:
            anchor = html_id(row["section"])
            assert f'{notebook.stem}.html#{anchor}' in results, f"results page links {row['name']!r}"
            assert f'id="{anchor}"' in page, f"{notebook.stem}: section {row['section']!r} has its anchor"
