"""Settings and fixtures for the whole test session, made once here rather than in test files.

- one torch thread for the tests' small tensors (numbers a test compares do not depend on cores);
- every test closes the matplotlib figures it opened;
- ``cifar10_available``: skips a test at run time when ``$GRADPROBE_DATA`` holds no CIFAR-10 (never
  at collection: collecting the tests loads no data);
- ``smoke_run`` / ``smoke_run_second_cpu_path``: every notebook executed once at smoke scale by the
  book runner, on the default CPU code path and on a second one (``ATEN_CPU_CAPABILITY=avx2``,
  ``MKL_CBWR=AVX2``), each into a temporary ``executed/`` folder;
- ``built_book``: the HTML book built from the smoke run (used by tests/test_notebooks.py and by the
  real-browser test tests/test_browser.py).
"""
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SECOND_CPU_PATH = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "2"}


def pytest_configure(config):
    # One torch thread: the tests' tensors are small (one thread is as fast), and numbers that a
    # test compares do not depend on how many cores the machine has.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def close_figures():
    """Close the figures a test opened (figure functions return open figures)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def cifar10_available():
    """Skip (at run time) when no CIFAR-10 is found and none may be downloaded; CI always has it.
    Only a missing copy skips: a broken archive or cache is an error, not a skip."""
    from gradprobe.data.cifar10 import DataNotFound, cifar10

    try:
        cifar10("test", download=False)
    except DataNotFound as err:
        pytest.skip(f"CIFAR-10 not available (set GRADPROBE_DATA): {err}")


def _run_smoke(tmp_path_factory, name: str, extra_env: dict | None = None):
    from gradprobe.book import runner

    out = tmp_path_factory.mktemp(name) / "executed"
    # a sweep folder of this run's own: no trial of one run is reused by another
    extra_env = {**(extra_env or {}), "GRADPROBE_SWEEPS": str(out.parent / "sweeps")}
    failed = runner.run("smoke", root=ROOT, out=out, force=True, extra_env=extra_env)
    return out, failed


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(executed folder, names of failed notebooks) of every notebook at smoke scale."""
    return _run_smoke(tmp_path_factory, "smoke")


@pytest.fixture(scope="session")
def smoke_run_second_cpu_path(tmp_path_factory):
    """The same on a second CPU code path (other kernels, other rounding)."""
    return _run_smoke(tmp_path_factory, "smoke-avx2", SECOND_CPU_PATH)


def build_book(executed: Path, root: Path) -> Path:
    """Lay out a book root (configuration, book/ pages, the executed notebooks with their claims
    files and figures) and build it with the runner; return the HTML folder."""
    from gradprobe.book import runner

    root.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book")
    shutil.copytree(executed, root / "executed", ignore=shutil.ignore_patterns("sweeps", ".*"))
    (root / "notebooks").mkdir(exist_ok=True)
    runner.build(root)
    return root / "_build" / "html"


@pytest.fixture(scope="session")
def built_book(smoke_run, tmp_path_factory) -> Path:
    """The HTML folder of the book built from the smoke run."""
    out, _ = smoke_run
    return build_book(out, tmp_path_factory.mktemp("book") / "root")
