"""gradprobe: the shared library of the book *Why gradients still explode*.

Core packages by concept, each module read top to bottom; only ``chapters`` is paper-specific:

- :mod:`gradprobe.runtime`   ``device()``, ``seed()`` and its ``Generators``, ``progress()``
- :mod:`gradprobe.checks`    the argument checks every module uses
- :mod:`gradprobe.networks`  ``layers`` (activations, inits, the layer), ``mlp``, ``resnet`` (CIFAR), ``vgg``,
  ``vit``, ``swin``, ``convnext``, ``gpt`` (GPT-2-style decoder), ``imagenet_resnet`` (ResNet-50 layout)
- :mod:`gradprobe.measure`   ``stats``, ``hooks``, ``correlation``, ``rates`` (the rate fitter), ``gsc``,
  ``batchnorm``, ``kernels``, ``steps``, ``discs``, ``linearize``, ``repeats``
- :mod:`gradprobe.theory`    ``gaussian`` (r(φ), R_f, R_b), ``operators``, ``distributions``, ``random_matrices``
- :mod:`gradprobe.data`      ``cifar10`` (find, decode, cache) and ``tensors`` (standardized torch tensors)
- :mod:`gradprobe.train`     ``loop`` (fit, evaluate), ``optim`` (LARS, LARC, LAMB, LALC), ``schedules``
- :mod:`gradprobe.sweep`     grids of self-seeding trials stored by configuration hash: resumable,
  in-process, local processes or Dask; checkpoints for long trials
- :mod:`gradprobe.diagnose`  the four papers' measures of any PyTorch model (``gradprobe.diagnose(model, x)``,
  ``python -m gradprobe.diagnose``): ``watch`` (hooks), ``graph`` (residual stream), ``predict``
  (theory), ``summary``, ``report`` (table, plot, HTML), ``cli``
- :mod:`gradprobe.book`      ``runner`` (``python -m gradprobe.book run|build``), ``scales``, ``claims``
  (verdicts), ``page`` (a chapter run: seeds, claims, glue, time estimates), ``plots``, ``results``
- :mod:`gradprobe.chapters`  one module per notebook: ``one_number``, ``philipp2018``, ``bjorck2018``,
  ``paik2023``, ``ghost2024``, ``four_lenses``
"""
import importlib

from .runtime import device, seed, progress, Generators

__all__ = ["device", "seed", "progress", "Generators", "diagnose"]


def __getattr__(name):
    # gradprobe.diagnose(model, inputs) without importing it (and pandas, matplotlib) with the package
    if name == "diagnose":
        return importlib.import_module(".diagnose", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
__version__ = "0.1.0"
