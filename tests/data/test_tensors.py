"""gradprobe.data.tensors: standardized CIFAR-10 tensors, augmentation, the mean-subtracted scale.
The dataset is replaced by a small fake one: nothing here needs CIFAR-10 itself."""
import numpy as np
import pytest
import torch

from gradprobe.data import tensors


@pytest.fixture
def fake_cifar(monkeypatch):
    """tensors.cifar10 returns 200 training and 50 test images of a fixed random set."""
    rng = np.random.default_rng(0)
    splits = {"train": (rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 200)),
              "test": (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 50))}
    monkeypatch.setattr(tensors, "cifar10", lambda split, root=None: splits[split])
    tensors.channel_stats.cache_clear()
    yield splits
    tensors.channel_stats.cache_clear()


def test_channel_stats_are_those_of_the_training_images(fake_cifar):
    images = fake_cifar["train"][0].reshape(-1, 3) / 255.0
    mean, std = tensors.channel_stats()
    np.testing.assert_allclose(mean, images.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, images.std(axis=0), rtol=1e-9)


def test_cifar10_tensors_are_standardized_seeded_subsets(fake_cifar):
    whole = tensors.cifar10_tensors()
    assert whole.train_x.shape == (200, 3, 32, 32) and whole.test_y.shape == (50,)
    assert whole.train_x.dtype == torch.float32 and whole.train_y.dtype == torch.int64
    assert torch.allclose(whole.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(whole.train_x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    a = tensors.cifar10_tensors(20, 5, generator=torch.Generator().manual_seed(1))
    b = tensors.cifar10_tensors(20, 5, generator=torch.Generator().manual_seed(1))
    assert a.train_x.shape == (20, 3, 32, 32) and all(torch.equal(u, v) for u, v in zip(a, b))
    with pytest.raises(ValueError, match="asked for 300 images"):
        tensors.cifar10_tensors(300)


def test_augment_keeps_shape_and_content_statistics():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = tensors.augment(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    assert tensors.augment(x, torch.Generator().manual_seed(0), pad=0).flip(-1).eq(x).logical_or(
        tensors.augment(x, torch.Generator().manual_seed(0), pad=0).eq(x)).all()


def test_mean_subtracted_multiplies_by_the_channel_std(monkeypatch):
    monkeypatch.setattr(tensors, "channel_stats", lambda root=None: ((0.5, 0.5, 0.5), (0.25, 0.5, 2.0)))
    x = torch.ones(2, 3, 4, 4)
    out = tensors.mean_subtracted(x)
    assert out[:, 0].eq(0.25).all() and out[:, 1].eq(0.5).all() and out[:, 2].eq(2.0).all()


def test_preprocess_gives_he_et_al_pixel_mean_and_the_other_scales(fake_cifar):
    images = fake_cifar["train"][0]
    tensors.pixel_mean.cache_clear()
    data = tensors.cifar10_tensors()
    raw = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255           # [0, 1], by hand
    mean_image = raw.mean(0)
    assert torch.allclose(tensors.pixel_mean().double(), mean_image, atol=1e-6)
    out = tensors.preprocess(data.train_x, "pixel-mean")
    assert torch.allclose(out.double(), raw - mean_image, atol=1e-5)
    assert torch.allclose(out.mean(0), torch.zeros(3, 32, 32), atol=1e-5)     # every pixel centred
    assert torch.equal(tensors.preprocess(data.train_x, "channel-mean"), tensors.mean_subtracted(data.train_x))
    assert tensors.preprocess(data.train_x, "standardized") is data.train_x
    with pytest.raises(ValueError, match="'pixel-mean'"):
        tensors.preprocess(data.train_x, "per-pixel")
    tensors.pixel_mean.cache_clear()
