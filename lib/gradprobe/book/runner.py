"""Execute the chapter notebooks with papermill and build the HTML book.

    python -m gradprobe.book run [--scale smoke|book|paper] [--only NAME ...] [--force] [--no-wait]
                                 [--cpu-path avx2] [--scheduler ADDRESS] [--seed N] [--device D]
    python -m gradprobe.book build [--all] [--no-wait]

``run`` executes ``notebooks/*.ipynb`` into ``executed/`` (git-ignored; ``_toc.yml`` points
there), one notebook per subprocess so that its wall time and peak memory are its own, and writes
both to ``executed/timings.json``. A failing notebook is named with its failing cell; the others
still run; the exit status is then 1.

**Up to date.** A notebook is skipped when its executed copy is complete and its input stamp is
unchanged. The stamp hashes the source notebook, the parameters, every file of the library the
kernel imports (``<root>/lib/gradprobe``: all files, not only ``.py``, hidden files and
``__pycache__`` aside), the path of that copy, the Python and torch versions, the data
(:func:`gradprobe.data.cifar10.data_identity`: the ``$GRADPROBE_DATA`` folder, its top-level
files and the CIFAR-10 source with its size and modification time) and the environment
variables that change numbers (``ATEN_CPU_CAPABILITY``, ``MKL_CBWR``, ``extra_env``). Not in
it: the scheduler (where sweep trials run does not change their results) and the git commit
(the library's files are hashed themselves).

**Which copy.** The kernels get ``<root>/lib`` first on ``PYTHONPATH``, and after the last cell
the runner asks the kernel where ``gradprobe`` (and which torch) it imported: a kernel that used
another copy than the one hashed fails the notebook.

**Nothing half-written.** Each notebook runs in a private folder,
``executed/.run-<pid>-<token>/<notebook>/``: papermill writes the executed notebook there and it
is the kernel's working directory, so the claims file and ``figures/`` land there too. Only a
notebook that papermill completed is published into ``executed/``, by renames: its figures and
other files first, then the notebook, then its claims files, and its stamp in ``timings.json``
last (the record is invalidated before the first rename, so an interrupted publication is
re-executed). A run that is killed publishes nothing; the next run deletes its private folder.
The child process dies with the runner (``PR_SET_PDEATHSIG``) and the kernel with the child.

**Failures.** A failed notebook is published as a failure page under its own name (so ``build``
still builds every page): which cell failed and why, and the command that re-runs it; its
partial output is kept in ``executed/.failed/<notebook>.ipynb`` and its previous claims files
and figures are removed. A kernel that dies is reported at the cell that was running.

**One run at a time.** ``executed/.lock`` (an ``flock``, released by the operating system when
its holder dies, even by SIGKILL) admits one ``run`` or ``build`` per folder. Another one prints
who holds it and waits; with ``--no-wait`` it refuses (exit status 3).

**The kernels' environment.** ``MPLBACKEND`` is removed (inline figures), ``GRADPROBE_QUIET=1``,
``PYTHONHASHSEED=0``, ``GRADPROBE_GIT_COMMIT`` (``git rev-parse HEAD`` of the root, ``+dirty``
when the tree differs from it; ``unknown`` outside git), ``GRADPROBE_SCHEDULER`` from
``--scheduler`` (else as inherited; :mod:`gradprobe.sweep` reads it), and ``extra_env``
(``--cpu-path avx2``: ``ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2``). The commit, the scheduler
and the extra environment are recorded in ``timings.json``.

``build`` runs Jupyter Book (Sphinx) on the executed notebooks with warnings as errors. It refuses,
naming it, an executed notebook that papermill did not mark complete; before Sphinx it calls
``gradprobe.book.results.write_results_page(executed_dir)`` when that module exists.

Exit statuses: 0 done; 1 a notebook or the build failed; 2 bad arguments or no book root;
3 another run holds ``executed/`` (``--no-wait``); 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .scales import SCALES

__all__ = ["project_root", "notebooks", "run_inputs", "input_stamp", "kernel_environment", "git_commit",
           "incomplete", "run", "build", "main", "Busy", "IncompleteNotebook", "CPU_PATHS"]

#: Environment variables of ``--cpu-path``: a second CPU code path of torch and MKL.
CPU_PATHS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}}
#: Environment variables that change a kernel's numbers, and so its input stamp.
NUMERIC_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR")
_LOCK = ".lock"
_FAILED = ".failed"
_CHECK_TAG = "gradprobe-runner-check"
# Appended to every notebook before execution and removed from the published copy: which copies
# of gradprobe and torch did this kernel import?
_CHECK_SOURCE = """\
import json as _json, sys as _sys
print(_json.dumps({"gradprobe": [str(p) for p in getattr(_sys.modules.get("gradprobe"), "__path__", [])],
                   "torch": getattr(_sys.modules.get("torch"), "__version__", None)}))
