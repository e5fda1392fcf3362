"""Repeated gradient-norm measurement (ghost 2024, Figure 1 left): a Python loop of small
forward/backward passes vs all repeats batched into large products.

Both ways get the same random draws (fresh weights, inputs and output gradients per repeat) and
must give the same per-layer norms; drawing is timed separately (it is the same for both).
Prints repeats per second for each way, the ratio, and the batched way's achieved GFLOP/s
against this machine's fp32 matrix-product peak, measured in the same run.

    .venv/bin/python benchmarks/bench_repeats.py [--repeats 64] [--loop-repeats 8] [--chunk 32]
"""
import argparse
import os
import time

import torch

from gradprobe.measure import repeats as rp


def best_of(fn, times: int) -> float:
    """The fastest of ``times`` runs of fn(), in seconds (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(n: int = 2048, times: int = 5) -> float:
    """fp32 GFLOP/s of an n×n by n×n product (the best of ``times``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    return 2 * n**3 / best_of(lambda: a @ b, times) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=64, help="repeats for the batched way")
    parser.add_argument("--loop-repeats", type=int, default=8, help="repeats for the loop (slow)")
    parser.add_argument("--chunk", type=int, default=32, help="repeats per batched pass")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    shape = dict(depth=args.depth, width=args.width, batch=args.batch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs visible; "
          f"PlainNet{args.depth} (BN, ReLU), d={args.width}, B={args.batch}; "
          f"{rp.flops_per_repeat(**shape) / 1e9:.3f} GFLOP per repeat")
    gen = torch.Generator().manual_seed(0)

    draw_s = best_of(lambda: rp.draw(args.chunk, generator=gen, **shape), 2)
    print(f"drawing (common to both ways): {args.chunk / draw_s:8.1f} repeats/s")

    draws = rp.draw(args.repeats, generator=gen, **shape)
    chunks = [rp.Draws(draws.weights[:, i:i + args.chunk], draws.x[i:i + args.chunk], draws.grad_output[i:i + args.chunk])
              for i in range(0, args.repeats, args.chunk)]
    loop_draws = chunks[0] if args.loop_repeats >= args.chunk else rp.Draws(
        draws.weights[:, :args.loop_repeats], draws.x[:args.loop_repeats], draws.grad_output[:args.loop_repeats])

    # same numbers both ways (float32 rounding only)
    loop_norms = rp.loop_gradient_norms(loop_draws)
    batched_norms = rp.batched_gradient_norms(loop_draws)
    rel = ((batched_norms - loop_norms).abs() / loop_norms).max().item()
    print(f"max relative difference batched vs loop over {loop_draws.repeats} repeats: {rel:.2e}")

    loop_s = best_of(lambda: rp.loop_gradient_norms(loop_draws), 2)
    batched_s = best_of(lambda: [rp.batched_gradient_norms(c) for c in chunks], 2)
    loop_rate, batched_rate = loop_draws.repeats / loop_s, args.repeats / batched_s
    peak = matmul_peak()
    flops = rp.flops_per_repeat(**shape)
    print(f"loop    : {loop_rate:8.1f} repeats/s  {loop_rate * flops / 1e9:7.1f} GFLOP/s")
    print(f"batched : {batched_rate:8.1f} repeats/s  {batched_rate * flops / 1e9:7.1f} GFLOP/s "
          f"(chunks of {args.chunk})")
    print(f"speed-up batched/loop: {batched_rate / loop_rate:.1f}x (target >= 5x)")
    print(f"fp32 matmul peak (2048^3, same run): {peak:.1f} GFLOP/s; batched reaches "
          f"{100 * batched_rate * flops / 1e9 / peak:.0f}% of it (target >= 40%)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1-minute load average during the run: {load:.1f} (on a shared machine all rates drop)")


if __name__ == "__main__":
    main()
