"""gradprobe.train.optim: layer-wise optimizers against updates known in closed form."""
import math

import pytest
import torch
from torch import nn

from gradprobe.train import optim


def one_layer(values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def linear_loss_step(opt, w, c, steps=1):
    """Minimize ⟨c, w⟩ (gradient c everywhere) for ``steps`` steps."""
    for _ in range(steps):
        opt.zero_grad()
        (w * c).sum().backward()
        opt.step()


W0 = [[3.0, 0.0], [0.0, 4.0]]                 # ‖w‖ = 5
C = torch.tensor([[0.3, 0.0], [0.4, 0.0]], dtype=torch.float64)  # ‖c‖ = 0.5


def test_lars_step_is_trust_ratio_times_lr():
    w = one_layer(W0)
    linear_loss_step(optim.LARS([w], lr=2.0, momentum=0.0, trust_coefficient=0.01), w, C)
    expected = torch.tensor(W0, dtype=torch.float64) - 2.0 * 0.01 * 5 / 0.5 * C
    torch.testing.assert_close(w.detach(), expected)


def test_lars_with_momentum_two_steps():
    w = one_layer(W0)
    opt = optim.LARS([w], lr=1.0, momentum=0.5, trust_coefficient=0.1)
    linear_loss_step(opt, w, C, steps=2)
    w0 = torch.tensor(W0, dtype=torch.float64)
    v1 = 0.1 * w0.norm() / C.norm() * C
    w1 = w0 - v1
    v2 = 0.5 * v1 + 0.1 * w1.norm() / C.norm() * C
    torch.testing.assert_close(w.detach(), w1 - v2)


def test_lars_geometric_decay_on_quadratic():
    # L = ½‖w‖², g = w: LARS's local lr is γη, so w_k = (1 − γη)^k w_0
    w = one_layer(W0)
    opt = optim.LARS([w], lr=0.5, momentum=0.0, trust_coefficient=0.2)
    for _ in range(5):
        opt.zero_grad()
        (0.5 * (w ** 2).sum()).backward()
        opt.step()
    torch.testing.assert_close(w.detach(), (1 - 0.1) ** 5 * torch.tensor(W0, dtype=torch.float64))


@pytest.mark.parametrize("lr, expected_lr", [(0.05, 0.05), (10.0, 0.02 * 5 / 0.5)])
def test_lalc_clips_down_never_up(lr, expected_lr):
    # γ_l = min(γ, η‖w‖/‖g‖) = min(γ, 0.2): a small γ is kept (LARS would raise it), a large one clipped
    w = one_layer(W0)
    linear_loss_step(optim.LALC([w], lr=lr, momentum=0.0, trust_coefficient=0.02), w, C)
    torch.testing.assert_close(w.detach(), torch.tensor(W0, dtype=torch.float64) - expected_lr * C)


def test_lalc_step_never_exceeds_eta_times_weight_norm():
    w = one_layer(W0)
    before = w.detach().clone()
    linear_loss_step(optim.LALC([w], lr=1e6, momentum=0.0, trust_coefficient=0.03), w, 1e6 * C)
    assert math.isclose(float((w.detach() - before).norm()), 0.03 * float(before.norm()), rel_tol=1e-12)


def test_lalc_geometric_decay_on_quadratic():
    # g = w, the cap η‖w‖/‖w‖ = η binds for γ > η: w_k = (1 − η)^k w_0
    w = one_layer(W0)
    opt = optim.LALC([w], lr=3.0, momentum=0.0, trust_coefficient=0.1)
    for _ in range(4):
        opt.zero_grad()
        (0.5 * (w ** 2).sum()).backward()
        opt.step()
    torch.testing.assert_close(w.detach(), 0.9 ** 4 * torch.tensor(W0, dtype=torch.float64))


def test_lalc_weight_decay_enters_gradient_and_cap():
    w = one_layer(W0)
    linear_loss_step(optim.LALC([w], lr=10.0, momentum=0.0, weight_decay=0.1, trust_coefficient=0.02), w, C)
    w0 = torch.tensor(W0, dtype=torch.float64)
    d = C + 0.1 * w0
    torch.testing.assert_close(w.detach(), w0 - 0.02 * w0.norm() / d.norm() * d)


def test_larc_clip_and_scale_modes():
    for clip, lr, expected_lr in [(True, 10.0, 0.02 * 5 / 0.5), (True, 0.1, 0.1), (False, 0.1, 0.1 * 0.02 * 5 / 0.5)]:
        w = one_layer(W0)
        linear_loss_step(optim.LARC([w], lr=lr, momentum=0.0, clip=clip, eps=0.0), w, C)
        torch.testing.assert_close(w.detach(), torch.tensor(W0, dtype=torch.float64) - expected_lr * C)


def test_lalc_equals_larc_clip_on_a_network():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [optim.LALC(nets[0].parameters(), lr=0.7, momentum=0.9, trust_coefficient=0.05),
            optim.LARC(nets[1].parameters(), lr=0.7, momentum=0.9, trust_coefficient=0.05, clip=True, eps=0.0)]
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(5):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b)


