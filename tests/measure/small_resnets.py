"""Small CIFAR ResNets and image batches for the tests of measurements at numbered layers."""
import torch

from gradprobe.networks.resnet import cifar_resnet


def gen(n=0):
    return torch.Generator().manual_seed(n)


def batch(n=16, size=8, seed=1):
    """``n`` random images of ``size``² pixels and their random labels."""
    g = gen(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def net(norm=None, depth=8, seed=0):
    """A CIFAR ResNet of ``depth`` with weights from the seed ``seed``."""
    return cifar_resnet(depth, norm, generator=gen(seed))
