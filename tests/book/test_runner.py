"""The runner (papermill into executed/, timings, up-to-date skipping, failures) and the sources.

The runs here are real: papermill, a kernel, and, where a test says so, a real SIGKILL of a real
``python -m gradprobe.book run`` process and two real runs at once."""
import html
import importlib.metadata
import json
import re
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import nbformat
import pytest

from gradprobe.book import runner as book

ROOT = Path(__file__).resolve().parents[2]
PAGES_CONFIG = """\
title: A fake book
only_build_toc_files: true
exclude_patterns: [".*", "**/.*", "_build", "notebooks", "lib"]
execute:
  execute_notebooks: "off"
sphinx:
  config:
    html_context:
      default_mode: light
"""
# A cell that says it has started (a file in the kernel's working directory, holding its pid),
# then sleeps for $NB_SLEEP seconds (none unless a test sets it).
SLOW = ("import os, pathlib, time\n"
        "pathlib.Path('started').write_text(str(os.getpid()))\n"
        "time.sleep(float(os.environ.get('NB_SLEEP', '0')))")
# A cell that writes a claims file and a figure into the kernel's working directory.
OUTPUTS = ("import json, pathlib\n"
           "pathlib.Path('slow.claims.json').write_text(json.dumps({'chapter': 'slow', 'claims': []}))\n"
           "pathlib.Path('figures').mkdir(exist_ok=True)\n"
           "pathlib.Path('figures/slow.png').write_bytes(b'not really a png')")


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
    monkeypatch.setenv("GRADPROBE_DATA", str(fake_book / "data"))
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
    assert not timings["02_bad"]["ok"] and timings["02_bad"]["cell"] == 4 and timings["02_bad"]["error"] == "ValueError: boom"
    # the failed chapter's page says so (the partial run is kept aside)
    page = json.loads((fake_book / "executed" / "02_bad.ipynb").read_text())
    assert page["metadata"]["gradprobe"]["failed"]["rerun"] == "python -m gradprobe.book run --scale smoke --only 02_bad"
    assert book.incomplete(fake_book / "executed" / "02_bad.ipynb") is None
    assert (fake_book / "executed" / ".failed" / "02_bad.ipynb").is_file()

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
    # another data folder is another input: out of date again
    capsys.readouterr()
    monkeypatch.setenv("GRADPROBE_DATA", str(fake_book / "other-data"))
    assert book.run("smoke", root=fake_book, only=["ok"]) == []
    assert "up to date" not in capsys.readouterr().out


def _book(root: Path, notebooks: dict[str, list[str]], pages: bool = False) -> Path:
    """A book root with ``notebooks/NAME.ipynb`` (a title, a parameters cell, then the given code
    cells) and a library ``lib/gradprobe`` (a package); with ``pages``, a ``_toc.yml`` naming
    every executed notebook, an intro page and a ``_config.yml`` that Jupyter Book can build."""
    (root / "notebooks").mkdir(parents=True)
    (root / "lib" / "gradprobe").mkdir(parents=True)
    (root / "lib" / "gradprobe" / "__init__.py").write_text("A = 1\n")
    for name, codes in notebooks.items():
        _notebook(root / "notebooks" / f"{name}.ipynb", *codes)
    toc = "format: jb-book\nroot: intro\n"
    if pages:
        toc += "chapters:\n" + "".join(f"  - file: executed/{name}\n" for name in notebooks)
        (root / "_config.yml").write_text(PAGES_CONFIG)
    (root / "_toc.yml").write_text(toc)
    (root / "intro.md").write_text("# Intro\n\nA fake book.\n")
    return root


