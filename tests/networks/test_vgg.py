"""gradprobe.networks.vgg: torchvision's names and shapes, checkpoints, configurations, norms, init."""
import pytest
import torch
from torch import nn

from gradprobe.measure.batchnorm import bn_running_std
from gradprobe.measure.hooks import weight_layers
from gradprobe.networks.vgg import CONFIGS, load_checkpoint, pool_positions, vgg


def torchvision_vgg19_bn_state_dict(num_classes=1000):
    """The names and shapes of torchvision's ``vgg19_bn`` state dict, written out independently of
    gradprobe.vgg (torchvision: features = [conv, bn, relu]* with max-pools, classifier 0/3/6)."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
    state, i, c_in = {}, 0, 3
    for v in cfg:
        if v == "M":
            i += 1
            continue
        state[f"features.{i}.weight"] = torch.randn(v, c_in, 3, 3)
        state[f"features.{i}.bias"] = torch.randn(v)
        state[f"features.{i + 1}.weight"] = torch.rand(v)
        state[f"features.{i + 1}.bias"] = torch.randn(v)
        state[f"features.{i + 1}.running_mean"] = torch.randn(v)
        state[f"features.{i + 1}.running_var"] = torch.rand(v) + 0.5
        state[f"features.{i + 1}.num_batches_tracked"] = torch.tensor(7)
        i, c_in = i + 3, v
    assert i == 53  # torchvision's vgg19_bn: features.0 ... features.52
    for j, (n_in, n_out) in zip((0, 3, 6), ((25088, 4096), (4096, 4096), (4096, num_classes))):
        state[f"classifier.{j}.weight"] = torch.zeros(n_out, n_in)  # 400 MB: zeros are cheap to make
        state[f"classifier.{j}.bias"] = torch.randn(n_out)
    return state


@pytest.fixture(scope="module")
def tv_state():
    return torchvision_vgg19_bn_state_dict()


def test_imagenet_head_names_and_shapes_match_torchvision(tv_state):
    model = vgg("vgg19", norm="batch", head="imagenet", num_classes=1000)
    ours = model.state_dict()
    assert list(ours) == list(tv_state)
    assert all(ours[k].shape == tv_state[k].shape for k in ours)
    model.load_state_dict(tv_state, strict=True)
    assert torch.equal(model.features[0].weight, tv_state["features.0.weight"])


def test_load_checkpoint_roundtrip_and_running_std(tmp_path, tv_state):
    path = tmp_path / "vgg19_bn.pth"
    torch.save(tv_state, path)
    model = load_checkpoint(path)
    assert not model.training
    sigma = bn_running_std(model)
    assert sigma.shape == (16,)
    expected = [tv_state[f"features.{i}.running_var"].mean().sqrt() for i in range(1, 53)
                if f"features.{i}.running_var" in tv_state]
    torch.testing.assert_close(sigma, torch.stack(expected))


def test_load_checkpoint_errors(tmp_path, tv_state):
    with pytest.raises(FileNotFoundError, match="vgg19_bn"):
        load_checkpoint(tmp_path / "absent.pth")
    small = {k: v for k, v in tv_state.items() if not k.startswith("classifier")}  # small files, fast test
    bad = dict(small)
    bad["features.99.weight"] = bad.pop("features.0.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys: features\.0\.weight.*unexpected keys: features\.99\.weight"):
        load_checkpoint(tmp_path / "bad.pth")
    shaped = dict(small)
    shaped["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(shaped, tmp_path / "shaped.pth")
    with pytest.raises(ValueError, match="shape mismatches: features.0.weight"):
        load_checkpoint(tmp_path / "shaped.pth")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_configs_have_the_depth_in_their_name(name):
    # VGG-n has n weight layers: its convolutions and the three Linear layers of torchvision's head
    with torch.device("meta"):                       # structure only: no memory for the 4096-wide head
        model = vgg(name, norm=None, head="imagenet")
    assert len(model.convs()) + 3 == int(name.removeprefix("vgg")) == len(weight_layers(model))
    assert model.norms() == []
    # without norm the layout is torchvision's plain vgg: conv, relu per layer
    assert isinstance(model.features[1], nn.Module) and not isinstance(model.features[1], nn.BatchNorm2d)


@pytest.mark.parametrize("norm,kind,groups", [("batch", nn.BatchNorm2d, None), ("group", nn.GroupNorm, 32),
                                              ("layer", nn.GroupNorm, 1)])
def test_norms(norm, kind, groups):
    model = vgg([64, "M", 48], norm=norm, head="cifar", num_classes=7)
    n1, n2 = model.norms()
    assert isinstance(n1, kind) and isinstance(n2, kind)
    if groups is not None:
        assert n1.num_groups == groups
        assert 48 % n2.num_groups == 0 and n2.num_groups <= 32  # 32 does not divide 48: largest divisor 24
        assert n2.num_groups == (24 if norm == "group" else 1)
    out = model(torch.randn(4, 3, 16, 16))
    assert out.shape == (4, 7)


def test_cifar_head_and_forward_shape():
    model = vgg("vgg11", num_classes=10, head="cifar", generator=torch.Generator().manual_seed(0))
    assert [type(m) for m in model.classifier] == [nn.Linear]
    assert model.classifier[0].in_features == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


def test_he_init_variance_and_generator_reproducible():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = vgg([256, 256], generator=g1), vgg([256, 256], generator=g2)
    torch.testing.assert_close(a.convs()[1].weight, b.convs()[1].weight, rtol=0, atol=0)
    w = a.convs()[1].weight
    assert abs(w.var().item() - 2.0 / (256 * 9)) < 0.05 * 2.0 / (256 * 9)
    assert torch.count_nonzero(a.convs()[1].bias) == 0
    lecun = vgg([256, 256], init="lecun", generator=g1).convs()[1].weight
    assert abs(lecun.var().item() - 1.0 / (256 * 9)) < 0.05 / (256 * 9)


def test_activation_choices_and_weight_layers():
    model = vgg([8, "M", 8], norm="batch", activation="tanh", head="cifar")
    assert "tanh" in repr(model.features[2])
    drop = vgg([8, 8], activation="dropout", dropout=0.2)
    assert isinstance(drop.features[2], nn.Dropout) and drop.features[2].p == 0.2
    assert len(weight_layers(model)) == 3  # two convs and the head


@pytest.mark.parametrize("kwargs,match", [
    (dict(cfg="vgg20"), "unknown cfg"), (dict(cfg=[64, "X"]), "cfg entries"), (dict(cfg=["M"]), "at least one conv"),
    (dict(norm="instance"), "unknown norm"), (dict(activation="swish"), "unknown activation"),
    (dict(head="tiny"), "unknown head"), (dict(init="kaiming"), "unknown init"), (dict(num_classes=0), "num_classes"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vgg(**kwargs)


def test_pool_positions():
    assert pool_positions(vgg("vgg19")) == [2, 4, 8, 12]  # the last pool has no norm after it
    assert pool_positions(vgg([4, "M", 4, 4, "M"])) == [1]


def test_group_size_sets_channels_per_group():
    model = vgg([8, "M", 16], norm="group", group_size=4)
    assert [(n.num_groups, n.num_channels) for n in model.norms()] == [(2, 8), (4, 16)]
    with pytest.raises(ValueError, match="does not divide"):
        vgg([6], norm="group", group_size=4)
    with pytest.raises(ValueError, match="group_size is for norm='group'"):
        vgg([8], norm="batch", group_size=4)


def test_load_checkpoint_accepts_files_without_num_batches_tracked(tmp_path, tv_state):
    """Weights saved by torch before 0.4.1 (older torchvision files) have no BatchNorm counters;
    torch's own strict load accepts them, and so must the loader."""
    old = {k: v for k, v in tv_state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) == len(tv_state) - 16
    with torch.device("meta"):
        reference = vgg("vgg19", norm="batch", head="imagenet", num_classes=1000)
    reference.load_state_dict(old, strict=True, assign=True)      # torch: accepted
    path = tmp_path / "old_vgg19_bn.pth"
    torch.save(old, path)
    model = load_checkpoint(path)
    expected = [tv_state[f"features.{i}.running_var"].mean().sqrt() for i in range(1, 53)
                if f"features.{i}.running_var" in tv_state]
    torch.testing.assert_close(bn_running_std(model), torch.stack(expected))
    assert all(int(m.num_batches_tracked) == 0 for m in model.norms())
    missing = {k: v for k, v in old.items() if k != "features.1.running_var"}  # a real key still counts
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing keys: features\.1\.running_var"):
        load_checkpoint(tmp_path / "missing.pth")


def test_average_pool_layout():
    cfg = [8, "M", 16, "M", 16]
    maxed, averaged = vgg(cfg, generator=torch.Generator().manual_seed(0)), vgg(cfg, pool="avg",
                                                                               generator=torch.Generator().manual_seed(0))
    assert [type(m).__name__ for m in averaged.features if "Pool" in type(m).__name__] == ["AvgPool2d"] * 2
    assert pool_positions(averaged) == pool_positions(maxed) == [1, 2]
    assert list(averaged.state_dict()) == list(maxed.state_dict())  # pools have no parameters
    x = torch.randn(2, 3, 8, 8)
    assert averaged(x).shape == maxed(x).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown pool 'min'"):
        vgg(cfg, pool="min")

