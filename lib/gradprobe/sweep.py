"""Grids of independent trials, stored on disk, run here, in local processes or on a Dask cluster.

An *experiment* is a list of trials. A *trial* is a configuration (a frozen dataclass, or a
mapping, which :class:`Config` freezes) and a top-level function ``fn(config) -> result``::

    from dataclasses import dataclass
    from gradprobe import sweep

    @dataclass(frozen=True)
    class Setting:
        depth: int
        lr: float
        seed: int

    def train_one(setting):                       # at module level: workers import it by name
        gens = sweep.seed_trial(setting)          # generators derived from the configuration
        ...
        return {"loss": losses, "weights": model.state_dict()["0.weight"]}

    done = sweep.run(train_one, sweep.grid(Setting, depth=[10, 20], lr=[0.1, 1.0], seed=range(5)),
                     scheduler="local:4")         # or None (here), "processes:4", "tcp://host:8786"
    done.results[Setting(10, 0.1, 0)]             # the result of one trial
    done.failed                                   # configuration -> TrialError, for trials that raised
    done.to_frame()                               # one row per trial

**Storage.** Each trial's result is stored in its own folder,
``<root>/<module>.<function>/<hash>/``, where ``<hash>`` (:func:`config_hash`) is the first 16
hex digits of the SHA-256 of a canonical JSON of ``{"config": ..., "fn": "module:qualname",
"version": ...}``. ``root`` is the ``root=`` argument, else ``$GRADPROBE_SWEEPS``, else
``~/.cache/gradprobe/sweeps`` (next to the data cache of :mod:`gradprobe.data`: results are
expensive, so they live outside the repository, where ``make clean`` does not reach, and do not
depend on the working directory a notebook runs in). A trial folder holds:

- ``config.json``: the configuration, the function and the version (written when the trial is
  first started, so an unfinished folder says what it is);
- ``result.json``: written last, so its presence means "finished". The result's structure as JSON
  (floats written with Python's exact round-trip ``repr``; tuples, numpy scalars and dictionaries
  with non-string keys are tagged so they come back as they went in), the run time and where it
  ran;
- ``result.pt``: the tensors and numpy arrays of the result, with ``torch.save``, read back with
  ``torch.load(weights_only=True)`` (no pickle of arbitrary objects), bit for bit;
- ``error.json``: for a trial that raised: the error's type, message and traceback;
- ``checkpoint.pt``: the last :class:`Checkpointer` save of a trial in progress (deleted once the
  result is stored, unless ``keep_checkpoints=True``).

Every file is written atomically (a temporary file in the same folder, flushed to disk, then
``os.replace``), so a sweep killed at any moment leaves whole files or none. A re-run loads the
finished trials and runs the others; a trial that failed is reported again from its
``error.json`` without being re-run unless ``retry_failed=True``. Changing the configuration's
fields, the function's module or name, or ``version`` gives new hashes: bump ``version`` when the
trial's code changes in a way that changes its results.

**Determinism.** Before ``fn(config)`` runs, every executor does the same: torch is set to
``threads`` intra-op threads (1 unless told otherwise; float reductions may depend on the thread
count, so bitwise equality across executors needs the same count everywhere), and Python's,
NumPy's and torch's global generators are seeded from the configuration (:func:`seed_trial`), so a
result never depends on which worker ran the trial or what ran there before. One exception: in a
Dask worker, Python's global ``random`` is also drawn from by Dask's own threads (tornado's
jittered timers, retry back-off), so a trial that needs reproducible draws takes them from torch
(the generators of :func:`seed_trial`, or torch's global one) or NumPy, never from ``random``.
Tensors in results come back on the CPU. Bitwise equality across executors holds on one machine with one torch build;
on GPUs it also needs the trial to ask for deterministic algorithms.

**Executors** (``scheduler=``, else ``$GRADPROBE_SCHEDULER``, else in-process):

- ``None`` / ``"inprocess"``: here, one after another (the global random state and torch's thread
  count of the caller are restored after each trial);
- ``"processes:N"``: N local processes started with ``spawn`` (``"processes"``: one per core);
- ``"local:N"``: a Dask ``LocalCluster(n_workers=N, threads_per_worker=1, processes=True)``
  started for this sweep and closed after it (``"local"``: one worker per core);
- ``"tcp://host:port"`` (any Dask address) or a ``distributed.Client``: an existing Dask
  cluster. Its workers must be able to import ``fn`` and the configuration's class, and should run
  one thread each (``dask worker --nthreads 1``): trials sharing a process would share torch's
  global generator. The results are sent back to this process, which stores them, so only this
  process needs the sweep folder; checkpoints are written by the workers into the same folder, so
  resuming a killed trial from its checkpoint needs that folder on a shared file system. For one
  worker per GPU, pass the Client of a ``dask_cuda.LocalCUDACluster`` (or start workers with
  ``CUDA_VISIBLE_DEVICES`` set one GPU each).

A trial that raises is recorded as failed (:class:`TrialError`) and the sweep goes on. A worker
that dies (a crash, a kill, lost memory) fails its trials too, but that failure is not stored: the
next run tries again.

**Checkpoints.** A long trial calls :func:`checkpoint` to get a :class:`Checkpointer` for its
folder, restores from it on start and saves every N steps and at the end::

    ckpt = sweep.checkpoint(every=100, model=model, optimizer=opt, scheduler=sched,
                            generators=[gens.data], extra=history)   # history: a dict
    start = ckpt.restore()                        # 0, or the step of the last save
    for step in range(start, steps):
        ...                                       # one training step
        ckpt.maybe_save(step + 1, final=step + 1 == steps)

A trial killed between two saves resumes from the last one and ends with the same result, bit for
bit, as an uninterrupted run: the model, optimizer and scheduler states, the given generators,
torch's (and CUDA's), NumPy's and Python's global generators and the ``extra`` dictionary are all
saved and restored.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import dataclasses
import hashlib
import importlib
import io
import itertools
import json
import logging
import multiprocessing
import os
import random
import socket
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from gradprobe.checks import nonnegative_int, positive, positive_int
from gradprobe.runtime import Generators, progress, seed

__all__ = ["library_version", "Config", "grid", "config_hash", "trial_seed", "seed_trial", "run", "SweepResult",
           "TrialError", "SweepError", "Checkpointer", "checkpoint", "default_root"]

HASH_DIGITS = 16
_FORMAT = 1  # version of the files' layout, stored in them


# ----------------------------------------------------------------------------- configurations

def _canonical(value, where: str):
    """``value`` as plain JSON data (dicts with sorted string keys, lists, numbers, strings), or a
    TypeError naming where in the configuration the offending value is."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (tuple, list)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"{where} has the key {k!r}; configuration mappings need string keys")
        return {k: _canonical(v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name), f"{where}.{f.name}")
                for f in dataclasses.fields(value)}
    raise TypeError(f"{where} is a {type(value).__name__} ({value!r:.60}), which has no canonical "
                    "JSON form; a configuration holds None, bool, int, float, str, tuples, mappings "
                    "with string keys and dataclasses of these")


