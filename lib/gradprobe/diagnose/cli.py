"""``python -m gradprobe.diagnose package.module:factory --input-shape 8,3,224,224``: see :func:`main`."""
from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from ..measure.hooks import preserved_state
from .inputs import _call


class _CommandLineError(Exception):
    pass


def _load_factory(spec: str):
    if ":" not in spec:
        raise _CommandLineError(f"factory must be given as package.module:function, got {spec!r}")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to see, in one line
        raise _CommandLineError(f"cannot import {module_name!r}: {type(err).__name__}: {err}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise _CommandLineError(f"{module_name!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise _CommandLineError(f"{spec} is not callable")
    return target


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise _CommandLineError(f"--input-shape must be positive integers separated by commas, such as 8,3,224,224; "
                                f"got {text!r}")
    return shape


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


DESCRIPTION = ("Diagnose a PyTorch model at initialization: build it by calling FACTORY without arguments, "
               "run it on Gaussian inputs of --input-shape (or token ids below --tokens), print the growth of "
               "the gradient per layer and per residual branch beside theory and the four papers' measures per "
               "weight layer, and write diagnosis-<factory>.png and .json into --out.")


def main(argv=None) -> int:
    """``python -m gradprobe.diagnose package.module:factory --input-shape 8,3,224,224 [--tokens V]
    [--repeats N] [--seed S] [--device D] [--eval] [--out FOLDER]``: build the model by calling the
    factory without arguments, diagnose it on Gaussian inputs of that shape (``--tokens V``: integer
    token ids below V), print the report and write ``diagnosis-<factory>.png`` and ``.json`` into
    ``--out`` (default: the current folder). Exit status 2 with a one-line error for a factory that
    cannot be imported or does not return a ``torch.nn.Module``, a malformed shape, or an input the
    model rejects."""
    parser = argparse.ArgumentParser(prog="python -m gradprobe.diagnose", description=DESCRIPTION)
    parser.add_argument("factory", help="package.module:function returning the torch.nn.Module to diagnose")
    parser.add_argument("--input-shape", required=True, help="shape of the input batch, e.g. 8,3,224,224")
    parser.add_argument("--tokens", type=int, default=None, help="draw integer token ids below this vocabulary size")
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeats with a fresh output gradient (and dropout masks); per-layer numbers are their "
                             "means, rate uncertainties their standard errors (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and of any random draw (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--eval", action="store_true", help="diagnose in the model's own modes (default: training)")
    parser.add_argument("--out", default=".", help="folder for the figure and the JSON file")
    args = parser.parse_args(argv)
    prog = "gradprobe.diagnose"
    try:
        from ..runtime import device as pick_device

        shape = _parse_shape(args.input_shape)
        if args.tokens is not None and args.tokens < 1:
            raise _CommandLineError(f"--tokens must be a positive vocabulary size, got {args.tokens}")
        try:
            dev = pick_device(args.device)
        except ValueError as err:
            raise _CommandLineError(str(err)) from None
        factory = _load_factory(args.factory)
        try:
            model = factory()
        except Exception as err:  # noqa: BLE001
            raise _CommandLineError(f"{args.factory}() raised {_first_line(err)}") from None
        if not isinstance(model, nn.Module):
            raise _CommandLineError(f"{args.factory}() returned a {type(model).__name__}, not a torch.nn.Module")
        model = model.to(dev)
        gen = torch.Generator().manual_seed(args.seed)
        x = (torch.randint(0, args.tokens, shape, generator=gen) if args.tokens is not None
             else torch.randn(shape, generator=gen)).to(dev)
        try:
            with preserved_state(model), torch.no_grad():
                model.train(not args.eval)
                _call(model, x)
        except Exception as err:  # noqa: BLE001
            raise _CommandLineError(f"the model rejected an input of shape {tuple(shape)}: {_first_line(err)}") from None
        # the function, from this package's __init__ (loaded by now; imported here to avoid a cycle)
        from . import diagnose

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = diagnose(model, x, repeats=args.repeats, generator=gen, train=not args.eval)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    except _CommandLineError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(result.report())
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", args.factory.split(":")[-1]) or "model"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = result.plot()
    fig.savefig(out / f"diagnosis-{stem}.png")
    result.save(out / f"diagnosis-{stem}.json")
    print(f"\nwrote {out / f'diagnosis-{stem}.png'} and {out / f'diagnosis-{stem}.json'}")
    return 0