def _cli(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``python -m gradprobe.book run --root ROOT --scale smoke ARGS`` in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "gradprobe.book", "run", "--root", str(root), "--scale", "smoke",
                             *args], env=os.environ | (env or {}), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(folder: Path, pattern: str, timeout: float = 120) -> Path:
    """The first non-empty file of ``folder`` matching ``pattern`` (hidden folders too), once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in folder.glob(pattern) if p.is_file() and p.stat().st_size]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} appeared in {folder} within {timeout} s")


def _running(pid: int) -> bool:
    """Whether process ``pid`` is alive (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _running(pid)


def _text(page: str) -> str:
    """The text of an HTML page's <main>, tags removed."""
    main = page[page.find("<main"):page.find("</main>")]
    return html.unescape(re.sub(r"<[^>]+>", "", main))


def _outputs(nb: Path) -> str:
    executed = nbformat.read(nb, 4)
    return "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)


def test_input_stamp_depends_on_source_library_and_parameters(fake_book):
    src = fake_book / "notebooks" / "01_ok.ipynb"
    a = book.input_stamp(fake_book, src, {"scale": "smoke"})
    assert a == book.input_stamp(fake_book, src, {"scale": "smoke"})
    assert a != book.input_stamp(fake_book, src, {"scale": "book"})
    (fake_book / "lib" / "gradprobe" / "y.py").write_text("B = 1\n")
    assert a != book.input_stamp(fake_book, src, {"scale": "smoke"})


def test_input_stamp_covers_every_library_file_torch_and_the_data(fake_book, tmp_path, monkeypatch):
    """Issue 16, defect 3: a new non-.py file in the library, another $GRADPROBE_DATA, a changed
    archive in it, another torch version and a second CPU code path each make another stamp."""
    src = fake_book / "notebooks" / "01_ok.ipynb"
    for name in ("data-a", "data-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cifar-10-python.tar.gz").write_bytes(b"an archive")
    monkeypatch.setenv("GRADPROBE_DATA", str(tmp_path / "data-a"))
    monkeypatch.setenv("GRADPROBE_CACHE", str(tmp_path / "cache"))
    stamp = lambda: book.input_stamp(fake_book, src, {"scale": "smoke"})  # noqa: E731
    seen = [stamp()]
    assert stamp() == seen[0], "the stamp is reproducible"
    (fake_book / "lib" / "gradprobe" / "table.json").write_text("{}")  # a file the library reads
    seen.append(stamp())
    monkeypatch.setenv("GRADPROBE_DATA", str(tmp_path / "data-b"))  # another data folder, same content
    seen.append(stamp())
    archive = tmp_path / "data-b" / "cifar-10-python.tar.gz"
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))  # copied again
    seen.append(stamp())
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9" if name == "torch" else real_version(name))
    seen.append(stamp())
    assert len(set(seen)) == len(seen), "each change gives another stamp"
    inputs = book.run_inputs(fake_book)
    assert inputs["torch"] == "9.9.9" and inputs["library"] == str((fake_book / "lib" / "gradprobe").resolve())
    assert book.run_inputs(fake_book, book.CPU_PATHS["avx2"])["env"] == {"ATEN_CPU_CAPABILITY": "avx2",
                                                                           "MKL_CBWR": "AVX2"}
    assert book.input_stamp(fake_book, src, {"scale": "smoke"}, book.run_inputs(fake_book, book.CPU_PATHS["avx2"])) \
        != seen[-1]
    # the loader's own cache files in the data folder (GRADPROBE_DATA = GRADPROBE_CACHE) change nothing
    monkeypatch.setenv("GRADPROBE_CACHE", str(tmp_path / "data-b"))
    before = stamp()
    (tmp_path / "data-b" / "cifar10-test-0123456789abcdef-images.npy").write_bytes(b"cache")
    assert stamp() == before


def test_git_commit_names_head_and_a_dirty_tree(tmp_path):
    assert book.git_commit(tmp_path) == "unknown"
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",  # noqa: E731
                                     *a], check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "a")
    head = git("rev-parse", "HEAD")
    assert book.git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("b")
    assert book.git_commit(tmp_path) == head + "+dirty"


def test_a_root_that_does_not_exist_creates_nothing(tmp_path, capsys):
    """Issue 16, defect 4: --root naming no folder is an error, and creates no executed/."""
    missing = tmp_path / "no" / "such" / "book"
    assert book.main(["run", "--root", str(missing), "--scale", "smoke"]) == 2
    assert f"error: {missing} is not a book root" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert book.main(["build", "--root", str(missing)]) == 2
    assert not (tmp_path / "no").exists()


def test_incomplete_names_what_papermill_did_not_finish(tmp_path):
    path = tmp_path / "nb.ipynb"
    _notebook(path, "x = 1")
    assert "not executed by papermill" in book.incomplete(path)
    path.write_text("")
    assert "cannot be read" in book.incomplete(path)