def _canonical_json(value, where: str = "config") -> str:
    return json.dumps(_canonical(value, where), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=True)


def _freeze(value, where: str):
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, Mapping) and not isinstance(value, Config):
        return Config(value)
    if isinstance(value, (set, frozenset)):
        raise TypeError(f"{where} is a set, which has no canonical order; use a sorted tuple")
    return value


class Config(Mapping):
    """A frozen, hashable mapping of names to values, to use as a trial's configuration.

    ``Config(lr=0.1, depth=20)`` or ``Config({"lr": 0.1, "depth": 20})``; lists become tuples and
    nested mappings nested ``Config`` s. Values are read as ``config["lr"]`` or ``config.lr``.
    Two configs are equal when their canonical JSON is (so key order does not matter, but 1 and
    1.0 differ). Values that have no canonical JSON form (tensors, arrays, objects) are refused.
    """

    __slots__ = ("_items", "_json")

    def __init__(self, mapping=(), /, **values):
        items = dict(mapping, **values)
        for key in items:
            if not isinstance(key, str):
                raise TypeError(f"Config keys must be strings, got {key!r}")
        items = {k: _freeze(v, f"config.{k}") for k, v in items.items()}
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_json", _canonical_json(items))

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"this Config has no {name!r}; it has {sorted(self._items)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("a Config is frozen; build a new one instead")

    def __hash__(self):
        return hash(self._json)

    def __eq__(self, other):
        if isinstance(other, Config):
            return self._json == other._json
        if isinstance(other, Mapping):
            try:
                return self._json == Config(other)._json
            except TypeError:
                return False
        return NotImplemented

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self._items.items()) + ")"

    def __reduce__(self):
        return (Config, (self._items,))


def _as_config(config):
    """The configuration as given when it is a frozen dataclass or a Config; a Config for any
    other mapping; a TypeError with the reason otherwise. Checks it is hashable and has a
    canonical JSON form."""
    if isinstance(config, Mapping) and not isinstance(config, Config):
        config = Config(config)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        if not type(config).__dataclass_params__.frozen:
            raise TypeError(f"configuration {config!r} is a mutable dataclass; declare "
                            f"{type(config).__name__} with @dataclass(frozen=True)")
    elif not isinstance(config, Config):
        raise TypeError(f"a configuration is a frozen dataclass or a mapping, got "
                        f"{type(config).__name__} {config!r:.60}")
    try:
        hash(config)
    except TypeError as exc:
        raise TypeError(f"configuration {config!r:.120} is not hashable ({exc}); use tuples "
                        "instead of lists and frozen dataclasses inside it") from None
    _canonical_json(config)
    return config


