"""gradprobe.chapters.paik2023: measured rates of fresh MLPs and the optimizer trials."""
import numpy as np
import pytest

import gradprobe
from gradprobe.chapters import paik2023
from gradprobe.data.cifar10 import cifar10


@pytest.fixture
def cifar10_test_split():
    """Skip (when the test runs, not when tests are collected) unless CIFAR-10 can be loaded."""
    try:
        cifar10("test", download=False)
    except Exception as err:  # no data folder, no cache, offline: the data is not there
        pytest.skip(f"CIFAR-10 not available (set GRADPROBE_DATA): {err}")


def test_mlp_rates_are_seeded():
    a = paik2023.mlp_rates("tanh", "batch", depth=6, width=32, batch=64, repeats=2, generators=gradprobe.seed(1))
    b = paik2023.mlp_rates("tanh", "batch", depth=6, width=32, batch=64, repeats=2, generators=gradprobe.seed(1))
    assert a.shape == (2,) and np.array_equal(a, b) and a[0] != a[1]
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        paik2023.mlp_rates("relu", repeats=0)


def test_trials_refuse_bad_settings():
    with pytest.raises(ValueError, match="Trial.steps"):
        paik2023.Trial("sgd", 0.1, 0, 0, 8)
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        paik2023.Trial("adamw", 0.1, 0, 1, 8)
    with pytest.raises(ValueError, match="processes must be a positive integer"):
        paik2023.run_trials([], processes=0)


@pytest.mark.slow
def test_run_trials_same_results_in_one_or_two_processes(cifar10_test_split):
    trials = [paik2023.Trial(name, lr, seed=s, steps=3, batch_size=8, depth=2, width=16, n_train=64, n_test=32,
                             options=opts)
              for name, lr, opts in [("sgd", 0.1, ()), ("lalc", 1.0, (("trust_coefficient", 0.01),))] for s in (0, 1)]
    here = paik2023.run_trials(trials, processes=1)
    spread = paik2023.run_trials(trials, processes=2)
    for a, b in zip(here, spread):
        assert a.trial == b.trial
        assert a.loss == b.loss and a.test_accuracy == b.test_accuracy
    assert here[0].loss != here[1].loss  # different seeds, different runs
    assert len(here[0].loss) == 3 and here[0].diverged_at is None
