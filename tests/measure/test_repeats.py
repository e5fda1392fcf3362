"""gradprobe.measure.repeats: many repeated gradient measurements batched into large products."""
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gradprobe.measure import repeats as rp
from gradprobe.measure.rates import fit_rate
from gradprobe.theory.gaussian import norm_rate


def gen(n=0):
    return torch.Generator().manual_seed(n)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation,norm", [("relu", "batch"), ("selu", "batch"), ("tanh", None)])
def test_batched_equals_loop_in_float64(activation, norm, residual):
    draws = rp.draw(3, depth=6, width=16, batch=12, generator=gen(1))
    draws = rp.Draws(draws.weights.double(), draws.x.double(), draws.grad_output.double())
    batched = rp.batched_gradient_norms(draws, activation, norm, residual)
    torch.set_default_dtype(torch.float64)
    try:
        loop = rp.loop_gradient_norms(draws, activation, norm, residual)
    finally:
        torch.set_default_dtype(torch.float32)
    assert batched.shape == loop.shape == (3, 6)
    torch.testing.assert_close(batched, loop, rtol=1e-10, atol=0)


def test_batched_equals_loop_in_float32_at_paper_shape():
    draws = rp.draw(1, depth=20, width=256, batch=128, generator=gen(2))
    for residual in (False, True):
        batched = rp.batched_gradient_norms(draws, residual=residual)
        loop = rp.loop_gradient_norms(draws, residual=residual)
        torch.testing.assert_close(batched, loop, rtol=2e-3, atol=0)


def test_draws_do_not_depend_on_chunking():
    whole = rp.repeated_gradient_norms(6, depth=4, width=8, batch=8, chunk=6, generator=gen(3), device="cpu")
    parts = rp.repeated_gradient_norms(6, depth=4, width=8, batch=8, chunk=4, generator=gen(3), device="cpu")
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=0)
    assert whole.dtype == torch.float64 and whole.shape == (6, 4)


def test_draw_scales():
    d = rp.draw(64, depth=2, width=64, batch=32, init="lecun", generator=gen(4))
    assert d.weights.shape == (2, 64, 64, 64) and d.x.shape == (64, 32, 64)
    assert d.weights.var().item() == pytest.approx(1 / 64, rel=0.02)
    assert d.x.var().item() == pytest.approx(1.0, rel=0.02)
    assert d.grad_output.var().item() == pytest.approx(1 / 64, rel=0.02)
    assert rp.weight_std("he", 256) == pytest.approx(math.sqrt(2 / 256))


def test_plain_bn_relu_explodes_at_sqrt_pi_over_pi_minus_one():
    # the ghost paper's PlainNet at reduced width: the norm rate per layer is close to √(π/(π−1))
    norms = rp.repeated_gradient_norms(48, depth=12, width=128, batch=128, chunk=16, generator=gen(5), device="cpu")
    fit = fit_rate(norms.mean(0), reverse=True)
    assert fit.rate == pytest.approx(norm_rate("relu"), rel=0.05)
    res = rp.repeated_gradient_norms(16, depth=12, width=128, batch=128, residual=True, chunk=16, generator=gen(5),
                                     device="cpu").mean(0)
    # the ResNet's gradient grows too, but more slowly (the paper's "grow slowly")
    assert fit_rate(res, reverse=True).rate < 1 + (fit.rate - 1) * 0.75


@pytest.mark.parametrize("depth,width,batch", [(20, 16, 8), (3, 8, 5)])
def test_flops_per_repeat_counts_the_products_of_a_repeat(depth, width, batch):
    draws = rp.draw(1, depth=depth, width=width, batch=batch, generator=gen(6))
    with FlopCounterMode(display=False) as counter:
        rp.batched_gradient_norms(draws)
    assert counter.get_total_flops() == rp.flops_per_repeat(depth, width, batch)


@pytest.mark.parametrize("kwargs,match", [
    (dict(activation="dropout"), "unknown activation"), (dict(norm="layer"), "unknown norm"),
    (dict(init="orthogonal"), "unknown init"), (dict(repeats=0), "repeats"), (dict(chunk=-1), "chunk"),
])
def test_errors(kwargs, match):
    args = dict(repeats=2, depth=2, width=4, batch=4, device="cpu")
    with pytest.raises(ValueError, match=match):
        rp.repeated_gradient_norms(**{**args, **kwargs})


def test_residual_needs_even_depth():
    with pytest.raises(ValueError, match="even"):
        rp.batched_gradient_norms(rp.draw(1, depth=3, width=4, batch=4), residual=True)