del _json, _sys"""


class Busy(RuntimeError):
    """Another run or build holds the executed/ folder (and the caller chose not to wait)."""


class IncompleteNotebook(RuntimeError):
    """``build`` found an executed notebook that papermill did not complete."""


# ----------------------------------------------------------------------------- the book and its inputs

def project_root(start: str | Path | None = None) -> Path:
    """The book's root: the folder with ``_toc.yml`` and ``notebooks/``, looked for from ``start``
    upward; without ``start``, from the working directory upward, then beside this package's source."""
    candidates = [Path(start or Path.cwd()).resolve()]
    candidates += list(candidates[0].parents) + ([Path(__file__).resolve().parents[3]] if start is None else [])
    for folder in candidates:
        if _is_book_root(folder):
            return folder
    raise FileNotFoundError(f"no book root (a folder with _toc.yml and notebooks/) at or above {candidates[0]}; "
                            "run from inside the repository or pass --root")


def _is_book_root(folder: Path) -> bool:
    return (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir()


def _book_root(root: str | Path | None) -> Path:
    """``root`` checked (it must itself be a book root: nothing is created elsewhere), else found."""
    if root is None:
        return project_root()
    root = Path(root).resolve()
    if not _is_book_root(root):
        raise FileNotFoundError(f"{root} is not a book root (a folder with _toc.yml and notebooks/)"
                                f"{'' if root.exists() else '; it does not exist'}")
    return root


def notebooks(root: Path, only: list[str] | None = None) -> list[Path]:
    """Source notebooks in ``root/notebooks``, sorted; ``only`` keeps those whose name (with or
    without the number prefix and ``.ipynb``) matches."""
    found = sorted((root / "notebooks").glob("*.ipynb"))
    if not only:
        return found
    chosen = [p for p in found if any(o.removesuffix(".ipynb") in (p.stem, p.stem.split("_", 1)[-1]) for o in only)]
    missing = [o for o in only if not any(o.removesuffix(".ipynb") in (p.stem, p.stem.split("_", 1)[-1]) for p in found)]
    if missing:
        raise ValueError(f"no notebook named {', '.join(missing)}; available: {', '.join(p.stem for p in found)}")
    return chosen


def _library(root: Path) -> Path:
    """The copy of gradprobe the kernels import (and the stamp hashes): ``<root>/lib/gradprobe``."""
    return (Path(root) / "lib" / "gradprobe").resolve()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_inputs(root: Path, extra_env: dict | None = None) -> dict:
    """What every notebook of a run depends on besides its source and parameters: the library's
    path, the Python and torch versions, the data's identity and the numeric environment."""
    from ..data.cifar10 import data_identity

    env = {k: os.environ[k] for k in NUMERIC_ENV if k in os.environ} | dict(extra_env or {})
    return {"library": str(_library(root)), "python": platform.python_version(), "torch": _version("torch"),
            "data": data_identity(), "env": dict(sorted(env.items()))}


def input_stamp(root: Path, source: Path, parameters: dict, inputs: dict | None = None) -> str:
    """A hash of what an executed notebook depends on: its source, its parameters, every file of
    the library (``root/lib/gradprobe``, any suffix; hidden files, such as an editor's, and
    ``__pycache__`` aside) and ``inputs`` (:func:`run_inputs`; computed here when not given)."""
    inputs = run_inputs(root) if inputs is None else inputs
    h = hashlib.sha256(b"notebook\0" + source.read_bytes())
    library = Path(root) / "lib" / "gradprobe"
    for path in sorted(p for p in library.rglob("*") if p.is_file() and not any(
            part == "__pycache__" or part.startswith(".") for part in p.relative_to(library).parts)):
        data = path.read_bytes()
        h.update(b"\0file\0" + path.relative_to(library).as_posix().encode() + b"\0%d\0" % len(data) + data)
    h.update(b"\0inputs\0" + json.dumps({"parameters": parameters, **inputs}, sort_keys=True).encode())
    return h.hexdigest()


def git_commit(root: Path) -> str:
    """``git rev-parse HEAD`` of ``root``, with ``+dirty`` when the working tree differs from it
    (changed or untracked files that git does not ignore); ``unknown`` outside a git work tree."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=60).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def kernel_environment(root: Path, extra_env: dict | None = None, scheduler: str | None = None,
                       commit: str | None = None) -> dict:
    """The environment the kernels run in (see the module docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # Agg would stop inline figures
    path = [str(Path(root).resolve() / "lib")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env |= {"GRADPROBE_QUIET": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": os.pathsep.join(path),
            "GRADPROBE_GIT_COMMIT": git_commit(root) if commit is None else commit}
    if scheduler:
        env["GRADPROBE_SCHEDULER"] = scheduler
    return env | dict(extra_env or {})


# ----------------------------------------------------------------------------- executed notebooks

def _read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _failure_of(nb: dict) -> dict | None:
    return nb.get("metadata", {}).get("gradprobe", {}).get("failed")


def incomplete(path: Path) -> str | None:
    """Why papermill did not mark the executed notebook ``path`` complete, or None when it did (a
    failure page written by ``run`` also counts as complete: it is the chapter's page)."""
    try:
        nb = _read_notebook(path)
    except (OSError, ValueError) as err:
        return f"it cannot be read ({type(err).__name__}: {err})"
    if _failure_of(nb) is not None:
        return None
    run = nb.get("metadata", {}).get("papermill")
    if not run:
        return "it was not executed by papermill (no papermill metadata)"
    if run.get("exception"):
        return "papermill recorded an exception in it"
    if not run.get("end_time"):
        return "papermill did not finish it (no end time: the run was interrupted)"
    for index, cell in enumerate(nb.get("cells", [])):
        status = cell.get("metadata", {}).get("papermill", {})
        if not status.get("start_time"):
            return f"cell {index} was not executed"
        if status.get("status") != "completed":
            return f"cell {index} is {status.get('status')!r}"
    return None


def _title(source: Path) -> str:
    """The first ``# `` heading of a source notebook (its page title in the book)."""
    with contextlib.suppress(OSError, ValueError):
        for cell in _read_notebook(source).get("cells", []):
            text = "".join(cell.get("source", "")) if cell.get("cell_type") == "markdown" else ""
            for line in text.splitlines():
                if line.startswith("# "):
                    return line
    return f"# {source.stem}"


def _fence(text: str, info: str = "text") -> str:
    """``text`` in a code fence longer than any run of backticks inside it: shown, never parsed."""
    longest = max((len(run) for run in "".join(c if c == "`" else " " for c in text).split()), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def _failure_page(source: Path, failure: dict) -> dict:
    """The page a failed chapter gets in executed/: which cell failed, why, and how to re-run it."""
    at = (f"cell {failure['cell']} of the executed notebook" if failure.get("cell") is not None
          else failure["where"])
    shown = (f"In [{failure.get('exec_count')}]: {failure['source']}\n" if failure.get("cell") is not None else "")
    rerun = "Re-run this chapter, then build the book again:\n\n" + _fence(failure["rerun"], "bash")
    if failure.get("partial"):
        rerun += f"\n\nThe partial output of the failed run is in `{failure['partial']}`."
    cells = [_title(source) + "\n\n**This chapter failed to execute**, so the book shows this page instead of "
             f"its results. It failed at {at} (scale `{failure['scale']}`):",
             _fence(shown + failure["error"]),
             rerun]
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python"}, "gradprobe": {"failed": failure}},
            "cells": [{"cell_type": "markdown", "id": f"failure-{i}", "metadata": {}, "source": text}
                      for i, text in enumerate(cells)]}


# ----------------------------------------------------------------------------- one notebook, in a child process

def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (the kernel then exits by itself:
    ipykernel polls its parent), so a killed runner leaves no notebook running."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _cell_report(nb: dict, index: int | None) -> dict:
    if index is None:
        return {"cell": None, "exec_count": None, "source": ""}
    cell = nb["cells"][index]
    first_line = "".join(cell.get("source", "")).strip().splitlines()[:1]
    return {"cell": index, "exec_count": cell.get("execution_count"),
            "source": first_line[0][:80] if first_line else ""}


def _without_check_cell(nb) -> dict | None:
    """Remove the runner's check cell from ``nb`` (an executed NotebookNode); return it."""
    index = next((i for i, c in enumerate(nb.cells) if _CHECK_TAG in c.metadata.get("tags", [])), None)
    return None if index is None else nb.cells.pop(index)


def _kernel_check(cell, job: dict) -> str | None:
    """The error when the executed check ``cell`` shows that the kernel imported another gradprobe
    than the hashed one, or another torch than the stamped one; else None."""
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")
    try:
        seen = json.loads(text.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return f"the runner could not read which gradprobe the kernel imported (its check printed {text!r})"
    library = Path(job["library"])
    paths = [Path(p).resolve() for p in seen.get("gradprobe") or []]
    if paths and paths != [library]:
        return (f"the kernel imported gradprobe from {', '.join(map(str, paths))}, not from {library}, the copy "
                "that the input stamp hashed; make that folder a package (with __init__.py) or pass the "
                "--root whose lib/ the kernel imports")
    if seen.get("torch") and job["torch"] and seen["torch"] != job["torch"]:
        return (f"the kernel imported torch {seen['torch']}, but the runner's environment (and the input stamp) "
                f"has torch {job['torch']}: the python3 kernel is another Python; install the kernel of this "
                "environment with: python -m ipykernel install --sys-prefix --name python3")
    return None


def _execute(job_path: Path) -> dict:
    """Run in a child process: execute one notebook as ``job_path`` (JSON) says, in its private
    folder, and report peak memory and the failing cell."""
    job = json.loads(Path(job_path).read_text())
    _die_with_parent(job["parent_pid"])
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    os.environ.clear()
    os.environ.update(job["kernel_env"])  # the kernel inherits this process's environment
    folder, source = Path(job["folder"]), Path(job["source"])
    output = folder / source.name
    nb = nbformat.read(source, as_version=4)
    check = nbformat.v4.new_code_cell(_CHECK_SOURCE, metadata={"tags": [_CHECK_TAG, "remove-cell"]})
    nb.cells.append(check)
    augmented = folder / f".{source.stem}.input.ipynb"
    nbformat.write(nb, augmented)
    result = {"ok": True}
    try:
        papermill.execute_notebook(str(augmented), str(output), parameters=job["parameters"], cwd=str(folder),
                                   kernel_name="python3", progress_bar={"leave": False, "desc": source.stem})
    except PapermillExecutionError as err:
        first_line = (err.source or "").strip().splitlines()[:1]
        result = {"ok": False, "cell": err.cell_index, "exec_count": err.exec_count,
                  "source": first_line[0][:80] if first_line else "", "error": f"{err.ename}: {err.evalue}"}
    except Exception as err:  # noqa: BLE001 -- kernel died, no kernel, notebook unreadable: all reported
        # papermill saved the notebook at each cell's start: the last cell that started is the culprit
        index, partial = None, {}
        with contextlib.suppress(OSError, ValueError, KeyError):
            partial = _read_notebook(output)
            started = [i for i, c in enumerate(partial["cells"])
                       if c.get("metadata", {}).get("papermill", {}).get("start_time")]
            index = started[-1] if started else None
        died = type(err).__name__ == "DeadKernelError"
        result = {"ok": False, **_cell_report(partial, index), "error": f"{type(err).__name__}: {err}"
                  + (" (the kernel died: killed by a signal, or out of memory)" if died else "")}
    if output.is_file():  # the published (or kept partial) notebook: as if run from the source
        executed = nbformat.read(output, as_version=4)
        check = _without_check_cell(executed)
        executed.metadata.setdefault("papermill", {}).update(input_path=str(source), output_path=job["target"])
        error = _kernel_check(check, job) if result["ok"] and check is not None else None
        if error:
            result = {"ok": False, "cell": None, "exec_count": None, "source": "", "error": error,
                      "where": "the end (a check after the last cell)"}
        nbformat.write(executed, output)
    # the kernel was this process's child: its peak resident memory (kB on Linux)
    result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return result


# ----------------------------------------------------------------------------- the lock and publishing

@contextlib.contextmanager
def _locked(folder: Path, wait: bool, what: str):
    """Hold ``folder/.lock`` (one run or build per executed/ folder); wait for it, or raise Busy."""
    path = folder / _LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise Busy(f"{folder} is in use by {holder}; wait until it ends, or run without --no-wait "
                           "to wait for it") from None
            print(f"{folder} is in use by {holder}: waiting for it to end (Ctrl-C to give up; "
                  "--no-wait refuses instead)", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _publish(folder: Path, out: Path, name: str) -> list[str]:
    """Move a completed notebook's results from its private folder into ``out``: figures and other
    files, then the notebook, then the claims files; return what was published besides the notebook."""
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    claims = [p for p in files if len(p.parts) == 1 and p.name.endswith(".claims.json")]
    others = [p for p in files if p != Path(name) and p not in claims]
    for path in others + [Path(name)] + claims:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / path, out / path)
    return [p.as_posix() for p in others + claims]


def _remove_outputs(out: Path, stem: str, previous: dict, keep: list[str] = ()) -> None:
    """Delete what an earlier run published for notebook ``stem`` (claims, figures), except ``keep``."""
    recorded = previous.get("files", [f"{stem.split('_', 1)[-1]}.claims.json"])
    for name in set(recorded) - set(keep):
        path = (out / name).resolve()
        if path.is_relative_to(out):
            path.unlink(missing_ok=True)


def _read_timings(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}  # a damaged timings file: every notebook is out of date


def _record(path: Path, stem: str, entry: dict) -> None:
    timings = _read_timings(path)
    timings[stem] = entry
    _write_atomically(path, json.dumps(timings, indent=2) + "\n")


def _rerun_command(stem: str, parameters: dict, out: Path, root: Path, extra_env: dict) -> str:
    words = [f"{k}={shlex.quote(v)}" for k, v in sorted(extra_env.items())]
    words += ["python", "-m", "gradprobe.book", "run", "--scale", parameters["scale"], "--only", stem]
    if parameters["seed"] != 0:
        words += ["--seed", str(parameters["seed"])]
    if parameters["device"] != "auto":
        words += ["--device", parameters["device"]]
    if out != root / "executed":
        words += ["--out", shlex.quote(str(out))]
    return " ".join(words)


# ----------------------------------------------------------------------------- run and build

def run(scale: str = "book", only: list[str] | None = None, seed: int = 0, device: str = "auto",
        root: Path | None = None, out: Path | None = None, force: bool = False, extra_env: dict | None = None,
        scheduler: str | None = None, wait: bool = True) -> list[str]:
    """Execute the notebooks; return the names of those that failed (empty when all ran).

    ``extra_env`` is added to the kernels' environment (and to the stamp); ``scheduler`` is passed
    to them as ``GRADPROBE_SCHEDULER``; ``wait=False`` raises :class:`Busy` instead of waiting
    for another run of the same ``out`` folder."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    root = _book_root(root)
    sources = notebooks(root, only)
    out = root / "executed" if out is None else Path(out).resolve()
    extra_env = {str(k): str(v) for k, v in (extra_env or {}).items()}
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out, wait, f"gradprobe.book run --scale {scale}"):
        for stale in out.glob(".run-*"):  # left by a run that was killed: nobody else is running
            shutil.rmtree(stale, ignore_errors=True)
        work = out / f".run-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            return _run_locked(scale, sources, seed, device, root, out, work, force, extra_env, scheduler)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _run_locked(scale, sources, seed, device, root, out, work, force, extra_env, scheduler) -> list[str]:
    """``run`` holding the lock of ``out``, with ``work`` as its private folder."""
    timings_path = out / "timings.json"
    parameters = {"scale": scale, "seed": seed, "device": device}
    inputs = run_inputs(root, extra_env)
    commit = git_commit(root)
    scheduler = scheduler or os.environ.get("GRADPROBE_SCHEDULER") or None
    kernel_env = kernel_environment(root, extra_env, scheduler, commit)
    # the trials of gradprobe.sweep live with the run they belong to (resumed by a re-run into the
    # same folder), unless GRADPROBE_SWEEPS names a folder of its own (e.g. shared by a cluster)
    kernel_env.setdefault("GRADPROBE_SWEEPS", str(out / "sweeps" / scale))
    failed = []
    for source in tqdm(sources, desc=f"notebooks ({scale})", unit="nb"):
        target, stamp = out / source.name, input_stamp(root, source, parameters, inputs)
        previous = _read_timings(timings_path).get(source.stem, {})
        if (not force and target.is_file() and previous.get("stamp") == stamp and previous.get("ok")
                and incomplete(target) is None):
            tqdm.write(f"{source.stem}: up to date ({scale}), not re-executed")
            continue
        folder = work / source.stem
        folder.mkdir(parents=True)
        job = {"source": str(source), "target": str(target), "folder": str(folder), "parameters": parameters,
               "kernel_env": kernel_env, "library": inputs["library"], "torch": inputs["torch"]}
        start = time.perf_counter()
        result = _execute_in_child(job)
        seconds = time.perf_counter() - start
        entry = {**parameters, "seconds": round(seconds, 1), "peak_mb": result.get("peak_mb"), "ok": result["ok"],
                 "stamp": None, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit,
                 "scheduler": scheduler, "extra_env": extra_env}
        if result["ok"]:
            _publish_success(folder, out, source, previous, entry, stamp)
            tqdm.write(f"{source.stem}: {seconds:.1f} s, peak {result.get('peak_mb')} MB")
        else:
            failed.append(source.stem)
            _publish_failure(folder, out, root, source, previous, entry, result, extra_env)
    return failed


def _execute_in_child(job: dict) -> dict:
    """Execute one notebook in a child process (``python -m gradprobe.book _execute JOB``); its report."""
    folder = Path(job["folder"])
    path = folder / ".job.json"
    path.write_text(json.dumps(job | {"parent_pid": os.getpid()}))
    child = subprocess.run([sys.executable, "-m", "gradprobe.book", "_execute", str(path)],
                           cwd=folder, stdout=subprocess.PIPE, text=True)
    try:
        return json.loads(child.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"ok": False, "cell": None, "error": f"runner child exited {child.returncode}: {child.stdout[-500:]}"}


def _publish_success(folder: Path, out: Path, source: Path, previous: dict, entry: dict, stamp: str) -> None:
    """Publish a completed notebook; its stamp is written last (and invalidated while publishing)."""
    timings_path = out / "timings.json"
    _record(timings_path, source.stem, entry | {"ok": False, "publishing": True, "files": previous.get("files", [])})
    files = _publish(folder, out, source.name)
    _remove_outputs(out, source.stem, previous, keep=files)
    (out / _FAILED / source.name).unlink(missing_ok=True)
    _record(timings_path, source.stem, entry | {"stamp": stamp, "files": files})


def _publish_failure(folder: Path, out: Path, root: Path, source: Path, previous: dict, entry: dict,
                     result: dict, extra_env: dict) -> None:
    """Keep a failed notebook's partial output aside, remove its earlier results and put a page
    saying where and why it failed (and how to re-run it) in its place."""
    parameters = {k: entry[k] for k in ("scale", "seed", "device")}
    where = result.get("where") or (
        f"cell {result['cell']} of the executed notebook (In [{result.get('exec_count')}]: {result.get('source')!r})"
        if result.get("cell") is not None else "before any cell")
    partial, kept = folder / source.name, out / _FAILED / source.name
    kept.unlink(missing_ok=True)
    if partial.is_file():
        kept.parent.mkdir(exist_ok=True)
        os.replace(partial, kept)
    failure = {"where": where, "cell": result.get("cell"), "exec_count": result.get("exec_count"),
               "source": result.get("source", ""), "error": result["error"], "scale": entry["scale"],
               "partial": (str(kept.relative_to(root) if kept.is_relative_to(root) else kept)
                           if kept.is_file() else None),
               "rerun": _rerun_command(source.stem, parameters, out, root, extra_env)}
    _record(out / "timings.json", source.stem,
            entry | {"files": [], "cell": result.get("cell"), "error": result["error"]})
    _remove_outputs(out, source.stem, previous)
    target = out / source.name
    _write_atomically(target, json.dumps(_failure_page(source, failure), indent=1, ensure_ascii=False) + "\n")
    tqdm.write(f"FAILED {source.relative_to(root)}: {where}: {result['error']}\n"
               + (f"       the partial output is in {kept}; " if failure["partial"] else "       ")
               + f"{target.name} is now a page saying so\n"
               f"       re-run it with: {failure['rerun']}")


def _toc_pages(root: Path) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in (root / "_toc.yml").read_text().splitlines()
            if line.strip().startswith(("- file:", "file:", "root:"))]


def _write_results_page(executed: Path) -> None:
    """``gradprobe.book.results.write_results_page(executed)``, when that module exists."""
    name = f"{__package__}.results"
    try:
        results = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise  # the module exists but one of its own imports is missing: say so
        return
    results.write_results_page(executed)


def build(root: Path | None = None, all_pages: bool = False, wait: bool = True) -> Path:
    """Build the HTML book with Sphinx warnings as errors; return the path of ``index.html``.

    Refuses (:class:`IncompleteNotebook`, naming them) executed notebooks that papermill did not
    complete; holds ``executed/.lock`` while it builds."""
    root = _book_root(root)
    executed = root / "executed"
    with _locked(executed, wait, "gradprobe.book build") if executed.is_dir() else contextlib.nullcontext():
        if executed.is_dir():
            _write_results_page(executed)
        pages = _toc_pages(root)
        missing = [m for m in pages if not any((root / f"{m}{ext}").is_file() for ext in ("", ".ipynb", ".md"))]
        if missing:
            raise FileNotFoundError(f"_toc.yml names pages that do not exist yet: {', '.join(missing)}; "
                                    "execute the notebooks first: python -m gradprobe.book run")
        unfinished = [(page, why) for page in pages for path in [root / f"{page}.ipynb"]
                      if path.is_file() and (why := incomplete(path))]
        if unfinished:
            raise IncompleteNotebook(
                "refusing to build pages from notebooks that papermill did not complete: "
                + "; ".join(f"{page}.ipynb ({why})" for page, why in unfinished)
                + "; execute them again: python -m gradprobe.book run --only "
                + " --only ".join(Path(page).name for page, _ in unfinished))
        jb = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(root), "--warningiserror", "--keep-going"]
        subprocess.run(cmd + (["--all"] if all_pages else []), check=True, cwd=root)
    index = root / "_build" / "html" / "index.html"
    print(f"The book is at {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    """The command line, ``python -m gradprobe.book run|build [options]`` (see the module docstring);
    returns the exit status: 0 done, 1 a notebook or the build failed, 2 bad arguments, 3 busy."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_execute"]:  # internal: one notebook in a child process
        result = _execute(Path(argv[1]))
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    parser = argparse.ArgumentParser(prog="python -m gradprobe.book", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks with papermill into executed/")
    p_run.add_argument("--scale", default="book", choices=SCALES)
    p_run.add_argument("--only", action="append", metavar="NAME", help="run only this notebook (repeatable)")
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p_run.add_argument("--force", action="store_true", help="re-execute even when up to date")
    p_run.add_argument("--out", type=Path, help="folder for executed notebooks (default: executed/)")
    p_run.add_argument("--root", type=Path)
    p_run.add_argument("--no-wait", action="store_true", help="refuse (exit 3) instead of waiting for another run")
    p_run.add_argument("--cpu-path", choices=sorted(CPU_PATHS),
                       help="run the kernels on a second CPU code path (avx2: ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2)")
    p_run.add_argument("--scheduler", metavar="ADDRESS", default=os.environ.get("GRADPROBE_SCHEDULER") or None,
                       help="Dask scheduler for gradprobe.sweep, passed to the kernels as GRADPROBE_SCHEDULER "
                            "(default: $GRADPROBE_SCHEDULER)")
    p_build = sub.add_parser("build", help="build the HTML book into _build/html")
    p_build.add_argument("--root", type=Path)
    p_build.add_argument("--all", action="store_true", help="rebuild every page")
    p_build.add_argument("--no-wait", action="store_true", help="refuse (exit 3) instead of waiting for a run")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            failed = run(args.scale, args.only, args.seed, args.device, args.root, args.out, args.force,
                         extra_env=CPU_PATHS.get(args.cpu_path), scheduler=args.scheduler, wait=not args.no_wait)
            if failed:
                print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
                return 1
            return 0
        build(args.root, args.all, wait=not args.no_wait)
        return 0
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Busy as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except IncompleteNotebook as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as err:
        print(f"error: the book build failed (exit {err.returncode}); see the Sphinx messages above", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the notebook in progress was not published", file=sys.stderr)
        return 130
