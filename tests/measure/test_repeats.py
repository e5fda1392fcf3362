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


@pytest.mark.parametrize("activation,norm", [("relu", "batch"), ("silu", "layer"), ("tanh", None)])
def test_batched_variances_equal_the_module_networks_in_float64(activation, norm):
    from gradprobe.measure.hooks import record
    from gradprobe.networks.mlp import mlp

    draws = rp.draw(3, depth=5, width=12, batch=10, generator=gen(7))
    draws = rp.Draws(draws.weights.double(), draws.x.double(), draws.grad_output.double())
    forward, backward = rp.batched_variances(draws, activation, norm)
    assert forward.shape == backward.shape == (3, 5)
    torch.set_default_dtype(torch.float64)
    try:
        net = mlp(5, 12, activation, norm=norm)
        for r in range(3):
            with torch.no_grad():
                for k, linear in enumerate(net.linears()):
                    linear.weight.copy_(draws.weights[k, r])
            with record(net, net.linears()) as rec:
                net(draws.x[r]).backward(draws.grad_output[r])
            torch.testing.assert_close(backward[r], rec.variances("gradients"), rtol=1e-10, atol=0)
            torch.testing.assert_close(forward[r], rec.variances("activations"), rtol=1e-10, atol=0)
    finally:
        torch.set_default_dtype(torch.float32)


def test_batched_variances_dropout_does_not_explode_and_relu_does():
    draws = rp.draw(8, depth=10, width=64, batch=128, generator=gen(8))
    _, relu = rp.batched_variances(draws, "relu", "batch")
    _, drop = rp.batched_variances(draws, "dropout", "batch", generator=gen(9))
    relu_rate = fit_rate(relu.mean(0)[1:], reverse=True).rate
    drop_rate = fit_rate(drop.mean(0)[1:], reverse=True).rate
    assert relu_rate == pytest.approx(math.pi / (math.pi - 1), rel=0.05)
    assert drop_rate == pytest.approx(1.0, abs=0.03)
    again = rp.batched_variances(draws, "dropout", "batch", generator=gen(9))[1]
    torch.testing.assert_close(drop, again, rtol=0, atol=0)    # masks come from the generator
    with pytest.raises(ValueError, match="unknown norm .group."):
        rp.batched_variances(draws, "relu", "group")


# ---------------------------------------------------------------- batched_signals: every signal of one pass
def _loop_signals(draws, residual=False, branch_scale=1.0):
    """The reference for batched_signals: each repeat through networks.mlp (He's blocks; the branch's
    last BatchNorm given γ = branch_scale) with the drawn weights, recorded with measure.hooks.record."""
    from gradprobe.measure.hooks import record
    from gradprobe.networks.mlp import mlp

    depth, repeats, width, _ = draws.weights.shape
    net = mlp(depth, width, "relu", norm="batch", residual=residual)
    if residual:
        for block in net:
            torch.nn.init.constant_(block.layer2.norm.weight, branch_scale)
    norms, backward = [], []
    for r in range(repeats):
        with torch.no_grad():
            for k, linear in enumerate(net.linears()):
                linear.weight.copy_(draws.weights[k, r])
        x = draws.x[r].clone().requires_grad_(True)
        with record(net, net.linears()) as rec:
            out = net(x)
            out.backward(draws.grad_output[r])
        norms.append(torch.stack([lin.weight.grad.norm() for lin in net.linears()]))
        backward.append(rec.variances("gradients"))
        net.zero_grad()
    return torch.stack(norms).double(), torch.stack(backward).double()


@pytest.mark.parametrize("residual, scale", [(False, 1.0), (True, 1.0), (True, 0.3)])
def test_batched_signals_equal_a_loop_over_networks(residual, scale):
    d = rp.draw(3, depth=6, width=16, batch=12, generator=torch.Generator().manual_seed(7))
    sig = rp.batched_signals(d, residual=residual, branch_scale=scale)
    norms, backward = _loop_signals(d, residual, scale)
    torch.testing.assert_close(sig.weight_norms, norms, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(sig.backward, backward, rtol=1e-4, atol=1e-9)
    if not residual:
        torch.testing.assert_close(sig.weight_norms, rp.batched_gradient_norms(d).double(), rtol=1e-5, atol=1e-7)
    # the top of the backward signal is the output gradient itself (ℓ = ⟨x^(L), grad_output⟩)
    torch.testing.assert_close(sig.stream[:, -1], d.grad_output.flatten(1).double().norm(dim=1), rtol=1e-6, atol=0)
    assert sig.stream.shape == (3, 7) and sig.independence.shape == (3, 6)


def test_batched_signals_zero_gamma_blocks_every_branch():
    d = rp.draw(2, depth=8, width=16, batch=12, generator=torch.Generator().manual_seed(8))
    sig = rp.batched_signals(d, residual=True, branch_scale=0.0)
    assert torch.equal(sig.weight_norms, torch.zeros(2, 8, dtype=torch.float64))
    # inside the branches (odd layers) no gradient; on the stream, every block after the first is the
    # identity on x ≥ 0, so the signal is the output gradient masked by the first block's ReLU
    assert torch.equal(sig.stream[:, 1::2], torch.zeros(2, 4, dtype=torch.float64))
    for k in (4, 6):
        torch.testing.assert_close(sig.stream[:, k], sig.stream[:, 2], rtol=1e-6, atol=0)
    assert (sig.stream[:, 2] < sig.stream[:, -1]).all() and (sig.stream[:, 0] <= sig.stream[:, 2] + 1e-6).all()


def test_batched_signals_statistics_of_independence_and_correlated_targets():
    d = rp.draw(4, depth=8, width=64, batch=128, generator=torch.Generator().manual_seed(9))
    lin = rp.batched_signals(d)
    assert lin.independence.mean().item() == pytest.approx(1.0, abs=0.02)   # output gradient independent
    assert lin.correlation.abs().max().item() < 0.05
    sq = rp.batched_signals(d, loss="square")                                   # ℓ = ½‖x‖²: ∂ℓ/∂x = x
    assert (sq.correlation[:, -1] > 0.5).all() and (sq.mean_square[:, -1] > 0.1).all()
    assert (sq.correlation[:, :-1].abs() < 0.05).all()                       # BatchNorm's backward decorrelates
    assert (sq.mean_square[:, :-1] < 2 / 128).all()                          # Cor. B.7: zero mean below the last BN


def test_repeated_signals_do_not_depend_on_chunks_and_errors():
    a = rp.repeated_signals(4, 4, 8, 6, chunk=1, generator=torch.Generator().manual_seed(3), device="cpu")
    b = rp.repeated_signals(4, 4, 8, 6, chunk=4, generator=torch.Generator().manual_seed(3), device="cpu")
    torch.testing.assert_close(a.weight_norms, b.weight_norms, rtol=1e-5, atol=1e-7)
    d = rp.draw(1, depth=4, width=8, batch=6)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        rp.batched_signals(d, loss="hinge")
    with pytest.raises(ValueError, match="needs residual=True"):
        rp.batched_signals(d, branch_scale=0.5)
    with pytest.raises(ValueError, match="branch_scale must be a finite number >= 0"):
        rp.batched_signals(d, residual=True, branch_scale=-1.0)

