"""gradprobe.sweep: trials stored by configuration hash, the same bits whichever executor runs
them, resumption after a real SIGKILL (of a sweep and of a checkpointed training trial), failures
recorded without stopping the sweep, and clear errors for what cannot work."""
from __future__ import annotations

import functools
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradprobe import sweep

MODULE = __name__  # the trial functions below are found by workers under this name


# ----------------------------------------------------------------------------- trials

@dataclass(frozen=True)
class Point:
    size: int
    scale: float
    seed: int


def noisy_matmul(p: Point) -> dict:
    """Float work whose bits depend on the seeding (a data generator and torch's and NumPy's global
    generators) and that sums long rows; raises for a negative scale. (Not Python's ``random``:
    on a Dask worker it is shared with Dask's own threads.)"""
    if p.scale < 0:
        raise ValueError(f"negative scale {p.scale}")
    time.sleep(float(os.environ.get("SWEEP_TEST_SLEEP", "0")))
    b = torch.randn(p.size, p.size)  # global generators, as the sweep seeded them
    noise = np.random.standard_normal(3).astype(np.float32)
    gens = sweep.seed_trial(p)
    a = torch.randn(p.size, p.size, generator=gens.data) * p.scale
    product = torch.tanh(a @ b) @ a
    return {"product": product, "row_sums": product.sum(dim=1, dtype=torch.float64),
            "noise": noise}


def global_draws(p: Point) -> dict:
    """Draws from the global generators only, which the sweep seeds before each trial."""
    return {"torch": torch.randn(3), "numpy": np.random.standard_normal(2), "python": random.random()}


CALLS: list = []


def fragile(p: Point) -> int:
    """Fails for seed 1 unless SWEEP_TEST_FIXED=1; records its calls (in-process)."""
    CALLS.append(p.seed)
    if p.seed == 1 and os.environ.get("SWEEP_TEST_FIXED") != "1":
        raise ValueError(f"bad seed {p.seed}")
    return p.seed * 10


def returns_object(p: Point):
    return object()


def dies(p: Point) -> int:
    """SIGKILLs its own process for seed 1 (a crash, an out-of-memory kill), but never the process
    whose id is in SWEEP_TEST_SPARE_PID (the test's)."""
    spare = os.environ.get("SWEEP_TEST_SPARE_PID")
    if p.seed == 1 and spare is not None and spare != str(os.getpid()):
        os.kill(os.getpid(), signal.SIGKILL)
    return p.seed


def rich_result(p: Point) -> dict:
    """Values of every storable kind, some of them easy to damage (NaN payloads, -0.0, bfloat16)."""
    bits = torch.randint(-2**31, 2**31 - 1, (64,), dtype=torch.int32, generator=torch.Generator().manual_seed(p.seed))
    return {"bits": bits.view(torch.float32), "bf16": torch.linspace(-1, 1, 7).to(torch.bfloat16),
            "half_array": np.linspace(0, 1, 5, dtype=np.float16).reshape(5, 1),
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "f64": np.float64(1 / 3), "i64": np.int64(-7), "flag": np.bool_(True),
            "tuple": (1, 2.5, "x", None), "int_keys": {1: 0.1, 2: [0.2, (3,)]},
            "sum": 0.1 + 0.2, "nan": float("nan"), "neg_zero": -0.0, "big": 2**70,
            "tagged": {"__tensor__": 3}, "empty": [], "scalar_tensor": torch.tensor(2.5, dtype=torch.float64)}


@dataclass(frozen=True)
class Training:
    steps: int = 40
    every: int = 5
    width: int = 16
    seed: int = 0


