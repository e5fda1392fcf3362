"""What one diagnosis costs, in forward–backward passes of the model it diagnoses.

    /work/bin/heavy python benchmarks/bench_diagnose.py [--batch 32] [--size 224] [--runs 2]

Times, on torchvision's ResNet-50 layout (:func:`gradprobe.networks.imagenet_resnet.resnet50`) in
training mode, one plain forward–backward pass (``loss.backward()`` of a random output gradient)
and one :func:`gradprobe.diagnose.diagnose` with one repeat, each ``--runs`` times after a warm-up
pass, alternating, and prints the ratio of the medians: the cost of a diagnosis per repeat in
passes (the issue's budget: about 3). Only ratios measured within one run are reported; nothing is
asserted about wall-clock time.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradprobe.diagnose import diagnose
from gradprobe.measure.hooks import preserved_state
from gradprobe.networks.imagenet_resnet import resnet50


def plain_pass(model, x, u):
    with preserved_state(model):
        model.train()
        model.zero_grad(set_to_none=True)
        (model(x) * u).sum().backward()
        model.zero_grad(set_to_none=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    model = resnet50(generator=gen)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    u = torch.randn(args.batch, 1000, generator=gen)
    plain_pass(model, x, u)                                    # warm-up: allocations, kernels
    plain, diag = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        plain_pass(model, x, u)
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = diagnose(model, x, generator=gen)
        diag.append(time.perf_counter() - t)
    ratio = statistics.median(diag) / statistics.median(plain)
    print(f"ResNet-50 layout, batch {args.batch}, {args.size}², {torch.get_num_threads()} threads, {args.runs} runs")
    print(f"forward-backward pass: median {statistics.median(plain):.2f} s; diagnosis: median {statistics.median(diag):.2f} s")
    print(f"diagnosis / forward-backward = {ratio:.2f} (budget ~3 per repeat)")
    print(result.verdict)


if __name__ == "__main__":
    main()
