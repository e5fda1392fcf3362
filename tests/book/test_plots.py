import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from gradprobe.book import plots


def test_savefig_writes_png_in_figures_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig, ax = plt.subplots()
    plots.per_layer(ax, [1.0, 10.0, 100.0], "m", ylabel="gradient norm")
    path = plots.savefig(fig, "demo-fig")
    assert path == tmp_path / "figures" / "demo-fig.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert ax.get_yscale() == "log" and ax.get_xlabel().startswith("layer index")
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]


def test_savefig_refuses_paths_as_names():
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="figure name"):
        plots.savefig(fig, "../outside")


def test_band_draws_median_and_min_max_of_runs():
    fig, ax = plt.subplots()
    runs = [[1.0, 2.0, 3.0], [3.0, 4.0, 9.0], [2.0, 3.0, 4.0]]
    line = plots.band(ax, [1, 2, 3], runs, "demo", color="tab:red")
    assert list(line.get_ydata()) == [2.0, 3.0, 4.0] and line.get_label() == "demo"
    lows, highs = ax.collections[0].get_paths()[0].vertices[:, 1].min(), ax.collections[0].get_paths()[0].vertices[:, 1].max()
    assert (lows, highs) == (1.0, 9.0)
    with pytest.raises(ValueError, match="runs must be"):
        plots.band(ax, [1, 2], runs)
