"""The runner (papermill into executed/, timings, up-to-date skipping, failures) and the sources."""
import json
from pathlib import Path

import nbformat
import pytest

from gradprobe.book import runner as book

ROOT = Path(__file__).resolve().parents[2]


def _notebook(path: Path, *codes: str):
    cells = [nbformat.v4.new_markdown_cell("# A page")]
    params = nbformat.v4.new_code_cell('scale = "book"\nseed = 0\ndevice = "auto"')
    params.metadata["tags"] = ["parameters"]
    cells += [params] + [nbformat.v4.new_code_cell(c) for c in codes]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)


@pytest.fixture
def fake_book(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "lib" / "gradprobe").mkdir(parents=True)
    (tmp_path / "lib" / "gradprobe" / "x.py").write_text("A = 1\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    _notebook(tmp_path / "notebooks" / "01_ok.ipynb", "print('scale is', scale)",
              "import matplotlib; print('backend', matplotlib.get_backend())")
    _notebook(tmp_path / "notebooks" / "02_bad.ipynb", "x = 1", "raise ValueError('boom')")
    return tmp_path


@pytest.mark.slow
def test_run_executes_reports_failures_and_skips_up_to_date(fake_book, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # set on many headless machines: figures must still show
    failed = book.run("smoke", root=fake_book)
    out = capsys.readouterr().out
    assert failed == ["02_bad"]
    # papermill injects a parameters cell, so the raising cell is the executed notebook's 5th (index 4)
    assert ("FAILED notebooks/02_bad.ipynb: cell 4 of the executed notebook (In [4]: \"raise ValueError('boom')\"): "
            "ValueError: boom") in out
    executed = nbformat.read(fake_book / "executed" / "01_ok.ipynb", 4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "scale is smoke" in printed and "backend inline" in printed.replace("module://matplotlib_inline.backend_", "")
    timings = json.loads((fake_book / "executed" / "timings.json").read_text())
    assert timings["01_ok"]["ok"] and timings["01_ok"]["peak_mb"] > 0 and timings["01_ok"]["seconds"] > 0
    assert not timings["02_bad"]["ok"]

    # nothing changed: the good notebook is skipped, the failed one runs again
    assert book.run("smoke", root=fake_book) == ["02_bad"]
    assert "01_ok: up to date (smoke), not re-executed" in capsys.readouterr().out
    # the library changed: everything is out of date
    (fake_book / "lib" / "gradprobe" / "x.py").write_text("A = 2\n")
    assert book.run("smoke", root=fake_book, only=["ok"]) == []
    assert "up to date" not in capsys.readouterr().out
    # other parameters are another result
    assert book.main(["run", "--root", str(fake_book), "--scale", "book", "--only", "01_ok"]) == 0
    assert book.main(["run", "--root", str(fake_book), "--scale", "smoke"]) == 1


def test_input_stamp_depends_on_source_library_and_parameters(fake_book):
    src = fake_book / "notebooks" / "01_ok.ipynb"
    a = book.input_stamp(fake_book, src, {"scale": "smoke"})
    assert a == book.input_stamp(fake_book, src, {"scale": "smoke"})
    assert a != book.input_stamp(fake_book, src, {"scale": "book"})
    (fake_book / "lib" / "gradprobe" / "y.py").write_text("B = 1\n")
    assert a != book.input_stamp(fake_book, src, {"scale": "smoke"})


def test_runner_refuses_bad_arguments(fake_book, capsys):
    with pytest.raises(ValueError, match="no notebook named nope; available: 01_ok, 02_bad"):
        book.notebooks(fake_book, ["nope"])
    with pytest.raises(ValueError, match="scale must be one of"):
        book.run("huge", root=fake_book)
    assert book.main(["run", "--root", str(fake_book), "--only", "nope"]) == 2
    assert "error: no notebook named nope" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="_toc.yml names pages that do not exist yet: intro"):
        book.build(fake_book)
    with pytest.raises(FileNotFoundError, match="no book root"):
        book.project_root(fake_book.parent)


def test_project_root_is_this_repository():
    assert book.project_root(ROOT / "tests") == ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_sources_are_committed_clean_with_a_parameters_cell(path):
    nb = nbformat.read(path, 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs for c in code), "notebook sources are committed without outputs"
    assert not any(c.execution_count for c in code), "notebook sources are committed without execution counts"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert {line.split("=")[0].strip() for line in params[0].source.splitlines() if "=" in line} >= {"scale", "seed", "device"}
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_every_notebook_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"executed/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"
