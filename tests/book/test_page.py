import json
import types

import pytest
import torch

from gradprobe.book.claims import at_least
from gradprobe.book.page import Page, _duration
from gradprobe.book.scales import settings


def test_page_seeds_separate_streams_and_saves_claims_with_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = Page("demo", "smoke", seed=3, device="cpu"), Page("demo", "smoke", seed=3, device="cpu")
    x = torch.randn(4, generator=a.gen.data)
    assert torch.equal(x, torch.randn(4, generator=b.gen.data)), "same seed, same data stream"
    assert not torch.equal(x, torch.randn(4, generator=a.gen.weights)), "data and weights are separate streams"
    a.claims.section("s", "S")
    a.claims.add("x", at_least([3.0, 4.0, 5.0], 1.0), source="p, Eq. 1")
    a.finish()
    data = json.loads((tmp_path / "demo.claims.json").read_text())
    assert data["provenance"]["scale"] == "smoke" and data["provenance"]["seed"] == 3
    assert data["claims"][0]["verdict"] == "holds"


def test_estimates_scale_this_runs_time_by_each_scales_work(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    glued = {}
    monkeypatch.setattr("gradprobe.book.page._glue", lambda name, value: glued.__setitem__(name, value))
    clock = iter([100.0, 110.0])                      # the run takes 10 s (the page's own clock)
    monkeypatch.setattr("gradprobe.book.page.time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    S = settings("smoke", book=dict(steps=100), smoke=dict(steps=10), paper=dict(steps=100_000))
    Page("demo", "smoke", device="cpu").finish(S, cost=lambda s: s.steps)
    assert glued["wall"] == "10 s"
    assert glued["estimate_smoke"] == "10 s" and glued["estimate_book"] == "1 min 40 s"
    assert glued["estimate_paper"] == "27.8 h"       # 10 s per 10 steps × 100,000 steps


def test_finish_needs_both_settings_and_cost(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="give both settings and cost"):
        Page("demo", "smoke", device="cpu").finish(cost=lambda s: 1)


@pytest.mark.parametrize("seconds, text", [(41.4, "41 s"), (185, "3 min 05 s"), (5 * 3600, "5.0 h"),
                                           (3 * 86400, "3.0 days")])
def test_durations_read_naturally(seconds, text):
    assert _duration(seconds) == text


def test_numbers_a_scale_does_not_compute_are_glued_as_not_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    glued = {}
    monkeypatch.setattr("gradprobe.book.page._glue", lambda name, value: glued.__setitem__(name, value))
    page = Page("toy", "smoke", 0, "cpu")
    page.glue_not_run("depth_110", "resid_SELU")
    assert glued["depth_110"] == glued["resid_SELU"] == "(not run at smoke scale)"


def test_a_list_of_numbers_is_glued_as_one_phrase(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    glued = {}
    monkeypatch.setattr("gradprobe.book.page._glue", lambda name, value: glued.__setitem__(name, value))
    page = Page("toy", "smoke", 0, "cpu")
    assert page.glue_list("three", [1.2345, 2.5, 30], ".3g") == "1.23, 2.5 and 30"
    assert page.glue_list("two", ["8×8", "16×16"]) == "8×8 and 16×16"
    assert page.glue_list("one", [20]) == "20" and glued["one"] == "20"
    with pytest.raises(ValueError, match="no values"):
        page.glue_list("none", [])
