"""gradprobe.runtime: the device, seeded generators, progress bars."""
import numpy as np
import pytest
import torch

import gradprobe


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
    assert gradprobe.seed(np.int64(3)).seed == 3 and type(gradprobe.seed(np.int64(3)).seed) is int
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda"):
        gradprobe.device("tpu")
    assert gradprobe.device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert gradprobe.device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="sees no CUDA"):
            gradprobe.device("cuda")
