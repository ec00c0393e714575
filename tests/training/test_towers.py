"""Towers: the seed tower's exact architecture, the conv tower.

Torchvision backbones and pretrained weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError
from siamese.training.towers import (
    FeatureProjection,
    SeedTower,
    count_parameters,
    create_tower,
    load_pretrained,
)


def test_seed_tower_matches_the_seed() -> None:
    tower = SeedTower()
    convs = [m for m in tower.cnn1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 4, (3, 3)),
        (4, 8, (3, 3)),
        (8, 8, (3, 3)),
    ]
    assert [type(m).__name__ for m in tower.cnn1[:4]] == [
        "ReflectionPad2d",
        "Conv2d",
        "ReLU",
        "BatchNorm2d",
    ]
    linears = [m for m in tower.fc1 if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [
        (80000, 500),
        (500, 500),
        (500, 5),
    ]
    conv_params = (1 * 4 * 9 + 4) + (4 * 8 * 9 + 8) + (8 * 8 * 9 + 8) + 2 * (4 + 8 + 8)
    fc_params = (80000 * 500 + 500) + (500 * 500 + 500) + (500 * 5 + 5)
    assert count_parameters(tower) == conv_params + fc_params == 40_254_465
    assert tower.eval()(torch.zeros(3, 1, 100, 100)).shape == (3, 5)


def test_conv_tower_any_size_and_normalised() -> None:
    tower = create_tower(
        "conv", InputSpec.create(32, 3), {"embedding_dim": 24, "widths": [8, 16]}
    ).eval()
    for size in (32, 57, 100):
        out = tower(torch.randn(2, 3, size, size))
        assert out.shape == (2, 24)
        assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_head_options() -> None:
    options = {"embedding_dim": 8, "widths": [8], "normalize": False, "batch_norm": True}
    tower = create_tower("conv", InputSpec.create(32, 1), options).eval()
    assert isinstance(tower.head.bn, nn.BatchNorm1d)
    assert tower.projection is None and not tower.normalized
    assert not torch.allclose(tower(torch.randn(4, 1, 32, 32)).norm(dim=1), torch.ones(4))


def test_grid_pooling_keeps_where_features_are() -> None:
    spec = InputSpec.create(32, 1)
    assert create_tower("conv", spec, {"widths": [8]}).backbone(
        torch.randn(2, 1, 32, 32)
    ).shape == (2, 8)
    assert create_tower("conv", spec, {"widths": [8], "grid": 4}).backbone(
        torch.randn(2, 1, 32, 32)
    ).shape == (2, 8 * 4 * 4)
    with pytest.raises(ConfigError, match="grid must be at least 1"):
        create_tower("conv", spec, {"grid": 0})


def test_feature_projection_is_the_principal_components() -> None:
    projection = FeatureProjection(in_features=5, dim=3)
    generator = torch.Generator().manual_seed(0)
    # Variance 25, 9, 4, 1, 0.01 along five orthonormal directions, shifted by a mean.
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator))
    latent = torch.randn(2000, 5, generator=generator) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.1])
    mean = torch.tensor([1.0, -2.0, 3.0, 0.0, 5.0])
    projection.fit(latent @ rotation.T + mean)
    assert torch.allclose(projection.mean, mean, atol=0.3)
    alignment = (projection.basis.T @ rotation).abs()  # |cos| between fitted and true directions
    assert torch.allclose(alignment[:, :3].diagonal(), torch.ones(3), atol=0.02)
    out = projection(torch.randn(7, 5))
    assert out.shape == (7, 3) and torch.allclose(out.norm(dim=1), torch.ones(7), atol=1e-5)


def test_feature_projection_with_fewer_images_than_dimensions() -> None:
    projection = FeatureProjection(in_features=6, dim=4)
    projection.fit(torch.randn(3, 6))  # rank 2 after centring: the remaining directions stay zero
    assert projection.basis.shape == (6, 4) and torch.count_nonzero(projection.basis[:, 3]) == 0
    out = projection(torch.randn(2, 6))  # unit length from the fitted directions, zeros beyond
    assert torch.all(out[:, 3] == 0) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_served_embedding_from_head_and_features_side_by_side() -> None:
    options = {"embedding_dim": 8, "widths": [8], "normalize": False, "embed_from": "both"}
    tower = create_tower("conv", InputSpec.create(32, 1), options).eval()
    images = torch.randn(4, 1, 32, 32)
    served, features = tower(images), tower.backbone(images)
    assert tower.embedding_dim == 16 and served.shape == (4, 16) and tower.normalized
    assert torch.allclose(served.norm(dim=1), torch.ones(4), atol=1e-6)
    head = torch.nn.functional.normalize(
        tower.head(features), dim=1
    )  # unit length even without --normalize
    assert torch.allclose(
        served * 2**0.5, torch.cat([head, tower.projection(features)], dim=1), atol=1e-6
    )


def test_served_embedding_from_the_features() -> None:
    options = {"embedding_dim": 8, "widths": [8], "normalize": False, "embed_from": "features"}
    tower = create_tower("conv", InputSpec.create(32, 1), options).eval()
    assert (
        isinstance(tower.projection, FeatureProjection)
        and tower.normalized
        and not tower.training_normalized
    )
    images = torch.randn(4, 1, 32, 32)
    assert torch.allclose(tower(images), tower.projection(tower.backbone(images)))
    assert torch.allclose(tower.training_embedding(images), tower.head(tower.backbone(images)))
    with pytest.raises(ConfigError, match="embed_from must be one of"):
        create_tower("conv", InputSpec.create(32, 1), {"embed_from": "pixels"})


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
