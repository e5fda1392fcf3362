"""gradprobe.checks: every argument check names the argument, what it must be and what it got."""
import re

import numpy as np
import pytest
import torch

from gradprobe import checks


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_integers_are_accepted_and_returned_as_int(value):
    assert checks.positive_int("n", value) == int(value) and type(checks.positive_int("n", value)) is int
    assert checks.is_int(value)


@pytest.mark.parametrize("value", [True, 1.0, "3", None, np.float64(2.0)])
def test_non_integers_and_bools_are_not_integers(value):
    assert not checks.is_int(value)
    with pytest.raises(ValueError, match=re.escape(f"n must be a positive integer, got {value!r}")):
        checks.positive_int("n", value)


def test_integer_bounds_say_what_is_wanted():
    with pytest.raises(ValueError, match="depth must be a positive integer, got 0"):
        checks.positive_int("depth", 0)
    assert checks.nonnegative_int("k", 0) == 0
    with pytest.raises(ValueError, match="k must be a non-negative integer, got -1"):
        checks.nonnegative_int("k", -1)
    assert checks.int_at_least("n", 2, 2) == 2
    with pytest.raises(ValueError, match="n must be an integer >= 2, got 1"):
        checks.int_at_least("n", 1, 2)


def test_real_numbers():
    checks.nonnegative("weight_decay", 0.0)
    checks.positive("lr", 1e-3)
    for bad in (-1, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
            checks.positive("lr", bad)
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        checks.positive("lr", 0)


def test_choices_and_probabilities():
    checks.one_of("norm", None, (None, "batch"))
    with pytest.raises(ValueError, match="unknown norm 'group'; choose one of None, 'batch'"):
        checks.one_of("norm", "group", (None, "batch"))
    checks.probability("dropout probability", 0.0)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1.0"):
        checks.probability("dropout probability", 1.0)


def test_labelled_images():
    checks.labelled_images(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))
    for x, y in [(torch.zeros(2, 3, 4), torch.zeros(2)), (torch.zeros(2, 3, 4, 4), torch.zeros(3)),
                 (torch.zeros(0, 3, 4, 4), torch.zeros(0))]:
        with pytest.raises(ValueError, match="expected images"):
            checks.labelled_images(x, y)