@pytest.mark.slow
def test_a_killed_run_publishes_nothing_and_leaves_nothing_running(tmp_path, capsys):
    """Issue 16, defect 1: SIGKILL of a real run, first while executing a notebook never run
    before, then while re-executing one (--force) that is up to date."""
    root = _book(tmp_path / "book", {"01_slow": [SLOW, OUTPUTS]}, pages=True)
    out = root / "executed"

    first = _cli(root, env={"NB_SLEEP": "300"})
    kernel = int(_wait_for(out, "**/started").read_text())
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (out / "01_slow.ipynb").exists(), "nothing of a killed run is published"
    assert not (out / "slow.claims.json").exists() and not (out / "figures").exists()
    assert _gone(kernel), "the kernel of a killed run exits with it"
    [half_run] = out.glob(".run-*/01_slow/01_slow.ipynb")  # papermill's own copy, saved at the cell's start
    half_run = half_run.read_text()

    assert book.run("smoke", root=root) == []  # executes: nothing counts as up to date
    assert "up to date" not in capsys.readouterr().out
    assert not list(out.glob(".run-*")), "the killed run's private folder is removed"
    assert book.incomplete(out / "01_slow.ipynb") is None
    published = {p: (out / p).read_bytes() for p in ("01_slow.ipynb", "slow.claims.json", "figures/slow.png",
                                                      "timings.json")}

    second = _cli(root, "--force", env={"NB_SLEEP": "300"})
    kernel = int(_wait_for(out, ".run-*/01_slow/started").read_text())
    second.send_signal(signal.SIGKILL)
    second.wait()
    assert _gone(kernel)
    assert {p: (out / p).read_bytes() for p in published} == published, "the complete earlier run stays as it was"
    assert book.run("smoke", root=root) == []
    assert "01_slow: up to date (smoke), not re-executed" in capsys.readouterr().out  # it is: same inputs
    assert not list(out.glob(".run-*"))

    # a half-run notebook (as an older runner, or papermill by hand, left it) is neither up to date ...
    (out / "01_slow.ipynb").write_text(half_run)
    with pytest.raises(book.IncompleteNotebook, match=r"executed/01_slow\.ipynb \(papermill did not finish it"):
        book.build(root)  # ... nor built
    assert book.run("smoke", root=root) == []
    assert "up to date" not in capsys.readouterr().out and book.incomplete(out / "01_slow.ipynb") is None


@pytest.mark.slow
def test_two_runs_at_once_take_turns(tmp_path):
    """Issue 16, defect 2: two real runs of one executed/ folder: the second waits for the first
    (saying so); with --no-wait a third refuses, naming the run that holds the folder."""
    log, release = tmp_path / "log", tmp_path / "release"
    logged = ("import os, time\n"
              "with open(os.environ['NB_LOG'], 'a') as f: f.write(f'start {time.time()}\\n')\n"
              "while not os.path.exists(os.environ['NB_RELEASE']): time.sleep(0.05)\n"
              "with open(os.environ['NB_LOG'], 'a') as f: f.write(f'end {time.time()}\\n')")
    root = _book(tmp_path / "book", {"01_slow": [SLOW, logged]})
    env = {"NB_LOG": str(log), "NB_RELEASE": str(release)}
    first = _cli(root, "--force", env=env)
    _wait_for(root / "executed", "**/started")  # the first run's kernel is in its notebook
    second = _cli(root, "--force", env=env)
    said = []
    threading.Thread(target=lambda: said.extend(second.stderr), daemon=True).start()
    deadline = time.monotonic() + 60
    while not any("waiting" in line for line in said) and time.monotonic() < deadline and second.poll() is None:
        time.sleep(0.05)
    refused = _cli(root, "--force", "--no-wait", env=env)
    refused_out, refused_err = refused.communicate(timeout=120)
    release.touch()  # the first run's notebook may end now
    first.communicate(timeout=120)
    second.wait(timeout=120)
    events = [line.split() for line in log.read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "end", "start", "end"], f"the runs overlapped: {events}"
    assert [float(e[1]) for e in events] == sorted(float(e[1]) for e in events)
    assert first.returncode == 0 and second.returncode == 0
    assert any("is in use by gradprobe.book run --scale smoke (pid" in line and "waiting" in line for line in said), said
    assert refused.returncode == 3, refused_err
    assert f"(pid {first.pid} " in refused_err and "--no-wait" in refused_err


