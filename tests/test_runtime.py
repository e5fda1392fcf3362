import numpy as np
import pytest
import torch

import gradprobe
from gradprobe import scales


def test_seed_gives_reproducible_and_independent_streams():
    a, b = gradprobe.seed(3), gradprobe.seed(3)
    x1, w1 = torch.randn(5, generator=a.data), torch.randn(5, generator=a.weights)
    assert torch.equal(x1, torch.randn(5, generator=b.data))
    assert torch.equal(w1, torch.randn(5, generator=b.weights))
    assert not torch.equal(x1, w1)  # data and weights are different draws
    gradprobe.seed(3)
    r1 = (np.random.rand(), torch.rand(1).item())
    gradprobe.seed(3)
    assert r1 == (np.random.rand(), torch.rand(1).item())


def test_seed_and_device_refuse_bad_input():
    with pytest.raises(ValueError, match="non-negative integer"):
        gradprobe.seed(-1)
    with pytest.raises(ValueError, match="non-negative integer"):
        gradprobe.seed(1.5)
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda"):
        gradprobe.device("tpu")
    assert gradprobe.device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert gradprobe.device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="sees no CUDA"):
            gradprobe.device("cuda")


TABLE = {"smoke": dict(n=1, m=2), "book": dict(n=3, m=4), "paper": dict(n=5, m=6)}


def test_settings_pick_a_scale_and_show_all_three():
    s = scales.settings(TABLE, "book", notes={"n": "paper: 5"})
    assert (s.n, s.m) == (3, 4)
    md = s._repr_markdown_()
    assert "**book** (this run)" in md and "| n | 1 | 3 | 5 | paper: 5 |" in md


def test_settings_refuse_bad_tables():
    with pytest.raises(ValueError, match="scale must be one of smoke, book, paper"):
        scales.settings(TABLE, "huge")
    with pytest.raises(ValueError, match="needs exactly the scales"):
        scales.settings({"smoke": {}, "book": {}}, "book")
    with pytest.raises(ValueError, match="expected \\['n', 'm'\\]"):
        scales.settings({**TABLE, "paper": dict(n=5)}, "book")