def train_mlp(t: Training) -> dict:
    """An MLP with dropout on random data, SGD with momentum and a step LR schedule, batches from a
    data generator and noise from NumPy's and Python's global generators; checkpointed every
    ``t.every`` steps. Sleeps SWEEP_TEST_STEP_SLEEP seconds a step (to be killed midway)."""
    pause = float(os.environ.get("SWEEP_TEST_STEP_SLEEP", "0"))
    gens = sweep.seed_trial(t)
    model = nn.Sequential(nn.Linear(8, t.width), nn.Tanh(), nn.Dropout(0.2), nn.Linear(t.width, 1))
    for p in model.parameters():
        nn.init.normal_(p, std=0.3, generator=gens.weights)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    history = {"losses": []}
    ckpt = sweep.checkpoint(t.every, model=model, optimizer=opt, scheduler=sched,
                            generators=[gens.data], extra=history)
    start = ckpt.restore()
    for step in range(start, t.steps):
        x = torch.randn(32, 8, generator=gens.data)
        y = torch.sin(x[:, :1]) + 0.01 * float(np.random.standard_normal()) + 0.01 * random.random()
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history["losses"].append(loss.detach())
        ckpt.maybe_save(step + 1, final=step + 1 == t.steps)
        time.sleep(pause)
    return {"losses": torch.stack(history["losses"]), "state": dict(model.state_dict()),
            "momentum": [opt.state[p]["momentum_buffer"] for p in model.parameters()],
            "resumed_from": start}


def killable_grid() -> list:
    return sweep.grid(Point, size=[24], scale=[0.5, 2.0], seed=range(5))


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ("GRADPROBE_SCHEDULER", "GRADPROBE_SWEEPS", "SWEEP_TEST_SLEEP", "SWEEP_TEST_FIXED",
                 "SWEEP_TEST_STEP_SLEEP", "SWEEP_TEST_SPARE_PID"):
        monkeypatch.delenv(name, raising=False)


def assert_same(a, b, where="result"):
    """Equal types and structure, and tensors, arrays and floats equal bit for bit."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert torch.equal(a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)), where
    elif isinstance(a, (np.ndarray, np.generic)):
        assert (a.dtype, a.shape) == (b.dtype, b.shape) and a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def worker_pids(done: sweep.SweepResult) -> set:
    """The processes that ran the finished trials, as recorded in their result.json."""
    return {json.loads((done.folder / key / "result.json").read_text())["worker"]["pid"]
            for config, key in done.keys.items() if config in done.results}


def start_sweep_process(call: str, root: Path, **env) -> subprocess.Popen:
    """``sweep.run(<call>, root=root)`` in a fresh Python, with this module importable."""
    tests_dir = Path(__file__).resolve().parents[len(MODULE.split(".")) - 1]
    code = (f"import sys; sys.path.insert(0, {str(tests_dir)!r})\n"
            f"import {MODULE} as t\nfrom gradprobe import sweep\n"
            f"sweep.run({call}, root={str(root)!r})\n")
    environment = {k: v for k, v in os.environ.items() if k != "GRADPROBE_SCHEDULER"}
    environment |= {"GRADPROBE_QUIET": "1", **env}
    return subprocess.Popen([sys.executable, "-c", code], env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0):
    """Poll ``condition()`` until it is truthy; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the sweep process ended (rc {process.returncode}) before it could be killed: "
                        f"{process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("timed out waiting for the sweep process")


def sigkill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


# ----------------------------------------------------------------------------- configurations, hashes, seeds

def test_config_hash_is_canonical_and_stable():
    h = sweep.config_hash(Point(8, 1.0, 0), noisy_matmul)
    assert len(h) == 16 and int(h, 16) >= 0
    # a mapping with the same fields in any order is the same trial; a dataclass too
    assert sweep.config_hash({"seed": 0, "size": 8, "scale": 1.0}, noisy_matmul) == h
    assert sweep.config_hash(sweep.Config(size=8, scale=1.0, seed=0), noisy_matmul) == h
    # the function, the version and the value's type make different trials
    assert sweep.config_hash(Point(8, 1.0, 0), fragile) != h
    assert sweep.config_hash(Point(8, 1.0, 0), noisy_matmul, version="v2") != h
    assert sweep.config_hash(Point(8, 1, 0), noisy_matmul) != h
    # the canonical form must never change silently: stored results would be orphaned
    assert sweep._hash(sweep.Config(lr=0.1, depth=(1, 2), name="x"), "pkg.mod:fn", "v1") == "70e729a3272d5b35"


