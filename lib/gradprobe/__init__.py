"""gradprobe: the shared library of the book *Why gradients still explode*.

Small modules, read top to bottom:

- :mod:`gradprobe.runtime`  ``device()``, ``seed()`` and ``progress()``
- :mod:`gradprobe.models`   MLPs with a choice of activation, normalization, residual and init
- :mod:`gradprobe.measure`  hooks that record activations and gradients; per-layer rates
- :mod:`gradprobe.theory`   Gaussian expectations: explosion rate, forward and backward ratios
- :mod:`gradprobe.claims`   "paper vs this book" tables
- :mod:`gradprobe.plots`    the house plot style
- :mod:`gradprobe.scales`   the smoke / book / paper settings of a notebook
- :mod:`gradprobe.data`     CIFAR-10
- :mod:`gradprobe.train`    CIFAR-10 tensors and a training loop that survives divergence
- :mod:`gradprobe.gsc`      gradient scale coefficient, domain collapse, dilution (Philipp et al.)
- :mod:`gradprobe.discs`    the network as a function of one layer's weights (azimuthal discs)
- :mod:`gradprobe.linearize` effective depth by linearizing the top layers
- :mod:`gradprobe.resnets`  the CIFAR ResNets of He et al. (depth 6n+2, option-A shortcuts)
- :mod:`gradprobe.divergence` channel moments, Table 1's a and b, step scans, the divergence sweep (Bjorck et al.)
- :mod:`gradprobe.random_matrices` singular values of products of Gaussian matrices (Fuss–Catalan)
- :mod:`gradprobe.rates`    explosion rate of any model, the correlation measure (Paik & Choi)
- :mod:`gradprobe.optim`    LALC (reconstructed), LARS, LARC, LAMB, warm-up
- :mod:`gradprobe.vit`      a small ViT with LayerNorm
- :mod:`gradprobe.ratios`   forward/backward scaling ratios of operators and networks (ghost 2024)
- :mod:`gradprobe.repeats`  many repeated measurements batched into large products
- :mod:`gradprobe.vgg`      VGG-style conv nets with torchvision's parameter names
- :mod:`gradprobe.book`     the papermill runner and the book build (``python -m gradprobe.book``)
"""
from .runtime import device, seed, progress, Generators

__all__ = ["device", "seed", "progress", "Generators"]
__version__ = "0.1.0"