def _fields(config) -> dict:
    """The top-level fields of a configuration, in order, for tables."""
    if isinstance(config, Config):
        return dict(config)
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def grid(make=None, /, **axes) -> list:
    """Every combination of the values of ``axes`` (name -> sequence of values), the last axis
    varying fastest, as a list of configurations: ``make(**point)`` for each point when ``make`` is
    given (a frozen dataclass, say), else :class:`Config` s.

    ``grid(Setting, depth=[10, 20], seed=range(3))`` is six ``Setting`` s.
    """
    if not axes:
        raise ValueError("grid needs at least one axis, e.g. grid(seed=range(5))")
    values = []
    for name, axis in axes.items():
        if isinstance(axis, (str, bytes)) or not hasattr(axis, "__iter__"):
            raise ValueError(f"grid axis {name!r} must be a sequence of values, got {axis!r}; "
                             f"write {name}=[{axis!r}] for a single value")
        axis = list(axis)
        if not axis:
            raise ValueError(f"grid axis {name!r} is empty")
        values.append(axis)
    build = Config if make is None else make
    return [_as_config(build(**dict(zip(axes, point)))) for point in itertools.product(*values)]


def _function_ref(fn) -> tuple[str, str, bool]:
    """``("module.qualname", "module:qualname", in_main)`` for a function importable by name;
    a ValueError for a lambda, a local function or one not found under its name."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not callable(fn) or not module or not qualname:
        raise ValueError(f"fn must be a function defined at the top level of a module, got {fn!r}")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise ValueError(f"fn {module}.{qualname} is a lambda or a local function; define it at the "
                         "top level of a module, so its name identifies it and workers can import it")
    in_main = module in ("__main__", "__mp_main__")
    if not in_main:
        try:
            found = _import_ref(f"{module}:{qualname}")
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"fn {module}.{qualname} cannot be imported by its name ({exc}); "
                             "define it at the top level of an importable module") from None
        if found is not fn:
            raise ValueError(f"importing {module}:{qualname} gives {found!r}, not fn; define fn at "
                             "the top level of its module under its own name")
    return f"{module}.{qualname}", f"{module}:{qualname}", in_main


def _import_ref(ref: str):
    module, _, qualname = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def config_hash(config, fn, version: str | None = None) -> str:
    """The name of the trial's folder: the first 16 hex digits of the SHA-256 of the canonical
    JSON of the configuration, the function's ``module:qualname`` and ``version`` (default
    :func:`library_version`, as in :func:`run`)."""
    if version is None:
        version = library_version()
    if not isinstance(version, str):
        raise ValueError(f"version must be a string, got {version!r}")
    _, ref, _ = _function_ref(fn)
    return _hash(_as_config(config), ref, version)


def _hash(config, ref: str, version: str) -> str:
    text = _canonical_json({"config": _canonical(config, "config"), "fn": ref, "version": version})
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:HASH_DIGITS]


# ----------------------------------------------------------------------------- seeding

def trial_seed(config, fields=None) -> int:
    """A 63-bit seed derived from the configuration's canonical JSON (from the named ``fields``
    only, when given: ``fields=("seed",)`` gives settings that differ in anything but ``seed``
    the same initial weights). The same on every machine, process and Python run."""
    config = _as_config(config)
    values = _fields(config)
    if fields is not None:
        if isinstance(fields, str):
            fields = (fields,)
        missing = [f for f in fields if f not in values]
        if missing:
            raise ValueError(f"trial_seed: the configuration has no field(s) {missing}; it has {list(values)}")
        values = {f: values[f] for f in fields}
    digest = hashlib.sha256(b"gradprobe.sweep seed\0" + _canonical_json(values).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def seed_trial(config, fields=None) -> Generators:
    """Seed Python's, NumPy's and torch's global generators from the configuration
    (:func:`trial_seed`) and return two torch generators derived from it, ``.data`` and
    ``.weights`` (:func:`gradprobe.runtime.seed`). Every executor calls it before the trial; a
    trial calls it again to get the generators (same seed, same states)."""
    return seed(trial_seed(config, fields))


# ----------------------------------------------------------------------------- results on disk

def default_root() -> Path:
    """Where sweeps are stored: ``$GRADPROBE_SWEEPS``, else ``~/.cache/gradprobe/sweeps``."""
    env = os.environ.get("GRADPROBE_SWEEPS", "").strip()
    return Path(env).expanduser() if env else Path("~/.cache/gradprobe/sweeps").expanduser()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, flushed to disk,
    then renamed over ``path``: readers see the old file or the new one, never part of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode("utf-8")


_TAGS = ("__tensor__", "__ndarray__", "__npscalar__", "__tuple__", "__dict__")


def _encode(value, tensors: list, where: str = "result"):
    """``value`` as JSON data, with tensors and numpy arrays replaced by their index in
    ``tensors`` (CPU copies; numpy data as tensors of the same dtype)."""
    if isinstance(value, torch.Tensor):
        tensors.append(value.detach().to("cpu", copy=True))
        return {"__tensor__": len(tensors) - 1}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        try:
            tensors.append(torch.from_numpy(np.array(array, order="C", copy=True)))
        except TypeError:
            raise TypeError(f"{where} is a numpy array of dtype {array.dtype}, which torch cannot hold; "
                            "store numbers, booleans or convert it") from None
        return {"__ndarray__" if isinstance(value, np.ndarray) else "__npscalar__": len(tensors) - 1}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in value):
            return {k: _encode(v, tensors, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__dict__": [[_encode(k, tensors, f"{where} key"), _encode(v, tensors, f"{where}[{k!r}]")]
                             for k, v in value.items()]}
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a sweep "
                    "cannot store; results are built from None, bool, int, float, str, list, tuple, "
                    "dict, torch tensors and numpy arrays and scalars")


def _decode(data, tensors: list):
    if isinstance(data, list):
        return [_decode(v, tensors) for v in data]
    if isinstance(data, dict):
        if len(data) == 1:
            (tag, payload), = data.items()
            if tag == "__tensor__":
                return tensors[payload]
            if tag == "__ndarray__":
                return tensors[payload].numpy()
            if tag == "__npscalar__":
                return tensors[payload].numpy()[()]
            if tag == "__tuple__":
                return tuple(_decode(v, tensors) for v in payload)
            if tag == "__dict__":
                return {_decode(k, tensors): _decode(v, tensors) for k, v in payload}
        return {k: _decode(v, tensors) for k, v in data.items()}
    return data


@dataclasses.dataclass(frozen=True)
class TrialError:
    """Why a trial failed: the exception's type and message and the traceback of where it was
    raised. ``stored`` says whether it was recorded on disk (the trial raised) or not (its worker
    died or could not import it; a re-run tries again)."""

    type: str
    message: str
    traceback: str
    stored: bool = True

    def __str__(self):
        return f"{self.type}: {self.message}"


class SweepError(RuntimeError):
    """Raised for failed trials by :meth:`SweepResult.raise_failures` and ``result[config]``."""


class _Store:
    """The folder of one function's trials: ``root/<module>.<qualname>/<hash>/``."""

    def __init__(self, root: Path, fn_name: str, fn_ref: str, version: str):
        self.folder = root / fn_name
        self.fn_ref, self.version = fn_ref, version

    def trial_dir(self, key: str) -> Path:
        return self.folder / key

    def load(self, key: str):
        """``("ok", result, seconds)``, ``("failed", TrialError, seconds)`` or None."""
        folder = self.trial_dir(key)
        try:
            record = json.loads((folder / "result.json").read_text())
            tensors = []
            if record["tensors"]:
                tensors = torch.load(folder / "result.pt", map_location="cpu", weights_only=True)
            return "ok", _decode(record["result"], tensors), record["seconds"]
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 -- a damaged record is recomputed, not fatal
            warnings.warn(f"sweep: cannot read the result in {folder} ({type(exc).__name__}: {exc}); "
                          "running the trial again", stacklevel=3)
            return None
        try:
            record = json.loads((folder / "error.json").read_text())
            return "failed", TrialError(**record["error"]), record["seconds"]
        except FileNotFoundError:
            return None

    def _header(self, key, config) -> dict:
        return {"format": _FORMAT, "hash": key, "fn": self.fn_ref, "version": self.version,
                "config": _canonical(config, "config")}

    def start(self, key: str, config) -> None:
        folder = self.trial_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "config.json").exists():
            _atomic_write(folder / "config.json", _json_bytes(self._header(key, config)))

    def save(self, key: str, config, outcome: dict, keep_checkpoints: bool) -> None:
        folder = self.trial_dir(key)
        record = self._header(key, config) | {"seconds": outcome["seconds"], "worker": outcome["worker"],
                                              "torch": torch.__version__}
        if outcome["ok"]:
            if outcome["tensors"]:
                buffer = io.BytesIO()
                torch.save(outcome["tensors"], buffer)
                _atomic_write(folder / "result.pt", buffer.getvalue())
            record |= {"tensors": len(outcome["tensors"]), "result": outcome["result"]}
            _atomic_write(folder / "result.json", _json_bytes(record))
            with contextlib.suppress(FileNotFoundError):
                (folder / "error.json").unlink()
            if not keep_checkpoints:
                with contextlib.suppress(FileNotFoundError):
                    (folder / "checkpoint.pt").unlink()
        elif outcome["store"]:
            _atomic_write(folder / "error.json", _json_bytes(record | {"error": outcome["error"]}))