def test_config_is_frozen_hashable_and_picklable():
    import pickle
    c = sweep.Config({"lr": 0.1, "depths": [10, 20], "opt": {"name": "sgd"}})
    assert c.lr == 0.1 and c["depths"] == (10, 20) and c.opt.name == "sgd"
    assert c == {"opt": {"name": "sgd"}, "depths": (10, 20), "lr": 0.1}
    assert hash(c) == hash(pickle.loads(pickle.dumps(c))) and pickle.loads(pickle.dumps(c)) == c
    with pytest.raises(AttributeError, match="frozen"):
        c.lr = 1.0
    with pytest.raises(AttributeError, match="has no 'momentum'"):
        c.momentum


def test_grid_is_the_product_last_axis_fastest():
    points = sweep.grid(Point, size=[4, 8], scale=[1.0], seed=range(3))
    assert points == [Point(4, 1.0, 0), Point(4, 1.0, 1), Point(4, 1.0, 2),
                      Point(8, 1.0, 0), Point(8, 1.0, 1), Point(8, 1.0, 2)]
    assert sweep.grid(lr=[0.1, 1.0]) == [sweep.Config(lr=0.1), sweep.Config(lr=1.0)]
    with pytest.raises(ValueError, match="axis 'lr' must be a sequence"):
        sweep.grid(lr=0.1)
    with pytest.raises(ValueError, match="axis 'seed' is empty"):
        sweep.grid(seed=[])


def test_trial_seed_depends_on_the_configuration_only():
    assert sweep.trial_seed(Point(8, 1.0, 0)) == 4494858497062627264
    assert sweep.trial_seed(Point(8, 1.0, 0)) != sweep.trial_seed(Point(8, 1.0, 1))
    assert sweep.trial_seed(Point(8, 1.0, 3), fields=("seed",)) == sweep.trial_seed(Point(16, 2.0, 3), fields="seed")
    with pytest.raises(ValueError, match="no field"):
        sweep.trial_seed(Point(8, 1.0, 0), fields=("depth",))
    # whatever ran before, a trial's draws are the same
    draws = []
    for noise in (0, 1000):
        torch.randn(noise)
        gens = sweep.seed_trial(Point(8, 1.0, 0))
        draws.append((torch.randn(4), torch.randn(4, generator=gens.data), np.random.rand(), random.random()))
    assert_same(draws[0], draws[1])


def test_every_trial_starts_from_generators_seeded_by_its_configuration(tmp_path):
    points = sweep.grid(Point, size=[1], scale=[1.0], seed=range(3))
    forward = sweep.run(global_draws, points, root=tmp_path / "forward")
    torch.randn(100), np.random.rand(7), random.random()
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    backward = sweep.run(global_draws, points[::-1], root=tmp_path / "backward")
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    for p in points:  # the order of trials and what ran before change nothing
        assert_same(backward[p], forward[p])
        sweep.seed_trial(p)
        assert_same(forward[p], global_draws(p))
    assert len({forward[p]["python"] for p in points}) == 3


# ----------------------------------------------------------------------------- storage

def test_results_are_stored_exactly_and_reused(tmp_path):
    config = Point(4, 1.0, 3)
    first = sweep.run(rich_result, [config], root=tmp_path)
    assert first.computed == (config,) and first.reused == () and first.ok
    sweep.seed_trial(config)
    assert_same(first[config], rich_result(config))

    folder = tmp_path / f"{MODULE}.rich_result" / sweep.config_hash(config, rich_result)
    assert first.folder / first.keys[config] == folder
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "result.json", "result.pt"]
    record = json.loads((folder / "config.json").read_text())
    assert record["config"] == {"size": 4, "scale": 1.0, "seed": 3}
    assert (record["fn"], record["version"]) == (f"{MODULE}:rich_result", sweep.library_version())

    again = sweep.run(rich_result, [config], root=tmp_path)
    assert again.computed == () and again.reused == (config,)
    assert_same(again.results, first.results)  # bit for bit, types included (tuples, numpy scalars)


def test_results_default_to_gradprobe_sweeps_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADPROBE_SWEEPS", str(tmp_path / "env"))
    assert sweep.default_root() == tmp_path / "env"
    done = sweep.run(fragile, [Point(1, 1.0, 0)])
    assert done.folder == tmp_path / "env" / f"{MODULE}.fragile" and done[Point(1, 1.0, 0)] == 0
    monkeypatch.delenv("GRADPROBE_SWEEPS")
    assert sweep.default_root() == Path("~/.cache/gradprobe/sweeps").expanduser()


