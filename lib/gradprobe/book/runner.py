"""Execute the chapter notebooks with papermill and build the HTML book.

    python -m gradprobe.book run [--scale smoke|book|paper] [--only NAME ...] [--force]
    python -m gradprobe.book build

``run`` executes ``notebooks/*.ipynb`` into ``executed/`` (git-ignored; ``_toc.yml`` points
there), one notebook per subprocess so that its wall time and peak memory are its own, and writes
both to ``executed/timings.json``. A notebook is skipped when its executed copy is up to date:
same source notebook, same library (``lib/gradprobe``), same parameters. A failing notebook is
named with its failing cell; the others still run; the exit status is then 1.

``build`` runs Jupyter Book (Sphinx) on the executed notebooks with warnings as errors.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .scales import SCALES

__all__ = ["project_root", "notebooks", "input_stamp", "run", "build", "main"]


def project_root(start: str | Path | None = None) -> Path:
    """The book's root: the folder with ``_toc.yml`` and ``notebooks/``, looked for from ``start``
    upward; without ``start``, from the working directory upward, then beside this package's source."""
    candidates = [Path(start or Path.cwd()).resolve()]
    candidates += list(candidates[0].parents) + ([Path(__file__).resolve().parents[3]] if start is None else [])
    for folder in candidates:
        if (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(f"no book root (a folder with _toc.yml and notebooks/) at or above {candidates[0]}; "
                            "run from inside the repository or pass --root")


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


def input_stamp(root: Path, source: Path, parameters: dict) -> str:
    """A hash of what an executed notebook depends on: its source, the library, its parameters."""
    h = hashlib.sha256(source.read_bytes())
    for path in sorted((root / "lib" / "gradprobe").rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    return h.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _execute(source: Path, target: Path, parameters: dict) -> dict:
    """Run in a child process: execute one notebook and report peak memory and the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    result = {"ok": True}
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters, cwd=str(target.parent),
                                   kernel_name="python3", progress_bar={"leave": False, "desc": source.stem})
    except PapermillExecutionError as err:
        first_line = (err.source or "").strip().splitlines()[:1]
        result = {"ok": False, "cell": err.cell_index, "exec_count": err.exec_count,
                  "source": first_line[0][:80] if first_line else "", "error": f"{err.ename}: {err.evalue}"}
    except Exception as err:  # kernel died, notebook unreadable, ...
        result = {"ok": False, "cell": None, "exec_count": None, "error": f"{type(err).__name__}: {err}"}
    # the kernel was this process's child: its peak resident memory (kB on Linux)
    result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return result


def run(scale: str = "book", only: list[str] | None = None, seed: int = 0, device: str = "auto",
        root: Path | None = None, out: Path | None = None, force: bool = False) -> list[str]:
    """Execute the notebooks; return the names of those that failed (empty when all ran)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    root = project_root() if root is None else Path(root).resolve()
    out = root / "executed" if out is None else Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    parameters = {"scale": scale, "seed": seed, "device": device}
    failed = []
    sources = notebooks(root, only)
    # MPLBACKEND=Agg (common on headless machines) would stop the kernel's inline figures
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | {"GRADPROBE_QUIET": "1", "PYTHONHASHSEED": "0"}
    for source in tqdm(sources, desc=f"notebooks ({scale})", unit="nb"):
        target, stamp = out / source.name, input_stamp(root, source, parameters)
        timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
        previous = timings.get(source.stem, {})
        if not force and target.is_file() and previous.get("stamp") == stamp and previous.get("ok"):
            tqdm.write(f"{source.stem}: up to date ({scale}), not re-executed")
            continue
        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-m", "gradprobe.book", "_execute", str(source), str(target),
                                json.dumps(parameters)], env=env, cwd=out, stdout=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        try:
            result = json.loads(child.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"ok": False, "cell": None, "error": f"runner child exited {child.returncode}: {child.stdout[-500:]}"}
        # re-read before writing, so that runs of other notebooks in parallel are not overwritten
        timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
        timings[source.stem] = {**parameters, "seconds": round(seconds, 1), "peak_mb": result.get("peak_mb"),
                                "ok": result["ok"], "stamp": stamp if result["ok"] else None,
                                "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_atomically(timings_path, json.dumps(timings, indent=2) + "\n")
        if result["ok"]:
            tqdm.write(f"{source.stem}: {seconds:.1f} s, peak {result.get('peak_mb')} MB")
        else:
            failed.append(source.stem)
            where = (f"cell {result['cell']} of the executed notebook (In [{result.get('exec_count')}]: "
                     f"{result.get('source')!r})" if result.get("cell") is not None else "before any cell")
            tqdm.write(f"FAILED {source.relative_to(root)}: {where}: {result['error']}\n"
                       f"       the partial output is in {target}")
    return failed


def build(root: Path | None = None, all_pages: bool = False) -> Path:
    """Build the HTML book with Sphinx warnings as errors; return the path of ``index.html``."""
    root = project_root() if root is None else Path(root).resolve()
    missing = [line.split(":", 1)[1].strip() for line in (root / "_toc.yml").read_text().splitlines()
               if line.strip().startswith(("- file:", "file:", "root:"))]
    missing = [m for m in missing if not any((root / f"{m}{ext}").is_file() for ext in ("", ".ipynb", ".md"))]
    if missing:
        raise FileNotFoundError(f"_toc.yml names pages that do not exist yet: {', '.join(missing)}; "
                                "execute the notebooks first: python -m gradprobe.book run")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(root), "--warningiserror", "--keep-going"]
    subprocess.run(cmd + (["--all"] if all_pages else []), check=True, cwd=root)
    index = root / "_build" / "html" / "index.html"
    print(f"The book is at {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    """The command line, ``python -m gradprobe.book run|build [options]`` (see the module docstring);
    returns the exit status: 0 done, 1 a notebook or the build failed, 2 bad arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_execute"]:  # internal: one notebook in a child process
        result = _execute(Path(argv[1]), Path(argv[2]), json.loads(argv[3]))
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
    p_build = sub.add_parser("build", help="build the HTML book into _build/html")
    p_build.add_argument("--root", type=Path)
    p_build.add_argument("--all", action="store_true", help="rebuild every page")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            failed = run(args.scale, args.only, args.seed, args.device, args.root, args.out, args.force)
            if failed:
                print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
                return 1
            return 0
        build(args.root, args.all)
        return 0
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"error: the book build failed (exit {err.returncode}); see the Sphinx messages above", file=sys.stderr)
        return 1

