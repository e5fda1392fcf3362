"""Every chapter notebook at smoke scale: papermill executes it, nbval re-executes the result and
compares every text output (the same numbers twice), and the executed notebooks build into a book."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradprobe.book import runner as book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = book.notebooks(ROOT)
pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def chapter_of(notebook: Path) -> str:
    """The chapter name a notebook's claims are filed under: its name without the number prefix."""
    return notebook.stem.split("_", 1)[1]


def claims_summary(out: Path, notebook: Path) -> str:
    """The line the chapter's rendered claims table ends with, from its claims file."""
    rows = json.loads((out / f"{chapter_of(notebook)}.claims.json").read_text())["claims"]
    return f"{sum(r['passed'] for r in rows)} of {len(rows)} claims hold"


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """Execute every notebook once at smoke scale into a temporary executed/ folder."""
    out = tmp_path_factory.mktemp("book") / "executed"
    failed = book.run("smoke", root=ROOT, out=out, force=True)
    timings = json.loads((out / "timings.json").read_text())
    print("\nsmoke timings:", {k: (v["seconds"], v["peak_mb"]) for k, v in timings.items()})
    return out, failed


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_reproduces_its_numbers(smoke, notebook):
    out, failed = smoke
    assert notebook.stem not in failed, f"{notebook.name} failed at smoke scale; see the runner's message above"
    executed = out / notebook.name
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | {"GRADPROBE_QUIET": "1", "PYTHONHASHSEED": "0"}
    check = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider", "-q",
         "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "--rootdir", str(out), str(executed)],
        cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert check.returncode == 0, f"nbval: a re-execution of {notebook.name} printed different outputs:\n{check.stdout[-6000:]}"
    claims = out / f"{chapter_of(notebook)}.claims.json"
    assert claims.is_file(), f"{notebook.name} writes its own claims file {claims.name} beside the executed notebook"
    table = json.loads(claims.read_text())
    assert table["chapter"] == chapter_of(notebook) and table["claims"], f"{claims.name} holds the chapter's claims"


def test_book_builds_with_figures_and_bibliography(smoke, tmp_path):
    out, failed = smoke
    root = tmp_path / "book-root"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book")
    shutil.copytree(out, root / "executed", ignore=shutil.ignore_patterns("*.json"))
    (root / "notebooks").mkdir()
    index = book.build(root)
    html = root / "_build" / "html"
    assert index.is_file()
    references = (html / "book" / "references.html").read_text()
    assert "Philipp" in references and "Bjorck" in references, "bibliography entries are rendered"
    assert "references.html#id" in (html / "book" / "intro.html").read_text(), "citations link to the references"
    for notebook in NOTEBOOKS:
        page = (html / "executed" / f"{notebook.stem}.html").read_text()
        assert "<img" in page, f"{notebook.stem}: figures are visible"
        assert claims_summary(out, notebook) in page, f"{notebook.stem}: its own claims table is shown"