# ----------------------------------------------------------------------------- running one trial

_current_trial_dir: contextvars.ContextVar[str | None] = contextvars.ContextVar("gradprobe_sweep_trial",
                                                                               default=None)


def _error(exc: BaseException, store: bool) -> dict:
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {"type": name, "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)), "stored": store}


def _execute(fn, config, trial_dir: str, threads: int | None) -> dict:
    """Run one trial in this process: ``threads`` torch threads, global generators seeded from
    the configuration. Returns the outcome (the encoded result, or the error); never raises an
    ``Exception``."""
    start = time.perf_counter()
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    old_threads = torch.get_num_threads()
    token = _current_trial_dir.set(trial_dir)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        seed_trial(config)
        result = fn(config)
        tensors = []
        encoded = _encode(result, tensors)
        return {"ok": True, "result": encoded, "tensors": tensors,
                "seconds": time.perf_counter() - start, "worker": worker}
    except Exception as exc:  # noqa: BLE001 -- a failing trial is recorded, the sweep goes on
        return {"ok": False, "error": _error(exc, store=True), "store": True,
                "seconds": time.perf_counter() - start, "worker": worker}
    finally:
        _current_trial_dir.reset(token)
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)


def _execute_by_name(fn_ref: str, config, trial_dir: str, threads: int | None) -> dict:
    """:func:`_execute` for a worker, which imports the function by its name."""
    try:
        fn = _import_ref(fn_ref)
    except Exception as exc:  # noqa: BLE001 -- the worker's environment, not the trial, is at fault
        return _lost(exc)
    return _execute(fn, config, trial_dir, threads)


