"""gradprobe.measure.hooks: which layers are watched, the hook helper, recordings, preserved_state."""
import pytest
import torch
from torch import nn

from gradprobe.measure.hooks import hooks, preserved_state, rate_layers, record, weight_layers
from gradprobe.networks.mlp import mlp


def test_weight_layers_need_one():
    net = mlp(2, 4, out_dim=3)
    assert weight_layers(net) == net.linears() + [net[-1]]
    with pytest.raises(ValueError, match="no Linear or Conv"):
        weight_layers(nn.ReLU())


def test_rate_layers_errors_and_model_hook():
    net = mlp(3, 4, out_dim=2)
    assert rate_layers(net) == net.linears()                 # the classifier is left out
    with pytest.raises(ValueError, match="too few"):
        rate_layers(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)))

    class WithHook(nn.Sequential):
        def rate_layers(self):
            return [self[1]]

    net = WithHook(nn.Linear(3, 3), nn.Linear(3, 2))
    assert rate_layers(net) == [net[1]]


def test_hooks_see_and_replace_outputs_and_are_removed():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    x, seen = torch.randn(4, 3), []
    with hooks([net[0], net[2]], lambda i, inputs, output: seen.append((i, inputs[0].shape, output.shape))):
        net(x)
    assert seen == [(0, (4, 3), (4, 3)), (1, (4, 3), (4, 2))]
    with hooks([net[0]], lambda i, inputs, output: torch.zeros_like(output)):
        assert torch.allclose(net(x), net[2].bias.expand(4, 2))    # layer 0's output replaced by zeros
    assert not net[0]._forward_hooks and not net[2]._forward_hooks
    with pytest.raises(RuntimeError, match="boom"), hooks([net[0]], lambda *a: None):
        raise RuntimeError("boom")
    assert not net[0]._forward_hooks                              # removed on error too


def test_record_captures_outputs_gradients_inputs_and_removes_hooks():
    torch.manual_seed(0)
    net = mlp(3, 8)
    x, g = torch.randn(16, 8), torch.randn(16, 8)
    with record(net, inputs=True) as rec:
        net(x).backward(g)
    assert len(rec.activations) == 3 and all(a.shape == (16, 8) for a in rec.activations)
    assert torch.allclose(rec.gradients[-1], g * (rec.activations[-1] > 0))  # through the last ReLU
    assert torch.equal(rec.inputs[0], x) and torch.equal(rec.inputs[1], torch.relu(rec.activations[0]))
    assert all(not m._forward_hooks for m in rec.modules)
    with pytest.raises(ValueError, match="which must be"):
        rec.variances("weights")


def test_record_without_backward_says_so_and_can_keep_the_graph():
    net = mlp(2, 4)
    with record(net) as rec:
        net(torch.randn(3, 4))
    with pytest.raises(ValueError, match="no gradients recorded"):
        rec.variances("gradients")
    with record(net, gradients=False, detach=False) as rec:
        net(torch.randn(3, 4)).sum().backward()
    assert rec.activations[0].requires_grad and rec.gradients == [None, None]


def test_preserved_state_restores_buffers_and_modes():
    net = mlp(2, 4, norm="batch")
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError), preserved_state(net):
        net.train()
        net(torch.randn(8, 4) * 5 + 3)                   # updates the running statistics
        raise RuntimeError("a failing measurement")
    assert not any(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
