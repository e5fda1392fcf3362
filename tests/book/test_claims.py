import json
import math

import numpy as np
import pytest

from gradprobe.book.claims import (FAILS, HOLDS, INCONCLUSIVE, MACHINERY, NOT_TESTABLE, PAPER, Claims, Estimate,
                                   all_of, at_least, at_most, between, close, difference_at_least, not_testable,
                                   ordered, ratio_at_least)


def test_estimate_of_a_sample_is_mean_and_standard_error():
    e = Estimate.of([1.0, 2.0, 3.0, 4.0], over="seeds")
    assert e.mean == 2.5 and e.n == 4
    assert e.se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert e.text() == "2.5 ± 0.65 (4 seeds)"
    assert math.isnan(Estimate.of([7.0]).se), "one run has no standard error"
    assert Estimate.exact(1.5).text() == "1.5"


@pytest.mark.parametrize("values, verdict", [
    ([1.466, 1.467, 1.468], HOLDS),                 # inside the band by far more than 2 SE
    ([1.70, 1.71, 1.72], FAILS),                    # outside by far more than 2 SE
    ([1.40, 1.47, 1.54], INCONCLUSIVE),             # the ±2 SE interval straddles the band's edge
])
def test_close_decides_with_the_standard_error(values, verdict):
    assert close(1.467, values, rel=0.03).verdict == verdict


def test_close_writes_its_criterion_from_the_numbers_that_decide_it():
    check = close(2.0, 2.05, rel=0.05)
    assert check.criterion == "|x − 2| ≤ 0.1 (±0.05·paper)"
    assert check.distance == pytest.approx(0.05) and check.verdict == HOLDS
    assert close(1.0, 1.2, abs=0.1).criterion == "|x − 1| ≤ 0.1"


def test_a_single_run_of_a_random_quantity_is_never_decided():
    far_above = Estimate.single(1e6)
    assert at_least(far_above, 1.0).verdict == INCONCLUSIVE
    assert at_most(far_above, 1.0).verdict == INCONCLUSIVE


def test_rounding_alone_never_decides_a_verdict():
    # exact numbers on the boundary up to a relative 1e-7: float32 rounding could move them either way
    assert at_least(1.0 - 1e-7, 1.0).verdict == INCONCLUSIVE
    assert at_least(1.0 + 1e-7, 1.0).verdict == INCONCLUSIVE
    assert at_least(1.001, 1.0).verdict == HOLDS


def test_nan_measurements_fail():
    assert close(1.0, float("nan"), rel=0.5).verdict == FAILS
    assert between([1.0, float("nan")], 0, 2).verdict in (FAILS, INCONCLUSIVE)


def test_bounds_and_between():
    assert at_least([10, 11, 12], 5).verdict == HOLDS
    assert at_most([10, 11, 12], 5).verdict == FAILS
    assert between([0.5, 0.51, 0.49], 0.4, 0.6).criterion == "0.4 ≤ x ≤ 0.6"
    assert between([0.5, 0.51, 0.49], 0.4, 0.6).verdict == HOLDS
    with pytest.raises(ValueError, match="exceeds the upper bound"):
        between(1.0, 2, 1)


def test_ordered_needs_every_pair_separated():
    clear = ordered({"selu": [1.03, 1.04, 1.035], "tanh": [1.08, 1.09, 1.085], "relu": [1.2, 1.21, 1.22]})
    assert clear.verdict == HOLDS and clear.criterion == "selu < tanh < relu"
    overlapping = ordered({"a": [1.0, 1.2], "b": [1.05, 1.25]})
    assert overlapping.verdict == INCONCLUSIVE
    assert ordered({"a": [2.0, 2.01], "b": [1.0, 1.01]}).verdict == FAILS
    assert ordered({"a": [2.0, 2.01], "b": [1.0, 1.01]}, increasing=False).verdict == HOLDS