def _lost(exc: BaseException) -> dict:
    """The outcome of a trial whose worker failed it (died, could not import): not stored."""
    return {"ok": False, "error": _error(exc, store=False), "store": False, "seconds": float("nan"),
            "worker": None}


@contextlib.contextmanager
def _caller_random_state():
    """Leave Python's, NumPy's and torch's global generators as they were."""
    py, np_state, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


# ----------------------------------------------------------------------------- executors

def _parse_scheduler(scheduler) -> tuple:
    """``("inprocess",)``, ``("processes", n)``, ``("local", n)``, ``("address", text, source)``
    or ``("client", client)`` from the argument, else ``$GRADPROBE_SCHEDULER``."""
    source = "the scheduler argument"
    if scheduler is None:
        scheduler = os.environ.get("GRADPROBE_SCHEDULER", "").strip() or None
        source = "$GRADPROBE_SCHEDULER"
        if scheduler is None:
            return ("inprocess",)
    distributed = sys.modules.get("distributed")  # a Client exists only if distributed was imported
    if distributed is not None and isinstance(scheduler, distributed.Client):
        return ("client", scheduler)
    if not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be None, a string or a distributed.Client, got {scheduler!r}")
    text = scheduler.strip()
    kind, _, count = text.partition(":")
    if text in ("inprocess", "in-process"):
        return ("inprocess",)
    if kind in ("processes", "local") and "//" not in count:
        if not count:
            return (kind, os.cpu_count() or 1)
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"scheduler {text!r} (from {source}): the number of workers after "
                             f"'{kind}:' must be a positive integer")
        return (kind, int(count))
    if "://" in text:
        return ("address", text, source)
    raise ValueError(f"unknown scheduler {text!r} (from {source}); use 'inprocess', 'processes:N' "
                     "(local processes), 'local:N' (a Dask LocalCluster of N workers) or the address "
                     "of a Dask scheduler such as 'tcp://host:8786'")


def _run_inprocess(fn, jobs, threads):
    for job in jobs:
        with _caller_random_state():
            outcome = _execute(fn, job.config, str(job.dir), threads)
        yield job, outcome


def _run_processes(fn_ref, jobs, threads, workers):
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                                  mp_context=multiprocessing.get_context("spawn"))
    finished = False
    try:
        futures = {pool.submit(_execute_by_name, fn_ref, job.config, str(job.dir), threads): job
                   for job in jobs}
        for future in concurrent.futures.as_completed(list(futures)):
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 -- a dead worker (BrokenProcessPool)
                outcome = _lost(exc)
            yield futures.pop(future), outcome  # pop: a stored result is not kept in memory twice
        finished = True
    finally:
        if not finished:  # interrupted: do not wait for trials that may run for hours
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=finished, cancel_futures=True)