def test_one_dimensional_parameters_take_plain_sgd():
    b = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    g = torch.tensor([0.5, 0.5], dtype=torch.float64)
    for cls in (optim.LARS, optim.LALC, optim.LARC):
        p = nn.Parameter(b.detach().clone())
        linear_loss_step(cls([p], lr=0.3, momentum=0.0, weight_decay=0.1), p, g)
        torch.testing.assert_close(p.detach(), b.detach() - 0.3 * g)


def test_zero_weights_keep_global_lr():
    w = nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    linear_loss_step(optim.LALC([w], lr=0.3, momentum=0.0), w, C)
    torch.testing.assert_close(w.detach(), -0.3 * C)


def test_lamb_first_and_second_step():
    # constant gradient: m̂ = c and v̂ = c² at every step, so u = c/(|c| + ε)
    w = one_layer(W0)
    opt = optim.LAMB([w], lr=0.01, eps=1e-6)
    w0 = torch.tensor(W0, dtype=torch.float64)
    u = C / (C.abs() + 1e-6)
    linear_loss_step(opt, w, C)
    w1 = w0 - 0.01 * w0.norm() / u.norm() * u
    torch.testing.assert_close(w.detach(), w1)
    linear_loss_step(opt, w, C)
    torch.testing.assert_close(w.detach(), w1 - 0.01 * w1.norm() / u.norm() * u)


def test_lamb_weight_decay_and_1d_parameters():
    w = one_layer(W0)
    linear_loss_step(optim.LAMB([w], lr=0.01, eps=1e-6, weight_decay=0.1), w, C)
    w0 = torch.tensor(W0, dtype=torch.float64)
    u = C / (C.abs() + 1e-6) + 0.1 * w0
    torch.testing.assert_close(w.detach(), w0 - 0.01 * w0.norm() / u.norm() * u)
    b = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    linear_loss_step(optim.LAMB([b], lr=0.01, eps=1e-6), b, torch.tensor([1.0, -3.0], dtype=torch.float64))
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.01, 2.0 + 0.01], dtype=torch.float64), atol=1e-7, rtol=0)


def test_errors_name_the_bad_value():
    w = [nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optim.make_optimizer("adamw", w, 0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        optim.LALC(w, lr=0.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        optim.LARS(w, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="trust_coefficient"):
        optim.LARC(w, lr=0.1, trust_coefficient=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.LAMB(w, betas=(0.9, 1.5))


def test_make_optimizer_builds_each_rule():
    for name in optim.OPTIMIZERS:
        opt = optim.make_optimizer(name, [nn.Parameter(torch.ones(2, 2))], 0.01)
        assert isinstance(opt, torch.optim.Optimizer)
    assert optim.make_optimizer("sgd", [nn.Parameter(torch.ones(1))], 0.1).param_groups[0]["momentum"] == 0.9