def test_ratio_and_paired_difference():
    assert ratio_at_least([100, 110, 105], [1, 1.1, 0.9], 50).verdict == HOLDS
    assert ratio_at_least([100, 110, 105], [1, 1.1, 0.9], 200).verdict == FAILS
    # a paired difference is decided by the spread of the differences, not of the runs
    a, b = [0.30, 0.40, 0.50, 0.60], [0.29, 0.39, 0.49, 0.59]
    assert difference_at_least(a, b, paired=True).verdict == HOLDS
    assert difference_at_least(a, b).verdict == INCONCLUSIVE


def test_all_of_fails_when_one_fails_and_holds_only_when_all_hold():
    good, bad, unsure = at_least([5, 6, 7], 1), at_least([5, 6, 7], 100), at_least(Estimate.single(3), 1)
    assert all_of({"a": good, "b": good}).verdict == HOLDS
    assert all_of({"a": good, "b": bad}).verdict == FAILS
    assert all_of({"a": good, "b": unsure}).verdict == INCONCLUSIVE


def test_rows_below_their_scale_are_not_testable_and_kinds_are_counted_apart(tmp_path, monkeypatch):
    c = Claims("demo", scale="book")
    c.section("fig1", "Figure 1")
    c.add("accuracy", close(0.93, [0.3, 0.31], abs=0.02), source="p, Fig. 1", needs="paper")
    c.add("quadrature", close(1.467, 1.4669, abs=1e-3), kind=MACHINERY, source="p, Eq. 1")
    c.section("fig2", "Figure 2")
    c.add("rate", close(1.21, [1.2, 1.21, 1.22], rel=0.03), source="p, Sec. 2", quote="grows by 1.21")
    assert c.rows[0].verdict == NOT_TESTABLE
    assert c.counts() == {PAPER: {HOLDS: 1, FAILS: 0, INCONCLUSIVE: 0, NOT_TESTABLE: 1},
                          MACHINERY: {HOLDS: 1, FAILS: 0, INCONCLUSIVE: 0, NOT_TESTABLE: 0}}
    assert [r.name for r in c.table("fig1").rows] == ["accuracy", "quadrature"]
    assert [r.name for r in c.summary_table().rows] == ["accuracy", "rate"], "machinery checks are shown apart"
    assert c.summary() == "paper claims: 1 holds, 1 not testable; machinery checks: 1 holds"
    monkeypatch.chdir(tmp_path)
    data = json.loads(c.save().read_text())
    assert data["claims"][2]["quote"] == "grows by 1.21" and data["claims"][2]["section"] == "fig2"
    assert {"git_commit", "scale", "seed", "torch", "python", "device", "cpu_capability", "threads", "date",
            "wall_seconds"} <= set(data["provenance"])


def test_every_rendering_is_a_table_with_the_note():
    c = Claims("demo")
    c.section("s", "S")
    c.add("x", at_least([3, 4, 5], 1), source="p", note="why it matters")
    html, md, text = c.table()._repr_html_(), c.table()._repr_markdown_(), repr(c.table())
    assert '<table class="gradprobe-claims">' in html and "why it matters" in html and "✓" in html
    assert "| ✓ | x |" in md and "why it matters" in md
    assert text.splitlines()[0] == "S" and text.splitlines()[2].startswith("✓  x") and "why it matters" in text


def test_claims_refuse_bad_input():
    c = Claims("demo")
    with pytest.raises(ValueError, match="exactly one of rel= or abs="):
        close(1.0, 1.0)
    with pytest.raises(ValueError, match="must be a number"):
        close("1.0", 1.0, rel=0.1)
    with pytest.raises(ValueError, match="needs a source"):
        c.add("x", at_least(2, 1), source="")
    with pytest.raises(ValueError, match="kind must be one of"):
        c.add("x", at_least(2, 1), source="p", kind="opinion")
    c.add("x", at_least(2, 1), source="p")
    with pytest.raises(ValueError, match="already checked"):
        c.add("x", at_least(2, 1), source="p")
    with pytest.raises(ValueError, match="check must be a Check"):
        c.add("y", True, source="p")
    with pytest.raises(ValueError, match="chapter must be"):
        Claims("bad name")
    with pytest.raises(ValueError, match="at must be one of"):
        not_testable(0.9, "huge")