@contextlib.contextmanager
def _dask_client(spec, connect_timeout: float):
    """A ``distributed.Client`` for the parsed scheduler; closes what it started."""
    try:
        import distributed
    except ImportError:
        raise ImportError("a Dask scheduler was asked for but dask.distributed is not installed; "
                          "pip install dask distributed") from None
    if spec[0] == "client":
        yield spec[1]
        return
    if spec[0] == "local":
        with distributed.LocalCluster(n_workers=spec[1], threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            yield client
        return
    address, source = spec[1], spec[2]
    try:
        client = distributed.Client(address, timeout=connect_timeout, set_as_default=False)
    except OSError as exc:
        here = "unset GRADPROBE_SCHEDULER" if source.startswith("$") else "pass scheduler=None"
        raise ConnectionError(f"cannot reach the Dask scheduler at {address!r} (from {source}) within "
                              f"{connect_timeout:g} s: {exc}. Start one (dask scheduler; dask worker "
                              f"{address} --nthreads 1), fix the address, or {here} to run "
                              "here") from None
    with client:
        yield client


def _run_dask(client, fn_ref, fn_name, jobs, threads):
    from distributed import as_completed
    many = {addr: n for addr, n in client.nthreads().items() if n > 1}
    if many:
        warnings.warn(f"Dask workers with more than one thread ({many}) run trials side by side in one "
                      "process, sharing torch's global generator: start workers with --nthreads 1 "
                      "for reproducible trials", stacklevel=4)
    futures = {}
    try:
        for job in jobs:
            future = client.submit(_execute_by_name, fn_ref, job.config, str(job.dir), threads,
                                   key=f"{fn_name}-{job.key}-{uuid.uuid4().hex[:8]}", pure=False)
            futures[future] = job
        for future in as_completed(list(futures), loop=client.loop):  # not the default client's loop
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001 -- KilledWorker, lost connection
                outcome = _lost(exc)
            yield futures.pop(future), outcome  # pop: lets the worker forget the result
    finally:
        client.cancel([f for f in futures if not f.done()])


@dataclasses.dataclass(frozen=True)
class _Job:
    config: object
    key: str
    dir: Path


# ----------------------------------------------------------------------------- the sweep

@dataclasses.dataclass
class SweepResult:
    """What a sweep gives back, in the order of the configurations given.

    ``results``: configuration -> result of the trials that finished; ``failed``: configuration ->
    :class:`TrialError` of those that raised; ``seconds``: configuration -> run time of each
    trial (as measured when it ran); ``keys``: configuration -> hash (its folder's name);
    ``computed`` and ``reused``: the configurations run now and those loaded from disk.
    ``result[config]`` gives one result (a dict config is frozen first) or raises
    :class:`SweepError` for a failed one.
    """

    configs: tuple
    results: dict
    failed: dict
    seconds: dict
    keys: dict
    computed: tuple
    reused: tuple
    folder: Path

    @property
    def ok(self) -> bool:
        """True when no trial failed."""
        return not self.failed

    def __len__(self):
        return len(self.configs)

    def __getitem__(self, config):
        config = _as_config(config)
        if config in self.results:
            return self.results[config]
        if config in self.failed:
            error = self.failed[config]
            raise SweepError(f"trial {config!r} failed: {error}\n{error.traceback}")
        raise KeyError(config)

    def raise_failures(self) -> None:
        """Raise :class:`SweepError` listing the failed trials (with the first traceback), if any."""
        if self.failed:
            lines = [f"  {config!r}: {error}" for config, error in self.failed.items()]
            first = next(iter(self.failed.values()))
            raise SweepError(f"{len(self.failed)} of {len(self.configs)} trials failed:\n" + "\n".join(lines)
                             + f"\nfirst traceback:\n{first.traceback}")

    def to_frame(self):
        """A pandas DataFrame, one row per trial: the configuration's fields, then the result (its
        items as columns when it is a dict with string keys, else one ``result`` column), then
        ``status`` ("ok"/"failed"), ``error`` and ``seconds``. A name already taken is prefixed
        with ``result.`` or ``sweep.``."""
        import pandas as pd
        rows = []
        for config in self.configs:
            row = dict(_fields(config))
            result = self.results.get(config)
            if isinstance(result, dict) and all(isinstance(k, str) for k in result):
                items = result.items()
            else:
                items = [("result", result)]
            for name, value in items:
                row[f"result.{name}" if name in row else name] = value
            error = self.failed.get(config)
            for name, value in (("status", "failed" if error else "ok"),
                                ("error", str(error) if error else None),
                                ("seconds", self.seconds.get(config))):
                row[f"sweep.{name}" if name in row else name] = value
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self):
        return (f"SweepResult({len(self.configs)} trials: {len(self.results)} ok, {len(self.failed)} failed; "
                f"{len(self.computed)} computed, {len(self.reused)} reused; in {self.folder})")