def test_progress_bar_counts_trials(tmp_path, monkeypatch):
    bars = []

    class Recorder:
        def __init__(self, **kwargs):
            self.kwargs, self.count = kwargs, kwargs.get("initial", 0)
            bars.append(self)

        def update(self, n):
            self.count += n

        def set_postfix(self, **kwargs):
            self.postfix = kwargs

        def close(self):
            self.closed = True

    monkeypatch.setattr(sweep, "progress", lambda **kwargs: Recorder(**kwargs))
    points = sweep.grid(Point, size=[1], scale=[1.0], seed=range(3))
    sweep.run(fragile, points, root=tmp_path)
    sweep.run(fragile, points + [Point(1, 1.0, 7)], root=tmp_path)
    assert [(b.kwargs["total"], b.kwargs["initial"], b.count, b.postfix) for b in bars] == \
        [(3, 0, 3, {"failed": 1}), (4, 3, 4, {"failed": 1})]
    assert all(b.closed for b in bars)


# ----------------------------------------------------------------------------- failures

def test_failing_trial_is_recorded_and_does_not_stop_the_sweep(tmp_path, monkeypatch):
    points = sweep.grid(Point, size=[1], scale=[1.0], seed=range(4))
    CALLS.clear()
    first = sweep.run(fragile, points, root=tmp_path)
    assert CALLS == [0, 1, 2, 3]
    assert first.results == {points[0]: 0, points[2]: 20, points[3]: 30}
    error = first.failed[points[1]]
    assert (error.type, error.message, error.stored) == ("ValueError", "bad seed 1", True)
    assert 'raise ValueError(f"bad seed {p.seed}")' in error.traceback and "in fragile" in error.traceback
    with pytest.raises(sweep.SweepError, match="bad seed 1"):
        first[points[1]]
    with pytest.raises(sweep.SweepError, match="1 of 4 trials failed"):
        first.raise_failures()
    frame = first.to_frame()
    assert list(frame.columns) == ["size", "scale", "seed", "result", "status", "error", "seconds"]
    assert list(frame["status"]) == ["ok", "failed", "ok", "ok"]
    assert frame.loc[1, "error"] == "ValueError: bad seed 1" and frame.loc[2, "result"] == 20

    # the failure is stored: a re-run reports it again without running the trial
    monkeypatch.setenv("SWEEP_TEST_FIXED", "1")
    CALLS.clear()
    second = sweep.run(fragile, points, root=tmp_path)
    assert CALLS == [] and second.failed == first.failed and second.results == first.results
    # unless asked to retry
    third = sweep.run(fragile, points, root=tmp_path, retry_failed=True)
    assert CALLS == [1] and third.ok and third[points[1]] == 10 and third.computed == (points[1],)
    assert not (third.folder / third.keys[points[1]] / "error.json").exists()


def test_unstorable_result_is_a_failed_trial(tmp_path):
    done = sweep.run(returns_object, [Point(1, 1.0, 0)], root=tmp_path)
    error = done.failed[Point(1, 1.0, 0)]
    assert error.type == "TypeError" and "builtins.object, which a sweep cannot store" in error.message


# ----------------------------------------------------------------------------- executors

def test_processes_match_inprocess_bitwise(tmp_path):
    points = sweep.grid(Point, size=[40], scale=[1.0, 3.0], seed=range(2))
    here = sweep.run(noisy_matmul, points, root=tmp_path / "here")
    there = sweep.run(noisy_matmul, points, root=tmp_path / "there", scheduler="processes:2")
    assert here.ok and there.ok and there.computed == tuple(points)
    assert_same(there.results, here.results)
    assert worker_pids(here) == {os.getpid()} and os.getpid() not in worker_pids(there)


@pytest.mark.slow
def test_dask_local_cluster_matches_inprocess_bitwise(tmp_path, monkeypatch):
    points = sweep.grid(Point, size=[64], scale=[-1.0, 1.0, 3.0], seed=range(3))
    here = sweep.run(noisy_matmul, points, root=tmp_path / "here")
    monkeypatch.setenv("SWEEP_TEST_SLEEP", "0.1")  # so that both workers get trials
    there = sweep.run(noisy_matmul, points, root=tmp_path / "dask", scheduler="local:2")
    assert there.computed == tuple(points) and len(there.results) == 6
    assert_same(there.results, here.results)
    assert list(there.failed) == list(here.failed) == points[:3]
    assert {str(e) for e in there.failed.values()} == {"ValueError: negative scale -1.0"}
    assert "in noisy_matmul" in there.failed[points[0]].traceback
    pids = worker_pids(there)
    assert len(pids) == 2 and os.getpid() not in pids


