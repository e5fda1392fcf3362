"""Figure 2's discs: pixels per second with shared products (gradprobe.measure.discs.disc_outputs) against
one network per pixel (disc_outputs_naive), for a 50-layer width-100 ReLU MLP on a CIFAR-sized
input (3072 values) and its BatchNorm version (a batch of 8 inputs per pixel). One thread, so that
the numbers do not depend on how busy the other core is."""
import time

import torch

from gradprobe.chapters.philipp2018 import architecture
from gradprobe.measure import discs

torch.set_num_threads(1)


def rate(fn, pixels):
    start = time.perf_counter()
    fn()
    return pixels / (time.perf_counter() - start)


def main():
    coefficients, _ = discs.sphere_grid(96)
    for name, batch, naive_pixels in (("ReLU", 1, 100), ("batch-ReLU", 8, 50)):
        build = lambda g: architecture(name, 50, 100, in_dim=3072, out_dim=3, generator=g)
        weights = discs.layer_weight_samples(build, 0, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
        net = build(torch.Generator().manual_seed(1))
        x = torch.randn(batch, 3072, generator=torch.Generator().manual_seed(0))
        discs.disc_outputs(net, x, 0, weights, coefficients[:64])          # warm-up
        shared = rate(lambda: discs.disc_outputs(net, x, 0, weights, coefficients), len(coefficients))
        naive = rate(lambda: discs.disc_outputs_naive(net, x, 0, weights, coefficients[:naive_pixels]), naive_pixels)
        print(f"{name:10s} batch {batch}: shared products {shared:9.0f} pixels/s ({len(coefficients)} pixels), "
              f"one network per pixel {naive:7.0f} pixels/s ({naive_pixels} pixels): {shared / naive:6.1f}x")


if __name__ == "__main__":
    main()
