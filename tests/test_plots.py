import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from gradprobe import plots


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
