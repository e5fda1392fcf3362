import json

import pytest

from gradprobe.book.claims import Claims


def test_close_claims_pass_and_fail_by_tolerance():
    c = Claims("demo")
    assert c.close("a", 1.467, 1.47, rel=0.03, source="paper, Eq. 1").passed
    assert not c.close("b", 1.0, 1.2, abs=0.1, source="paper, Fig. 2").passed
    assert not c.close("c", 1.0, float("nan"), rel=0.5, source="paper").passed
    assert not c.all_passed
    assert c.summary() == "1 of 3 claims hold; failing: b, c"


def test_table_shows_failing_rows_with_marks():
    c = Claims("demo")
    c.close("holds", 2.0, 2.01, rel=0.01, source="p")
    c.holds("qualitative", "grows", "×300", False, criterion="≥ 1000", source="q")
    text, md = repr(c), c._repr_markdown_()
    assert "✓  holds" in text and "✗  qualitative" in text
    assert "| ✗ | qualitative | grows | ×300 | ≥ 1000 | q |" in md
    assert "1 of 2 claims hold" in md


def test_save_writes_json_beside_the_notebook(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = Claims("demo")
    c.close("x", 1.0, float("inf"), rel=0.1, source="p")
    path = c.save()
    data = json.loads(path.read_text())
    assert path.name == "demo.claims.json"
    assert data["all_passed"] is False and data["claims"][0]["measured"] is None


def test_claims_refuse_bad_input():
    c = Claims("demo")
    with pytest.raises(ValueError, match="exactly one of rel= or abs="):
        c.close("x", 1.0, 1.0, source="p")
    with pytest.raises(ValueError, match="must be a number"):
        c.close("x", "1.0", 1.0, rel=0.1, source="p")
    with pytest.raises(ValueError, match="needs a source"):
        c.close("x", 1.0, 1.0, rel=0.1, source="")
    c.close("x", 1.0, 1.0, rel=0.1, source="p")
    with pytest.raises(ValueError, match="already checked"):
        c.close("x", 1.0, 1.0, rel=0.1, source="p")
    with pytest.raises(ValueError, match="passed must be a bool"):
        c.holds("y", "t", 1, 1, criterion="c", source="p")
    with pytest.raises(ValueError, match="chapter must be"):
        Claims("bad name")