def test_a_dead_worker_fails_its_trial_without_storing_the_failure(tmp_path, monkeypatch):
    points = sweep.grid(Point, size=[1], scale=[1.0], seed=range(2))
    monkeypatch.setenv("SWEEP_TEST_SPARE_PID", str(os.getpid()))
    crashed = sweep.run(dies, points, root=tmp_path, scheduler="processes:1")
    assert crashed.results == {points[0]: 0}
    error = crashed.failed[points[1]]
    assert error.type.endswith("BrokenProcessPool") and not error.stored
    assert not (crashed.folder / crashed.keys[points[1]] / "error.json").exists()
    again = sweep.run(dies, points, root=tmp_path)  # the next run tries it again
    assert again.reused == (points[0],) and again.computed == (points[1],) and again[points[1]] == 1


def test_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GRADPROBE_SCHEDULER", f"tcp://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=rf"tcp://127.0.0.1:{port}.*from \$GRADPROBE_SCHEDULER.*within 1 s"):
        sweep.run(noisy_matmul, [Point(4, 1.0, 0)], root=tmp_path, connect_timeout=1)
    assert time.monotonic() - started < 20
    assert not list(tmp_path.glob("*/*/error.json")) and not list(tmp_path.glob("*/*/result.json"))


@pytest.mark.parametrize("scheduler, message", [
    ("lokal:2", "unknown scheduler 'lokal:2'"),
    ("local:0", "positive integer"),
    ("processes:two", "positive integer"),
    (3, "scheduler must be None, a string"),
])
def test_bad_scheduler_is_a_clear_error(tmp_path, scheduler, message):
    with pytest.raises(ValueError, match=message):
        sweep.run(fragile, [Point(1, 1.0, 0)], root=tmp_path, scheduler=scheduler)


