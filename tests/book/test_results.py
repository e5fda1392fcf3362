"""gradprobe.book.results: the results page gathered from the chapters' claims files."""
import json

import pytest
from docutils.nodes import make_id

from gradprobe.book.claims import Claims, at_least, close
from gradprobe.book.results import html_id, write_results_page


@pytest.mark.parametrize("label", ["one_number-rates", "ghost2024-fig1-left", "four_lenses-zoo", "paik2023-theory"])
def test_links_use_the_id_sphinx_gives_a_myst_target(label):
    assert html_id(label) == make_id(label)


def test_results_page_counts_every_row_and_links_it_to_its_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "01_toy_chapter.ipynb").write_text("{}")
    claims = Claims("toy_chapter")
    claims.section("toy_chapter-fig1", "Figure 1")
    claims.add("rate is 1.5", close(1.5, [1.49, 1.5, 1.51], rel=0.05), source="toy, Eq. 1")
    claims.add("rate is at least 2", at_least([1.49, 1.5, 1.51], 2.0), source="toy, Eq. 2")
    claims.save()
    assert json.loads((tmp_path / "toy_chapter.claims.json").read_text())["claims"][1]["verdict"] == "fails"
    page = write_results_page(tmp_path).read_text()
    assert page.count('href="01_toy_chapter.html#toy-chapter-fig1"') == 2
    counts = [line for line in page.splitlines() if line.startswith('| <a href="01_toy_chapter.html">')]
    assert counts == ['| <a href="01_toy_chapter.html">01_toy_chapter</a> | paper claims | 1 | 1 | 0 | 0 |']
