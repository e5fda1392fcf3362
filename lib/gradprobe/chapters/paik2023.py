"""Chapter *Disharmony between ReLU and BN* (Paik & Choi 2023): the measured rate of fresh MLPs
for any activation and normalization, and training trials that compare layer-wise learning-rate
rules on CIFAR-10 in parallel processes (one thread each, so that results do not depend on the
number of processes)."""
from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import one_of, positive_int
from ..data.tensors import cifar10_tensors
from ..measure.rates import network_rate
from ..networks.mlp import mlp
from ..runtime import device as pick_device, seed as seed_all
from ..train.loop import evaluate, fit
from ..train.optim import OPTIMIZERS, make_optimizer
from ..train.schedules import linear_warmup

__all__ = ["mlp_rates", "Trial", "TrialResult", "run_trial", "run_trials"]


def mlp_rates(act: str, norm: str = "batch", depth: int = 30, width: int = 256, batch: int = 256,
              repeats: int = 2, generators=None) -> np.ndarray:
    """The measured rate (:func:`gradprobe.measure.rates.network_rate`) of ``repeats`` fresh
    ``linear -> norm -> act`` MLPs (:func:`gradprobe.networks.mlp.mlp`, He init, a linear head to 10
    classes) on Gaussian inputs with random labels; weights from ``generators.weights``, data from
    ``generators.data`` (:func:`gradprobe.seed`; default: fresh unseeded generators)."""
    positive_int("repeats", repeats)
    w_gen = generators.weights if generators is not None else None
    d_gen = generators.data if generators is not None else None
    out = []
    for _ in range(repeats):
        net = mlp(depth, width, act, norm=norm, out_dim=10, generator=w_gen)
        x = torch.randn(batch, width, generator=d_gen)
        y = torch.randint(0, 10, (batch,), generator=d_gen)
        out.append(network_rate(net, x, y).rate)
    return np.array(out)


@dataclass(frozen=True)
class Trial:
    """One training run: a BatchNorm-ReLU MLP (:func:`gradprobe.networks.mlp.mlp` on flattened images)
    trained on a fixed CIFAR-10 subset with one optimizer. ``options`` are extra optimizer keyword
    arguments as ``(name, value)`` pairs; the data subset is drawn with ``data_seed`` (the same for
    every trial), weights and mini-batch order with ``seed``; ``device`` as :func:`gradprobe.device`."""

    optimizer: str
    lr: float
    seed: int
    steps: int
    batch_size: int
    warmup_steps: int = 0
    options: tuple = ()
    depth: int = 30
    width: int = 256
    n_train: int = 10000
    n_test: int = 2000
    data_seed: int = 0
    device: str = "cpu"
    label: str = ""

    def __post_init__(self):
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("steps", "batch_size", "depth", "width", "n_train", "n_test"):
            positive_int(f"Trial.{name}", getattr(self, name))


@dataclass
class TrialResult:
    """What a :class:`Trial` gave: final test accuracy and loss (a diverged run is evaluated as
    it stands, typically at chance), the mean training loss of the last 10% of steps, the step of
    divergence (None if none) and the per-step training loss."""

    trial: Trial
    test_accuracy: float
    test_loss: float
    final_train_loss: float
    diverged_at: int | None
    loss: list = field(default_factory=list)


@functools.lru_cache(maxsize=2)
def _data(n_train: int, n_test: int, data_seed: int):
    d = cifar10_tensors(n_train, n_test, "cpu", torch.Generator().manual_seed(data_seed))
    return d.train_x.flatten(1), d.train_y, d.test_x.flatten(1), d.test_y


def run_trial(trial: Trial) -> TrialResult:
    """Train one :class:`Trial` (on its ``device``; on the CPU with the current thread settings) and
    evaluate it on the test subset."""
    torch.set_flush_denormal(True)
    train_x, train_y, test_x, test_y = _data(trial.n_train, trial.n_test, trial.data_seed)
    dev = pick_device(trial.device)
    train_x, train_y, test_x, test_y = (t.to(dev) for t in (train_x, train_y, test_x, test_y))
    gen = seed_all(trial.seed)
    net = mlp(trial.depth, trial.width, "relu", norm="batch", in_dim=train_x.shape[1], out_dim=10,
              generator=gen.weights).to(dev)
    opt = make_optimizer(trial.optimizer, net.parameters(), trial.lr, **dict(trial.options))
    hist = fit(net, train_x, train_y, steps=trial.steps, batch_size=trial.batch_size, optimizer=opt,
               generator=gen.data, schedule=linear_warmup(trial.warmup_steps), diverge_above=1e3)
    test_loss, test_acc = evaluate(net, test_x, test_y)
    tail = hist.loss[-max(1, len(hist.loss) // 10):]
    final = math.nan if hist.diverged else sum(tail) / len(tail)
    return TrialResult(trial, test_acc, test_loss, final, hist.diverged_at, hist.loss)


def _run_one_thread(trial: Trial) -> TrialResult:
    torch.set_num_threads(1)
    return run_trial(trial)


def run_trials(trials, processes: int = 1) -> list[TrialResult]:
    """Run :class:`Trial` s, in order, in ``processes`` worker processes ("spawn"), each with one
    torch thread, so that results do not depend on the number of processes. ``processes=1`` runs
    them here, one after another, also with one thread (restored afterwards)."""
    trials = list(trials)
    if not all(isinstance(t, Trial) for t in trials):
        raise ValueError("run_trials takes a list of Trial objects")
    positive_int("processes", processes)
    if processes == 1 or len(trials) <= 1:
        threads = torch.get_num_threads()
        try:
            return [_run_one_thread(t) for t in trials]
        finally:
            torch.set_num_threads(threads)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        return list(pool.map(_run_one_thread, trials))
