"""The sources as committed: notebooks without outputs, readable cells, notebook code visible to
tools (paired percent scripts in sync), and no lint error anywhere.

Notebook code is linted and searched for duplicates through its paired script
``notebooks/scripts/<notebook>.py`` (jupytext's percent format, paired by ``jupytext.toml``):
``make sync`` rewrites the scripts after a notebook changes, and this test fails when one is stale.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from gradprobe.book import runner

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = runner.notebooks(ROOT)
MAX_CELL_LINES, MAX_LINE, MAX_NOTEBOOK_CODE = 25, 100, 600
PLANNING_TAGS = ("[spec]", "[recon]")


def code_cells(path: Path):
    return [c for c in nbformat.read(path, 4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sources_are_committed_clean_with_a_parameters_cell(path):
    nb = nbformat.read(path, 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs for c in code), "notebook sources are committed without outputs"
    assert not any(c.execution_count for c in code), "notebook sources are committed without execution counts"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert {line.split("=")[0].strip() for line in params[0].source.splitlines() if "=" in line} >= {"scale", "seed", "device"}
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_are_short_and_speak_the_readers_language(path):
    nb = nbformat.read(path, 4)
    for i, cell in enumerate(nb.cells):
        lines = cell.source.splitlines()
        if cell.cell_type == "code":
            assert len(lines) <= MAX_CELL_LINES, f"cell {i} has {len(lines)} lines: figure logic belongs in gradprobe.chapters"
            long = [line for line in lines if len(line) > MAX_LINE]
            assert not long, f"cell {i} has lines over {MAX_LINE} characters: {long[0][:60]}..."
        else:
            for tag in PLANNING_TAGS:
                assert tag not in cell.source, f"cell {i} shows the reader {tag}, a tag of planning notes they do not have"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_cell_has_a_number_caption_and_alt_text(path):
    # MyST-NB reads them from the cell's "mystnb" metadata only: an "image" key beside it is ignored
    # and the picture's alt text becomes its file name
    for i, cell in enumerate(code_cells(path)):
        if "plots.show(" not in cell.source:
            continue
        meta = cell.metadata.get("mystnb", {})
        figure, image = meta.get("figure", {}), meta.get("image", {})
        assert figure.get("caption") and figure.get("name", "").startswith("fig-"), \
            f"code cell {i} shows a figure without mystnb.figure.caption and name"
        assert len(image.get("alt", "")) >= 20, f"code cell {i} shows a figure without mystnb.image.alt"


def test_notebooks_hold_little_code():
    total = sum(len([line for c in code_cells(p) for line in c.source.splitlines() if line.strip()]) for p in NOTEBOOKS)
    assert total <= MAX_NOTEBOOK_CODE, f"{total} lines of code in the notebooks: move logic into gradprobe.chapters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_paired_script_is_in_sync(path):
    script = ROOT / "notebooks" / "scripts" / f"{path.stem}.py"
    assert script.is_file(), f"{script.relative_to(ROOT)} is missing: run `make sync`"
    paired = jupytext.read(script)
    expected = [(c.cell_type, c.source.strip()) for c in nbformat.read(path, 4).cells]
    found = [(c.cell_type, c.source.strip()) for c in paired.cells]
    assert found == expected, f"{script.relative_to(ROOT)} differs from {path.name}: run `make sync`"


def test_every_notebook_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"executed/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None,
                    reason="ruff is not installed (pip install -r requirements.lock)")
def test_no_lint_errors_in_library_tests_benchmarks_and_notebook_scripts():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    check = subprocess.run([ruff, "check", "--no-cache", "--select", "F,E9", "lib", "tests", "benchmarks",
                            "notebooks/scripts"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-4000:]