@pytest.mark.parametrize("arguments, message", [
    ({"threads": 0}, "threads must be a positive integer"),
    ({"version": 2}, "version must be a string"),
    ({"retry_failed": "yes"}, "retry_failed must be True or False"),
    ({"connect_timeout": 0}, "connect_timeout must be > 0"),
])
def test_bad_arguments_are_clear_errors(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        sweep.run(fragile, [Point(1, 1.0, 0)], root=tmp_path, **arguments)


@dataclass
class Mutable:
    x: int


@dataclass(frozen=True)
class WithList:
    xs: list


def orphan(p):
    return 0


def test_bad_configurations_are_clear_errors(tmp_path):
    cases = [([Mutable(1)], TypeError, "mutable dataclass.*frozen=True"),
             ([WithList([1, 2])], TypeError, r"configs\[0\].*not hashable.*tuples"),
             ([{"x": torch.zeros(2)}], TypeError, r"config.x is a Tensor.*no canonical JSON form"),
             ([{"x": {1, 2}}], TypeError, "set, which has no canonical order"),
             ([Point(1, 1.0, 0), 7], TypeError, r"configs\[1\].*frozen dataclass or a mapping"),
             ({"x": 1}, ValueError, "list of configurations")]
    for configs, kind, message in cases:
        with pytest.raises(kind, match=message):
            sweep.run(fragile, configs, root=tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_functions_that_cannot_be_imported_by_name_are_clear_errors(tmp_path):
    def local(p):
        return 0

    moved = type(orphan)(orphan.__code__, globals(), "orphan")
    moved.__module__ = "no_such_module_for_sweeps"
    renamed = type(orphan)(orphan.__code__, globals(), "orphan")  # not the object named orphan
    cases = [(lambda p: 0, "lambda or a local function"), (local, "lambda or a local function"),
             (moved, "cannot be imported by its name.*no_such_module_for_sweeps"),
             (renamed, "gives .*not fn"), (functools.partial(fragile), "defined at the top level")]
    for fn, message in cases:
        with pytest.raises(ValueError, match=message):
            sweep.run(fn, [Point(1, 1.0, 0)], root=tmp_path)
    main_fn = type(orphan)(orphan.__code__, globals(), "orphan")
    main_fn.__module__ = "__main__"
    with pytest.raises(ValueError, match="__main__, which worker processes cannot import"):
        sweep.run(main_fn, [Point(1, 1.0, 0)], root=tmp_path, scheduler="processes:2")


# ----------------------------------------------------------------------------- interruption

@pytest.mark.slow
def test_sweep_killed_midway_resumes_and_ends_identical(tmp_path):
    points = killable_grid()
    reference = sweep.run(noisy_matmul, points, root=tmp_path / "uninterrupted")

    root = tmp_path / "killed"
    process = start_sweep_process("t.noisy_matmul, t.killable_grid()", root, SWEEP_TEST_SLEEP="0.15")
    wait_for(lambda: len(list(root.glob("*/*/result.json"))) >= 3, process)
    sigkill(process)
    stored = {p.parent.name for p in root.glob("*/*/result.json")}
    assert 3 <= len(stored) < len(points)

    resumed = sweep.run(noisy_matmul, points, root=root)
    assert {resumed.keys[c] for c in resumed.reused} == stored
    assert {resumed.keys[c] for c in resumed.computed} == set(resumed.keys.values()) - stored
    assert_same(resumed.results, reference.results)
    again = sweep.run(noisy_matmul, points, root=root)
    assert again.computed == () and len(again.reused) == len(points)


@pytest.mark.slow
def test_training_trial_killed_between_checkpoints_resumes_bitwise(tmp_path):
    config = Training()
    reference = sweep.run(train_mlp, [config], root=tmp_path / "uninterrupted")[config]
    assert reference["resumed_from"] == 0 and reference["losses"].shape == (config.steps,)
    # the function runs outside a sweep too (no checkpoints), with the same result
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sweep.seed_trial(config)
        assert_same(train_mlp(config), reference)
    finally:
        torch.set_num_threads(threads)

    root = tmp_path / "killed"
    process = start_sweep_process("t.train_mlp, [t.Training()]", root, SWEEP_TEST_STEP_SLEEP="0.05")
    checkpoint = wait_for(lambda: next(root.glob("*/*/checkpoint.pt"), None), process)
    sigkill(process)
    saved = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < saved < config.steps and saved % config.every == 0
    assert not list(root.glob("*/*/result.json"))

    resumed = sweep.run(train_mlp, [config], root=root)
    result = resumed[config]
    assert resumed.computed == (config,) and result["resumed_from"] == saved
    assert_same({k: v for k, v in result.items() if k != "resumed_from"},
                {k: v for k, v in reference.items() if k != "resumed_from"})
    assert not checkpoint.exists()  # removed once the result is stored


def test_checkpointer_saves_every_n_steps_and_checks_what_it_restores(tmp_path):
    path = tmp_path / "ckpt.pt"
    model = nn.Linear(2, 2)
    ckpt = sweep.Checkpointer(path, every=3, model=model, extra={"n": 1})
    assert ckpt.restore() == 0
    saved = [step for step in range(1, 8) if ckpt.maybe_save(step, final=step == 7)]
    assert saved == [3, 6, 7] and not ckpt.maybe_save(7, final=True)

    extra = {"stale": True}
    fresh = nn.Linear(2, 2)
    assert sweep.Checkpointer(path, every=3, model=fresh, extra=extra).restore() == 7
    assert extra == {"n": 1} and torch.equal(fresh.weight, model.weight)
    opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        sweep.Checkpointer(path, every=3, model=fresh, optimizer=opt).restore()
    with pytest.raises(ValueError, match="0 generator states"):
        sweep.Checkpointer(path, every=3, model=fresh, generators=[torch.Generator()]).restore()
    with pytest.raises(ValueError, match="every must be a positive integer"):
        sweep.Checkpointer(path, every=0)
    with pytest.raises(ValueError, match="torch.Generator"):
        sweep.Checkpointer(path, every=2, generators=[1])
    outside = sweep.checkpoint(5, model=model)
    assert not outside.enabled and outside.restore() == 0 and outside.maybe_save(5)
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt.pt"]  # no temporary files left
