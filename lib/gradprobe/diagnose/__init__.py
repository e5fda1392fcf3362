"""Diagnose your own network: one call, any PyTorch model, the four papers' measures side by side.

    >>> from gradprobe.diagnose import diagnose
    >>> d = diagnose(model, torch.randn(32, 3, 224, 224))
    >>> print(d.verdict)       # "the gradient grows ×1.21 per BN–ReLU layer toward the input, ..."
    >>> d.to_frame()           # one row per weight layer, input to output
    >>> d.plot(); d.save("resnet.json")

or from a shell: ``python -m gradprobe.diagnose package.module:factory --input-shape 8,3,224,224``.

What is measured, per weight layer k (Linear, Conv1d/2d/3d, Hugging Face's ``Conv1D``, the
projections of ``nn.MultiheadAttention``, embeddings), with h_k its output, g_k = ∂ℓ/∂h_k and f the
model's output; Var[t] is the mean over features (a conv's channels, a linear layer's outputs) of
the per-feature variance over the samples and positions (batch, pixels, tokens), the statistic a
BatchNorm layer normalizes (for a [batch, features] tensor it is
:func:`gradprobe.measure.stats.variance`):

- ``weight_grad_norm``  ‖∂ℓ/∂W_k‖_F, the total over every use of the weight;
- ``grad_variance``     Var[g_k] (Paik & Choi 2023 fit their rate to it);
- ``forward_variance``  Var[h_k];
- ``R_f``, ``R_b``      the forward and backward scaling ratios (ghost 2024, Definition B.1) of the
  operator h_k ↦ f, the rest of the network: R_f = Var[f]/Var[h_k], R_b = Var[∂ℓ/∂h_k]/Var[∂ℓ/∂f];
- ``gsc``               the gradient scale coefficient GSC(k, ·) of Philipp et al. (2018, Def. 1):
  ‖J‖_qm ‖h_k‖/‖f‖ with ‖J‖²_qm = ‖Jᵀu‖²/numel(h_k) for the loss's own output gradient u. With
  the default loss (below) u is Gaussian and this is the one-probe estimate of GSC(k, output) of
  :func:`gradprobe.measure.gsc.gsc_profile`; with a scalar loss of yours it is GSC(k, 0) exactly,
  with |ℓ| in place of ‖f‖. Since Var[u] = Var[∂ℓ/∂f], GSC² ≈ (R_b/R_f)·numel(h_k)/numel(f);
- ``bjorck_a``, ``bjorck_b``  for convolutions, Table 1 of Bjorck et al. (2018), Eq. (4): the mean
  over kernel entries of Σ|d| (a) and of |Σ d| = |∂ℓ/∂K| (b), d the per-position summands of the
  kernel gradient (:func:`gradprobe.measure.kernels.gradient_sums`); a/b ≫ 1: the summands cancel;
- ``pair_ratio``, ``pair_predicted``  where the next weight layer j is fed by this one (i) through
  a normalization and/or an activation only: Var[g_i]/Var[g_j] divided by the pair's gain ratio
  B_j/A_i (below), measured and predicted.

The **explosion rate** (Paik & Choi 2023) is the growth of Var[g] per layer toward the input,
fitted on log Var[g] by :func:`gradprobe.measure.rates.fit_rate` (one slope, one intercept per run
of layers). Two fits are made:

- **per layer**: on the runs of layers each fed by the previous one through ``norm → activation``,
  ``activation → norm`` (or one of them) only: no pooling, no residual addition, no dropout; for
  φ(norm(·)) the first layer of the pair must itself be fed by φ(norm(·)), so that its input has
  variance Var[φ]. Theory (:mod:`gradprobe.theory.gaussian`) predicts a pair's ratio from what it
  finds between the layers (:mod:`.predict`): for φ(BN(h_i)) r(φ)·B_j/A_i with
  r(φ) = E[φ'(z)²]/Var[φ(z)] (π/(π−1) ≈ 1.467 for ReLU,
  :func:`~gradprobe.theory.gaussian.explosion_rate`), for φ(LN(h_i)) E[φ'²]/E[φ²]·B_j/A_i
  (:func:`~gradprobe.theory.gaussian.predicted_rate`; 1 for ReLU); for a normalization after the
  activation, BN(φ(h_i)) or LN(φ(h_i)), B_j·E[φ'(h)²]/Var[φ(h)] with h ~ N(0, A_i) (both remove φ's
  mean: r(φ)·B_j/A_i for ReLU); without normalization B_j·E[φ'(z)²] for z ~ N(0, Var[h_i]).
  A = fan_in·E[W²] and B = (outputs per input)·E[W²] are a layer's forward and backward gains
  (Var[h] = A·Var[x], Var[∂ℓ/∂x] = B·Var[∂ℓ/∂h]), counted on the (output, kernel tap) pairs inside
  the image for a convolution (zero padding carries nothing: a 3×3 convolution on a 1×1 map has a
  1×1 convolution's gains); B_j/A_i is Paik & Choi's width factor n_out/n_in for He's fan-in
  initialization, and what it becomes for any other (torchvision initializes with fan-out). Values
  are divided by these gain ratios before the fit, so widths may change along a run, and the rate
  is compared with r(φ) itself; where the pairs differ the prediction is their geometric mean.
- **per effective depth**: a residual network's gradient travels along its residual stream, the
  running sum to which each residual branch adds its output. Here the *effective depth* of a point
  is the number of residual branches between it and the output: one unit per addition of a branch
  into the stream, whatever the branch's own depth (a ResNet bottleneck, a transformer's attention
  or MLP sublayer: one each). The rate per effective depth is the growth per branch, toward the
  input, of Var[∂ℓ/∂s] with s the stream just after each addition (read by a hook on the addition's
  autograd node), fitted per chain of additions that follow each other (a stage of a ResNet, whose
  projection shortcut starts a new chain; the whole stack of a transformer). Additions are found in
  the autograd graph: an ``add`` whose two operands come from disjoint, non-empty sets of weight
  layers (or the input data), reached without passing another weight layer. The *residual stream's
  layers* (``stream`` in the table) are the last weight layers of the branches and the projection
  shortcuts. A plain network has no such additions: its effective depth is its depth and its rate
  per effective depth is its rate per layer. No closed form is predicted per branch.

**Repeats.** The weights are the user's network, so they are never re-drawn. Each repeat draws a
fresh random output gradient (default loss), fresh dropout masks and, when ``inputs`` is a callable
or an iterator, fresh inputs; the per-layer numbers are means over repeats, the rates' uncertainty
is the standard error of the per-repeat fits (NaN for one repeat).

**Cost.** One forward and one backward pass per repeat (plus, for convolutions, one weight-gradient
convolution of |input| and |output gradient| for Bjorck's a), and a single walk of the autograd
graph; ``benchmarks/bench_diagnose.py`` reports the ratio to a plain forward–backward pass.

**The model is left as it was**: parameters, buffers (BatchNorm's running statistics and

**The package**, each module read top to bottom: :mod:`.kinds` (what a weight layer, a
normalization and an activation are), :mod:`.inputs` (inputs, outputs, the default loss),
:mod:`.watch` (the hooks of one repeat), :mod:`.graph` (the autograd graph: which layer feeds
which, the residual stream), :mod:`.predict` (the theory's prediction per pair of layers),
:mod:`.summary` (from repeats to the rates), :mod:`.report` (:class:`Diagnosis`: verdict, report,
figure, JSON), :mod:`.cli` (the command line, also ``python -m gradprobe.diagnose``).
"""
from __future__ import annotations

