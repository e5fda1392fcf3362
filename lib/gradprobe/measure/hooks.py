"""Watching a network run: which layers to watch, hooks on them, and leaving the model as it was.

- :func:`weight_layers` and :func:`rate_layers`: the layers a measurement is taken at, input to output;
- :func:`hooks`: the one hook helper of the library. While its ``with`` block runs, a function of
  yours sees (and may replace) the output of each watched module; the hooks are removed on exit;
- :func:`record`: the inputs, outputs and output-gradients of watched modules, as a :class:`Recording`;
- :func:`preserved_state`: restores buffers (BatchNorm's running statistics) and train/eval modes
  on exit, so that a measurement leaves no trace in the model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from .stats import variance

__all__ = ["weight_layers", "rate_layers", "hooks", "Recording", "record", "preserved_state"]

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The linear and convolution modules of ``model`` in registration order (input to output for
    the networks of :mod:`gradprobe.networks`)."""
    layers = [m for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layer to measure")
    return layers


def rate_layers(model: nn.Module) -> list[nn.Module]:
    """The layers along which an explosion rate is measured, input to output: ``model.rate_layers()``
    if the model defines it (the ViT: the layers that write into its residual stream), else every
    Linear and Conv layer except 1×1 convolutions (ResNet shortcuts) and the last layer (the
    classifier)."""
    if hasattr(model, "rate_layers"):
        return list(model.rate_layers())
    layers = [m for m in weight_layers(model)
              if not (isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1))]
    if len(layers) < 3:
        raise ValueError(f"{type(model).__name__} has {len(layers)} weight layers: too few to fit a rate "
                         "(at least 2 besides the classifier)")
    return layers[:-1]


@contextlib.contextmanager
def hooks(modules, fn):
    """While the ``with`` block runs, call ``fn(i, inputs, output)`` after every forward pass of
    ``modules[i]`` (``inputs``: the tuple of its positional inputs). A value that ``fn`` returns
    replaces the module's output (``None`` keeps it). The hooks are removed when the block ends,
    also on error.

    >>> seen = {}
    >>> with hooks([net[0]], lambda i, inputs, output: seen.setdefault(i, output.shape)):
    ...     net(x)
    """
    modules = list(modules)

    def hook(i):
        return lambda module, inputs, output: fn(i, inputs, output)

    handles = []
    try:
        handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class Recording:
    """What :func:`record` saw: for each watched module (in the order given), its output in the
    last forward pass (``activations``), the gradient of the loss with respect to that output in the
    last backward pass (``gradients``) and, if asked for, its first input (``inputs``)."""

    modules: list[nn.Module]
    activations: list[torch.Tensor | None] = field(default_factory=list)
    gradients: list[torch.Tensor | None] = field(default_factory=list)
    inputs: list[torch.Tensor | None] = field(default_factory=list)

    def variances(self, which: str = "gradients") -> torch.Tensor:
        """Var[·] per module: the mean over features of the per-feature variance over the batch
        (dimension 0), the paper's Var[x]. ``which`` is ``"activations"`` or ``"gradients"``."""
        if which not in ("activations", "gradients"):
            raise ValueError(f"which must be 'activations' or 'gradients', got {which!r}")
        values = getattr(self, which)
        if any(v is None for v in values):
            raise ValueError(f"no {which} recorded for some modules: run a forward"
                             f"{' and backward' if which == 'gradients' else ''} pass inside the with-block")
        return torch.stack([variance(v) for v in values])


@contextlib.contextmanager
def record(model: nn.Module, modules: list[nn.Module] | None = None, *, inputs: bool = False,
           gradients: bool = True, detach: bool = True):
    """Record the outputs and (unless ``gradients=False``) the output-gradients of ``modules``
    (default: :func:`weight_layers`), and with ``inputs=True`` their first inputs.

    >>> with record(net) as rec:
    ...     net(x).backward(g)
    >>> rec.variances("gradients")   # Var[∂ℓ/∂h_k] per layer

    Tensors are detached (``detach=False`` keeps outputs and inputs in the autograd graph, to
    differentiate through them later); gradients are recorded for outputs that require one. The
    hooks are removed when the block ends, also on error.
    """
    modules = weight_layers(model) if modules is None else list(modules)
    n = len(modules)
    rec = Recording(modules, [None] * n, [None] * n, [None] * n)
    keep = (lambda t: t.detach()) if detach else (lambda t: t)

    def seen(i, args, output):
        rec.activations[i] = keep(output)
        if inputs:
            rec.inputs[i] = keep(args[0])
        if gradients and output.requires_grad:
            output.register_hook(lambda grad: rec.gradients.__setitem__(i, grad.detach()))

    with hooks(modules, seen):
        yield rec


@contextlib.contextmanager
def preserved_state(model: nn.Module):
    """Restore every buffer of ``model`` (BatchNorm's running statistics and counters) and every
    module's train/eval mode when the ``with`` block ends, also on error: a measurement pass
    (in training mode, say) leaves no trace. Parameters and their ``.grad`` are not touched."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, mode in modes:
            m.training = mode