def library_version() -> str:
    """The first 16 hex digits of the SHA-256 of every ``.py`` file of the imported gradprobe
    package (paths and contents, sorted): the default ``version`` of :func:`run`, so that results
    computed by another state of the library are never reused."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def run(fn, configs, *, version: str | None = None, root=None, scheduler=None, threads: int | None = 1,
        retry_failed: bool = False, keep_checkpoints: bool = False, connect_timeout: float = 30.0,
        desc: str | None = None) -> SweepResult:
    """Run ``fn(config)`` for every configuration not already stored, store each result as it
    arrives, and return all of them (stored and new) as a :class:`SweepResult`.

    ``fn``: a function at the top level of an importable module (one of ``__main__`` is allowed
    in-process only). ``configs``: frozen dataclasses or mappings (see :func:`grid`); duplicates
    are run once. ``version``: part of every hash; by default :func:`library_version`, so a change
    anywhere in gradprobe starts the trials afresh; pass a string of your own to keep the results
    of a long sweep across edits that do not change them.
    ``root``: the sweeps folder (default :func:`default_root`). ``scheduler``: where trials run
    (see the module docstring): None (``$GRADPROBE_SCHEDULER``, else here), ``"inprocess"``,
    ``"processes:N"``, ``"local:N"``, a Dask address or a ``distributed.Client``. ``threads``:
    torch threads per trial (None: leave torch's setting alone, giving up bitwise equality across
    executors). ``retry_failed``: run trials stored as failed again. ``keep_checkpoints``: keep a
    finished trial's ``checkpoint.pt``. ``connect_timeout``: seconds to reach a Dask scheduler.
    ``desc``: the progress bar's label (default: the function's name).
    """
    if version is None:
        version = library_version()
    if not isinstance(version, str):
        raise ValueError(f"version must be a string, got {version!r}")
    if threads is not None:
        threads = positive_int("threads", threads)
    for name, flag in (("retry_failed", retry_failed), ("keep_checkpoints", keep_checkpoints)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    positive("connect_timeout", connect_timeout)
    fn_name, fn_ref, in_main = _function_ref(fn)
    if isinstance(configs, (Mapping, str)) or not hasattr(configs, "__iter__") \
            or dataclasses.is_dataclass(configs):
        raise ValueError("configs must be a list of configurations (frozen dataclasses or mappings); "
                         "wrap a single one in a list")
    spec = _parse_scheduler(scheduler)
    if spec[0] != "inprocess" and in_main:
        raise ValueError(f"fn {fn_name} is defined in __main__, which worker processes cannot import; "
                         "move it into a module, or run in-process (scheduler='inprocess')")
    root = (Path(root).expanduser() if root is not None else default_root()).absolute()
    if root.exists() and not root.is_dir():
        raise ValueError(f"the sweeps folder {root} is a file")
    store = _Store(root, fn_name, fn_ref, version)

    unique = {}
    for i, config in enumerate(configs):
        try:
            config = _as_config(config)
        except TypeError as exc:
            raise TypeError(f"configs[{i}]: {exc}") from None
        if spec[0] != "inprocess" and not isinstance(config, Config):
            _check_importable_class(type(config), i)
        unique.setdefault(config, _hash(config, fn_ref, version))
    results, failed, seconds, reused, pending = {}, {}, {}, [], []
    for config, key in unique.items():
        stored = store.load(key)
        if stored is not None and (stored[0] == "ok" or not retry_failed):
            status, value, seconds[config] = stored
            (results if status == "ok" else failed)[config] = value
            reused.append(config)
        else:
            pending.append(_Job(config, key, store.trial_dir(key)))

    computed = set()
    if pending:
        bar = progress(total=len(unique), initial=len(reused), desc=desc or fn.__name__, unit="trial")
        with contextlib.ExitStack() as stack:
            stack.callback(bar.close)
            for job in pending:
                store.start(job.key, job.config)
            if spec[0] == "inprocess":
                outcomes = _run_inprocess(fn, pending, threads)
            elif spec[0] == "processes":
                outcomes = _run_processes(fn_ref, pending, threads, spec[1])
            else:
                client = stack.enter_context(_dask_client(spec, connect_timeout))
                outcomes = _run_dask(client, fn_ref, fn_name, pending, threads)
            stack.enter_context(contextlib.closing(outcomes))
            for job, outcome in outcomes:
                store.save(job.key, job.config, outcome, keep_checkpoints)
                seconds[job.config] = outcome["seconds"]
                if outcome["ok"]:
                    results[job.config] = _decode(outcome["result"], outcome["tensors"])
                    failed.pop(job.config, None)
                else:
                    failed[job.config] = TrialError(**outcome["error"])
                computed.add(job.config)
                bar.update(1)
                if failed:
                    bar.set_postfix(failed=len(failed))

    order = list(unique)
    return SweepResult(configs=tuple(order),
                       results={c: results[c] for c in order if c in results},
                       failed={c: failed[c] for c in order if c in failed},
                       seconds={c: seconds[c] for c in order if c in seconds},
                       keys=dict(unique),
                       computed=tuple(c for c in order if c in computed),
                       reused=tuple(reused), folder=store.folder)


def _check_importable_class(cls, index: int) -> None:
    """Refuse a configuration class that worker processes could not unpickle (found by name)."""
    ref = f"{cls.__module__}:{cls.__qualname__}"
    try:
        found = _import_ref(ref) if "<locals>" not in cls.__qualname__ else None
    except (ImportError, AttributeError):
        found = None
    if found is not cls or cls.__module__ in ("__main__", "__mp_main__"):
        raise TypeError(f"configs[{index}] is a {cls.__qualname__} from {cls.__module__}, which worker "
                        "processes cannot import by name; define the class at the top level of a module "
                        "or use mappings (Config)")


# ----------------------------------------------------------------------------- checkpoints

class Checkpointer:
    """Saves and restores the state of a training loop in one file, atomically.

    ``path``: the checkpoint file (None: a disabled checkpointer; ``restore`` gives 0 and nothing
    is saved). ``every``: save when ``maybe_save`` is called with a multiple of it. The states
    saved are those of ``model``, ``optimizer`` and ``scheduler`` (each optional, anything with
    ``state_dict``/``load_state_dict``), of the torch generators in ``generators`` (a sequence,
    or a :class:`gradprobe.runtime.Generators`), of torch's CPU (and CUDA, when in use), NumPy's
    and Python's global generators, and the contents of the dictionary ``extra`` (for loss
    histories and counters: tensors, numbers, strings, lists and dicts; restored in place).
    """

    def __init__(self, path, every: int, *, model=None, optimizer=None, scheduler=None,
                 generators=(), extra: dict | None = None):
        every = positive_int("every", every)
        if isinstance(generators, Generators):
            generators = (generators.data, generators.weights)
        generators = tuple(generators)
        for g in generators:
            if not isinstance(g, torch.Generator):
                raise ValueError(f"generators must be torch.Generator objects, got {g!r}")
        for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
            if obj is not None and not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise ValueError(f"{name} must have state_dict() and load_state_dict(), got {type(obj).__name__}")
        if extra is not None and not isinstance(extra, dict):
            raise ValueError(f"extra must be a dict (restored in place), got {type(extra).__name__}")
        self.path = Path(path) if path is not None else None
        self.every = every
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.generators, self.extra = generators, extra
        self.last_saved: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether this checkpointer reads and writes a file."""
        return self.path is not None

    def restore(self) -> int:
        """Load the last save, if there is one, into the model, optimizer, scheduler, generators,
        global generators and ``extra``; return its step (0 when there is nothing to restore)."""
        if self.path is None or not self.path.exists():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        for name in ("model", "optimizer", "scheduler"):
            obj, saved = getattr(self, name), state[name]
            if (obj is None) != (saved is None):
                have = "holds" if saved is not None else "holds no"
                raise ValueError(f"the checkpoint {self.path} {have} {name} state but this "
                                 f"Checkpointer was given {'no' if obj is None else 'a'} {name}")
            if obj is not None:
                obj.load_state_dict(saved)
        if len(state["generators"]) != len(self.generators):
            raise ValueError(f"the checkpoint {self.path} holds {len(state['generators'])} generator states, "
                             f"this Checkpointer was given {len(self.generators)} generators")
        for g, g_state in zip(self.generators, state["generators"]):
            g.set_state(g_state)
        torch.set_rng_state(state["torch"])
        if state["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        np_state = state["numpy"]
        np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                             np_state["has_gauss"], np_state["cached_gaussian"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if self.extra is not None:
            self.extra.clear()
            self.extra.update(state["extra"] or {})
        self.last_saved = state["step"]
        return state["step"]

    def maybe_save(self, step: int, *, final: bool = False) -> bool:
        """Save when ``step`` (the number of steps done) is a positive multiple of ``every``, or
        when ``final``; not twice for the same step. Returns whether it saved."""
        step = nonnegative_int("step", step)
        if step == self.last_saved or not (final or (step > 0 and step % self.every == 0)):
            return False
        self.save(step)
        return True

    def save(self, step: int) -> None:
        """Save now, as the state after ``step`` steps."""
        if self.path is None:
            self.last_saved = step
            return
        keys, pos, has_gauss, cached = np.random.get_state()[1:]
        version, internal, gauss = random.getstate()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        state = {
            "format": _FORMAT, "step": step,
            "model": self.model.state_dict() if self.model is not None else None,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generators": [g.get_state() for g in self.generators],
            "torch": torch.get_rng_state(), "cuda": cuda,
            "numpy": {"name": "MT19937", "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": (version, list(internal), gauss),
            "extra": self.extra,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, buffer.getvalue())
        self.last_saved = step


def checkpoint(every: int, *, model=None, optimizer=None, scheduler=None, generators=(),
               extra: dict | None = None) -> Checkpointer:
    """The :class:`Checkpointer` of the trial running now, saving to ``checkpoint.pt`` in its
    folder; outside a sweep (``fn`` called directly) a disabled one, so the same training
    function runs either way."""
    trial_dir = _current_trial_dir.get()
    path = Path(trial_dir) / "checkpoint.pt" if trial_dir is not None else None
    return Checkpointer(path, every, model=model, optimizer=optimizer, scheduler=scheduler,
                        generators=generators, extra=extra)
