"""CIFAR-10 as torch tensors for training and probing: standardized subsets, the channel statistics
they are standardized with, the standard augmentation, and the mean-subtracted scale of He et al.

    data = cifar10_tensors(n_train=5000, n_test=1000, device=dev, generator=gen.data)
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .cifar10 import cifar10, to_tensor

__all__ = ["CifarTensors", "channel_stats", "cifar10_tensors", "augment", "mean_subtracted", "PREPROCESSING",
           "pixel_mean", "preprocess"]


class CifarTensors(NamedTuple):
    """Standardized CIFAR-10 images [N, 3, 32, 32] (float32) and labels [N] (int64) of a training
    and a test subset (:func:`cifar10_tensors`)."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@functools.lru_cache(maxsize=4)
def channel_stats(root: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (on the [0, 1] scale) of the CIFAR-10 training set
    that is actually loaded (the JPEG copy differs from the official set in the 3rd decimal)."""
    images, _ = cifar10("train", root)
    flat = images.reshape(-1, images.shape[-1])
    mean = flat.mean(axis=0, dtype=np.float64) / 255.0
    var = np.stack([np.square(flat[:, c], dtype=np.float64).mean() for c in range(flat.shape[1])]) / 255.0**2 - mean**2
    return tuple(mean.tolist()), tuple(np.sqrt(var).tolist())


def _subset(images, labels, n, generator):
    if n is None:
        return images, labels
    if not 0 < n <= len(labels):
        raise ValueError(f"asked for {n} images but the split has {len(labels)}")
    idx = torch.randperm(len(labels), generator=generator)[:n].sort().values.numpy()
    return images[idx], labels[idx]


def cifar10_tensors(n_train: int | None = None, n_test: int | None = None, device="cpu",
                    generator: torch.Generator | None = None, root=None) -> CifarTensors:
    """Standardized float32 CIFAR-10 tensors [N, 3, 32, 32] and int64 labels, on ``device``.

    ``n_train``/``n_test`` draw random subsets (without replacement, from ``generator``); None
    takes the whole split. Channels are standardized with :func:`channel_stats`. A subset keeps the
    split's order, which for image-folder sources is sorted by class: take probe batches through a
    random permutation (:func:`gradprobe.train.loop.fit` does so for training), never as the first N rows.
    """
    mean, std = channel_stats(None if root is None else str(root))
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = _subset(*cifar10(split, root), n, generator)
        out += [to_tensor(images, mean, std).to(device), torch.from_numpy(labels).to(device)]
    return CifarTensors(*out)


def augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation of He et al. (2016): a random crop of the image padded by
    ``pad`` zeros on each side and a random horizontal flip, drawn per image from ``generator``."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dy, dx))])
    out[flip] = out[flip].flip(-1)
    return out


def mean_subtracted(x: torch.Tensor, root=None) -> torch.Tensor:
    """Undo the per-channel division by σ of :func:`cifar10_tensors`: pixels on the
    [0, 1] scale minus the channel mean, the scale of He et al.'s preprocessing (they subtract the
    per-pixel mean). An unnormalized ResNet's output is proportional to its input's scale (no
    biases, ReLU), so this matters: unit-variance inputs make the logits ≈ 4× larger, and the
    initial loss of a Xavier ResNet-110, in the hundreds here, then lies above the paper's
    divergence threshold of 10³."""
    _, std = channel_stats(None if root is None else str(root))
    return x * torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


# How a network's inputs are prepared from the standardized tensors of :func:`cifar10_tensors`
PREPROCESSING = ("standardized", "channel-mean", "pixel-mean")


@functools.lru_cache(maxsize=4)
def pixel_mean(root: str | None = None) -> torch.Tensor:
    """The mean training image [3, 32, 32] on the [0, 1] scale (float32, CPU): He et al.'s
    per-pixel mean, subtracted from every image by their preprocessing."""
    images, _ = cifar10("train", root)
    mean = images.mean(axis=0, dtype=np.float64) / 255.0           # [32, 32, 3]
    return torch.from_numpy(mean.transpose(2, 0, 1).astype(np.float32))


def preprocess(x: torch.Tensor, how: str, root=None) -> torch.Tensor:
    """Images ``x`` as loaded by :func:`cifar10_tensors` (standardized per channel) prepared as
    ``how`` says, one of :data:`PREPROCESSING`:

    - ``"standardized"``: unchanged, zero mean and unit variance per channel;
    - ``"channel-mean"``: pixels on the [0, 1] scale minus the channel mean (:func:`mean_subtracted`);
    - ``"pixel-mean"``: pixels on the [0, 1] scale minus the mean training image
      (:func:`pixel_mean`), He et al.'s preprocessing.

    The two mean-subtracted scales differ little (the mean image varies around the channel mean
    by ≈ 0.03, the pixels by ≈ 0.25); both are ≈ 4× smaller than the standardized scale, which
    matters for a network without normalization: its output is proportional to its input."""
    if how not in PREPROCESSING:
        raise ValueError(f"how must be one of {', '.join(map(repr, PREPROCESSING))}, got {how!r}")
    if how == "standardized":
        return x
    key = None if root is None else str(root)
    if how == "channel-mean":
        return mean_subtracted(x, root)
    mean, std = channel_stats(key)
    view = lambda v: torch.tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * view(std) + view(mean) - pixel_mean(key).to(x.device, x.dtype)
