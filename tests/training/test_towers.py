"""Towers: the seed tower's exact architecture and the conv tower's flexibility."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from siamese.errors import ConfigError
from siamese.spec import InputSpec
from siamese.training.towers import ConvTower, SeedTower, count_parameters, create_tower


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
    tower = ConvTower(in_channels=3, embedding_dim=24, widths=(8, 16)).eval()
    for size in (32, 57, 100):
        out = tower(torch.randn(2, 3, size, size))
        assert out.shape == (2, 24)
        assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_conv_tower_unnormalised() -> None:
    tower = ConvTower(embedding_dim=8, widths=(8,), normalize=False).eval()
    assert not torch.allclose(tower(torch.randn(4, 1, 32, 32)).norm(dim=1), torch.ones(4))


def test_create_tower_rejects_unknowns() -> None:
    spec = InputSpec.create(32, 1)
    with pytest.raises(ConfigError, match="unknown tower 'vgg'"):
        create_tower("vgg", spec)
    with pytest.raises(ConfigError, match="does not take option"):
        create_tower("seed", spec, {"normalize": True})
    assert create_tower("seed", spec).fc1[0].in_features == 8 * 32 * 32
