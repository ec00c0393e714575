"""Towers: the seed tower's exact architecture, the conv tower, torchvision backbones and pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from siamese.errors import ConfigError
from siamese.spec import InputSpec
from siamese.training.towers import SeedTower, count_parameters, create_tower, load_pretrained


def test_seed_tower_matches_the_seed() -> None:
    tower = SeedTower()
    convs = [m for m in tower.cnn1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 4, (3, 3)), (4, 8, (3, 3)), (8, 8, (3, 3))]
    assert [type(m).__name__ for m in tower.cnn1[:4]] == ["ReflectionPad2d", "Conv2d", "ReLU", "BatchNorm2d"]
    linears = [m for m in tower.fc1 if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(80000, 500), (500, 500), (500, 5)]
    conv_params = (1 * 4 * 9 + 4) + (4 * 8 * 9 + 8) + (8 * 8 * 9 + 8) + 2 * (4 + 8 + 8)
    fc_params = (80000 * 500 + 500) + (500 * 500 + 500) + (500 * 5 + 5)
    assert count_parameters(tower) == conv_params + fc_params == 40_254_465
    assert tower.eval()(torch.zeros(3, 1, 100, 100)).shape == (3, 5)


def test_conv_tower_any_size_and_normalised() -> None:
    tower = create_tower("conv", InputSpec.create(32, 3), {"embedding_dim": 24, "widths": [8, 16]}).eval()
    for size in (32, 57, 100):
        out = tower(torch.randn(2, 3, size, size))
        assert out.shape == (2, 24)
        assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_head_options() -> None:
    tower = create_tower("conv", InputSpec.create(32, 1), {"embedding_dim": 8, "widths": [8], "normalize": False, "batch_norm": True}).eval()
    assert isinstance(tower.head.bn, nn.BatchNorm1d)
    assert not torch.allclose(tower(torch.randn(4, 1, 32, 32)).norm(dim=1), torch.ones(4))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_torchvision_backbones_take_grey_input(name: str) -> None:
    tower = create_tower(name, InputSpec.create(64, 1), {"embedding_dim": 32}).eval()
    assert tower(torch.randn(2, 1, 64, 64)).shape == (2, 32)


def test_pretrained_weights_fit_grey_input(tmp_path: Path) -> None:
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    tower = create_tower("resnet18", InputSpec.create(64, 1))
    missing = load_pretrained(tower, path, "resnet18")
    assert missing == []
    expected = reference.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.equal(tower.backbone.conv1.weight, expected)
    assert torch.equal(tower.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_pretrained_weights_refuse_pickled_code(tmp_path: Path) -> None:
    import pickle

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": Exploit()}))
    tower = create_tower("resnet18", InputSpec.create(64, 1))
    with pytest.raises(ConfigError, match="cannot load weights safely"):
        load_pretrained(tower, path, "resnet18")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ConfigError, match="torchvision backbones only"):
        load_pretrained(create_tower("conv", InputSpec.create(32, 1)), path, "conv")


def test_create_tower_rejects_unknowns() -> None:
    spec = InputSpec.create(32, 1)
    with pytest.raises(ConfigError, match="unknown tower 'vgg'"):
        create_tower("vgg", spec)
    with pytest.raises(ConfigError, match="does not take option"):
        create_tower("seed", spec, {"normalize": True})
    with pytest.raises(ConfigError, match="does not take option"):
        create_tower("resnet18", spec, {"widths": [8]})
    assert create_tower("seed", spec).fc1[0].in_features == 8 * 32 * 32
