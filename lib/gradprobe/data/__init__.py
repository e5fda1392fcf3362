"""CIFAR-10:

- :mod:`gradprobe.data.cifar10`  find, decode and cache the dataset: ``cifar10(split)`` as uint8 arrays
- :mod:`gradprobe.data.tensors`  standardized torch tensors, channel statistics, augmentation
"""
