"""gradprobe.book.scales: settings written once at book scale, overridden per scale, shown whole."""
import pytest

from gradprobe.book.scales import settings

BOOK = dict(n=3, m=4)


def test_settings_pick_a_scale_and_show_all_three():
    s = settings("book", book=BOOK, smoke=dict(n=1, m=2), paper=dict(n=5, m=6), notes={"n": "paper: 5"})
    assert (s.n, s.m) == (3, 4)
    md = s._repr_markdown_()
    assert "**book** (this run)" in md and "| n | 1 | 3 | 5 | paper: 5 |" in md
    assert repr(s).splitlines() == ["setting  smoke  book (this run)  paper  note", "n  1  3  5  paper: 5",
                                    "m  2  4  6  "]


def test_overrides_change_only_their_settings_and_keep_the_order():
    smoke = settings("smoke", book=dict(a=1, b=2, c=3), smoke=dict(c=30, a=10))
    assert (smoke.a, smoke.b, smoke.c) == (10, 2, 30)
    assert [line.split()[0] for line in repr(smoke).splitlines()[1:]] == ["a", "b", "c"]
    paper = settings("paper", book=dict(a=1, b=2, c=3))
    assert (paper.a, paper.b, paper.c) == (1, 2, 3)
    assert "| b | 2 | 2 | 2 |" in paper._repr_markdown_()


def test_settings_refuse_bad_tables():
    with pytest.raises(ValueError, match="scale must be one of smoke, book, paper"):
        settings("huge", book=BOOK)
    with pytest.raises(ValueError, match="smoke names settings that book does not have: 'k'"):
        settings("book", book=BOOK, smoke=dict(k=1))
    with pytest.raises(ValueError, match="paper names settings"):
        settings("book", book=BOOK, paper=dict(n=5, x=0))
    with pytest.raises(ValueError, match="notes names settings"):
        settings("book", book=BOOK, notes={"q": "?"})
    with pytest.raises(ValueError, match="non-empty dict"):
        settings("book", book={})
    with pytest.raises(TypeError):
        settings("book", {"n": 1})                              # the full set is named: book=...