import collections.abc
import contextlib
import math
import sys
import types
import warnings

import torch
from torch import nn

from ..checks import positive_int
from ..measure.hooks import preserved_state
from .cli import main
from .graph import _analyze_graph, _links, _stream
from .inputs import (
    _as_source,
    _call,
    _check_inputs,
    _default_target_loss,
    _draw_inputs,
    _map_tensors,
    _primary,
)
from .report import Diagnosis
from .summary import _repeat_rows, _summarize
from .watch import _feature_variance, _output_channel_dim, _Watch, _watched_layers

__all__ = ["diagnose", "Diagnosis", "main"]


@contextlib.contextmanager
def _left_as_it_was(model: nn.Module, weights: list[torch.Tensor], devices):
    """Buffers and modes (:func:`gradprobe.measure.hooks.preserved_state`), ``requires_grad`` of
    the watched weights, and torch's global random state, restored on exit."""
    flags = [(p, p.requires_grad) for p in weights]
    with preserved_state(model), torch.random.fork_rng(devices=devices):
        try:
            for p in weights:
                p.requires_grad_(True)
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


def diagnose(model: nn.Module, inputs, *, loss=None, targets=None, layers=None, repeats: int = 1,
             generator: torch.Generator | None = None, train: bool = True) -> Diagnosis:
    """Diagnose gradient explosion in ``model`` at its current weights; see the module docstring
    for every number reported and how.

    - ``inputs``: a tensor (one positional argument), a tuple or list (positional arguments), a
      mapping (keyword arguments, e.g. a tokenizer's output), or a callable without arguments or an
      iterator giving one of these afresh for each repeat. Tensors are moved to the device of the
      model's parameters.
    - ``loss``: ``loss(output)``, or ``loss(output, targets)`` when ``targets`` is given, a scalar.
      Default with ``targets``: cross-entropy (integer targets) or mean squared error (float). Default
      without: ℓ = ⟨u, f⟩ with u ~ N(0, 1) drawn for each repeat, f the model's first floating-point
      output (for a tuple, a dict or a Hugging Face ``ModelOutput``: its first such entry, e.g.
      ``logits``); the diagnosis says which in ``loss``.
    - ``layers``: the weight layers to watch (modules or names; default: all).
    - ``repeats``: independent repeats (fresh output gradient, dropout masks, and inputs if
      ``inputs`` draws them); ``generator`` (CPU) drives every draw, default a fresh unseeded one.
    - ``train=True`` (default) measures in training mode, as at the start of training (BatchNorm on
      the batch's statistics, dropout active), with a warning if the model was in eval mode; modes
      are restored afterwards. ``train=False`` measures the model in the modes it is in.

    A weight used several times (weight sharing) has one row: the weight-gradient norm and Bjorck's
    a/b of the total gradient, the variances and GSC averaged over its calls, its place at its first
    call; it is left out of the rate fits. Layers never called are listed in ``unused``, layers whose
    weight is used without calling them (``nn.MultiheadAttention``'s projections) in ``functional``;
    an attention module's ``out_proj`` is measured at the attention module's output, which it is.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    repeats = positive_int("repeats", repeats)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if loss is not None and not callable(loss):
        raise ValueError(f"loss must be a callable loss(output[, targets]) -> scalar, got {type(loss).__name__}")
    if targets is not None and not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}")
    if not isinstance(train, bool):
        raise ValueError(f"train must be True or False, got {train!r}")
    if inputs is None:
        raise ValueError("inputs must be given: a tensor, a tuple, a mapping, or a callable or iterator of these")
    static = isinstance(inputs, (torch.Tensor, collections.abc.Mapping, tuple, list))
    if static:
        _check_inputs(inputs)
    gen = generator if generator is not None else torch.Generator()
    if generator is None:
        gen.seed()
    watched = _watched_layers(model, layers)
    params = list(model.parameters())
    device = params[0].device if params else next(iter(model.buffers()), torch.empty(0)).device
    notes = []
    if train:
        eval_modules = [m for m in model.modules() if not m.training]
        if eval_modules:
            warnings.warn(f"{type(model).__name__} was in eval mode ({len(eval_modules)} of {len(list(model.modules()))}"
                          " modules): diagnosed in training mode (BatchNorm on the batch's statistics, dropout on), as "
                          "at the start of training, which the papers measure; the modes are restored afterwards. "
                          "Pass train=False to diagnose the model as it is.", UserWarning, stacklevel=2)
            notes.append(f"the model was in eval mode ({len(eval_modules)} modules): measured in training mode")
    weights = list({id(l.weight): l.weight for l in watched}.values())
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    per_repeat, stream_repeats, links, loss_text = [], [], None, ""
    with _left_as_it_was(model, weights, cuda), torch.enable_grad():
        if train:
            model.train()
        for r in range(repeats):
            x = _draw_inputs(inputs, r)
            _check_inputs(x)
            x = _map_tensors(x, lambda t: t.to(device))
            x, source = _as_source(x)
            y = targets.to(device) if targets is not None else None
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))   # dropout masks
            for layer in watched:
                layer.reset()
            with _Watch(watched, model) as watch:
                output = _call(model, x)
                f, where = _primary(output)
                if loss is None and f is None:
                    raise ValueError(f"the model's output ({type(output).__name__}) holds no floating-point tensor "
                                     "of more than one element to take a random output gradient of; pass loss=")
                if loss is not None:
                    value = loss(output, y) if y is not None else loss(output)
                    loss_text = f"{getattr(loss, '__name__', type(loss).__name__)}(output{', targets' if y is not None else ''}) (given)"
                elif y is not None:
                    value = _default_target_loss(f, y)
                    loss_text = (f"{'mean squared error' if y.is_floating_point() else 'cross-entropy'} of {where} "
                                 "against targets")
                else:
                    u = torch.randn(f.shape, generator=gen).to(device=f.device, dtype=f.dtype)
                    value = (f * u).sum()
                    loss_text = f"random output gradient: ℓ = ⟨u, {where}⟩, u ~ N(0, 1) drawn for each repeat"
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise ValueError(f"loss must return a scalar tensor, got {type(value).__name__}"
                                     f"{' of shape ' + str(tuple(value.shape)) if isinstance(value, torch.Tensor) else ''}")
                value = value.reshape(())
                if not value.requires_grad:
                    raise ValueError("the loss does not depend on any weight of the model (it needs no gradient)")
                out_grad = {}
                if f is not None and f.requires_grad:
                    f.register_hook(lambda g: out_grad.__setitem__("g", g.detach()))
                # the graph: which layer feeds which, and the residual additions (hooked for their gradient)
                usable = [k for k, l in enumerate(watched) if l.calls == 1 and l.out_node is not None]
                stops = {watched[k].out_node: k for k in usable}
                if source is not None:
                    stops[source] = len(watched)           # the data: a source, like an embedding
                preds, merges = _analyze_graph(stops, [watched[k].in_node for k in usable] + [value.grad_fn])
                if links is None:
                    links = _links(watched, watch.spans, preds, stops, merges)
                sources = {k for k, l in enumerate(watched) if l.kind == "embedding"} | {len(watched)}
                stream = _stream(preds, merges, sources)
                stream_var = [math.nan] * len(stream.nodes)
                for n, node in enumerate(stream.nodes):
                    node.register_hook(lambda grad_in, grad_out, n=n: stream_var.__setitem__(
                        n, _feature_variance(grad_out[0], _output_channel_dim(grad_out[0]))))
                grads = torch.autograd.grad(value, weights, allow_unused=True)
                del preds, merges, stops
            grad_of = {id(w): g for w, g in zip(weights, grads)}
            per_repeat.append(_repeat_rows(watched, grad_of, f, out_grad.get("g"), value, loss is not None))
            stream.nodes = None                     # keep the numbers, not the graph
            stream_repeats.append((stream, [float(v) for v in stream_var]))
    return _summarize(model, watched, per_repeat, links, stream_repeats, loss_text, repeats, train, device, notes)


class _CallableModule(types.ModuleType):
    """``gradprobe.diagnose`` is this module and, called, :func:`diagnose` itself, so both
    ``gradprobe.diagnose(model, x)`` and ``from gradprobe.diagnose import Diagnosis`` work, in any
    order, and ``python -m gradprobe.diagnose`` runs :func:`main`."""

    def __call__(self, *args, **kwargs) -> "Diagnosis":
        return diagnose(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