@pytest.mark.slow
def test_a_dead_kernel_is_reported_at_its_cell(tmp_path, capsys):
    """Issue 16, defect 4: a kernel killed by a signal is named at the cell that was running."""
    root = _book(tmp_path, {"01_dies": ["x = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "y = 2"]})
    assert book.run("smoke", root=root) == ["01_dies"]
    out = capsys.readouterr().out
    # cells: title, parameters, papermill's injected parameters, x = 1, the kill
    assert "FAILED notebooks/01_dies.ipynb: cell 4 of the executed notebook (In [" in out, out
    assert "'import os, signal'): DeadKernelError" in out and "the kernel died" in out
    page = json.loads((root / "executed" / "01_dies.ipynb").read_text())
    assert page["metadata"]["gradprobe"]["failed"]["where"].startswith("cell 4 of the executed notebook")
    assert (root / "executed" / ".failed" / "01_dies.ipynb").is_file()


@pytest.mark.slow
def test_kernels_import_the_hashed_library_and_get_the_run_environment(tmp_path, capsys):
    """Issue 16, defect 3: the kernel imports <root>/lib/gradprobe, the copy that was hashed; a
    kernel that imports another copy fails the notebook. And the kernels' environment:
    --cpu-path, --scheduler and GRADPROBE_GIT_COMMIT, recorded in timings.json."""
    show = ("import os, gradprobe\nprint('gradprobe', gradprobe.__file__)\n"
            "for k in ('ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'GRADPROBE_SCHEDULER', 'GRADPROBE_GIT_COMMIT'):\n"
            "    print(k, os.environ.get(k))")
    root = _book(tmp_path / "book", {"01_env": [show]})
    assert book.run("smoke", root=root) == []
    printed = _outputs(root / "executed" / "01_env.ipynb")
    assert f"gradprobe {root / 'lib' / 'gradprobe' / '__init__.py'}\n" in printed

    (root / ".gitignore").write_text("executed/\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert book.main(["run", "--root", str(root), "--scale", "smoke", "--cpu-path", "avx2",
                      "--scheduler", "tcp://127.0.0.1:8786"]) == 0
    printed = _outputs(root / "executed" / "01_env.ipynb")
    for line in ("ATEN_CPU_CAPABILITY avx2", "MKL_CBWR AVX2", "GRADPROBE_SCHEDULER tcp://127.0.0.1:8786",
                 f"GRADPROBE_GIT_COMMIT {head}\n"):
        assert line in printed
    timing = json.loads((root / "executed" / "timings.json").read_text())["01_env"]
    assert timing["scheduler"] == "tcp://127.0.0.1:8786" and timing["commit"] == head
    assert timing["extra_env"] == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}

    # without __init__.py, <root>/lib/gradprobe is only a namespace portion: the kernel imports
    # the installed gradprobe instead, which the stamp did not hash
    (root / "lib" / "gradprobe" / "__init__.py").unlink()
    capsys.readouterr()
    assert book.run("smoke", root=root) == ["01_env"]
    installed = Path(__import__("gradprobe").__file__).parent
    assert (f"FAILED notebooks/01_env.ipynb: the end (a check after the last cell): the kernel imported gradprobe "
            f"from {installed}, not from {(root / 'lib' / 'gradprobe').resolve()}") in capsys.readouterr().out


def test_build_calls_the_results_page_hook_before_sphinx(tmp_path, monkeypatch):
    root = _book(tmp_path, {})
    (root / "executed").mkdir()
    calls = []
    monkeypatch.setattr(book.subprocess, "run", lambda cmd, **kw: calls.append(("sphinx", cmd[1])))
    monkeypatch.setitem(sys.modules, "gradprobe.book.results", None)  # absent: skipped
    book.build(root)
    assert calls == [("sphinx", "build")]
    results = types.ModuleType("gradprobe.book.results")
    results.write_results_page = lambda executed: calls.append(("results", executed))
    monkeypatch.setitem(sys.modules, "gradprobe.book.results", results)
    book.build(root)
    assert calls[1:] == [("results", root / "executed"), ("sphinx", "build")]


@pytest.mark.slow
def test_make_book_builds_every_page_and_fails_for_a_failed_chapter(tmp_path):
    """A chapter that failed gets a page saying where and why, with the command to re-run it; the
    book is built; `make book` exits non-zero."""
    root = _book(tmp_path / "book", {"01_ok": ["print('fine')"], "02_bad": ["x = 1", "raise ValueError('boom')"]},
                 pages=True)
    venv = tmp_path / "venv"  # what `make` takes for an installed environment
    venv.mkdir()
    for name in ("requirements.lock", "pyproject.toml"):
        (root / name).write_text("")
    (venv / ".installed").touch()
    made = subprocess.run(["make", "-C", str(root), "-f", str(ROOT / "Makefile"), "book", "SCALE=smoke",
                           f"PY={sys.executable}", f"VENV={venv}"], capture_output=True, text=True)
    assert made.returncode != 0, made.stdout[-3000:]
    assert "FAILED notebooks/02_bad.ipynb: cell 4 of the executed notebook" in made.stdout, made.stdout[-3000:]
    pages = root / "_build" / "html" / "executed"
    assert "fine" in (pages / "01_ok.html").read_text()
    page = _text((pages / "02_bad.html").read_text())
    for text in ("This chapter failed to execute", "It failed at cell 4 of the executed notebook (scale smoke)",
                 "In [4]: raise ValueError('boom')\nValueError: boom",
                 "python -m gradprobe.book run --scale smoke --only 02_bad", "executed/.failed/02_bad.ipynb"):
        assert text in page, text


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
