"""Training writes a complete, safely loadable run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from siamese.errors import ConfigError, RunError
from siamese.training import TrainConfig, load_run, train


def test_run_directory_contents(trained_run: Path) -> None:
    for name in ("config.json", "tower.safetensors", "last.safetensors", "history.json", "loss.png"):
        assert (trained_run / name).is_file(), name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["tower"]["name"] == "conv" and config["tower"]["embedding_dim"] == 16
    assert config["input_spec"]["height"] == 32 and config["input_spec"]["channels"] == 1
    assert config["loss"] == {"name": "triplet", "margin": 0.2}
    assert set(config["data"]["val_identities"]).isdisjoint(config["data"]["train_identities"])
    assert "torch" in config["versions"]
    history = json.loads((trained_run / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert all(0.0 <= row["val_recall_at_1"] <= 1.0 for row in history["epochs"])
    assert (trained_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_run_rebuilds_the_tower(trained_run: Path) -> None:
    run = load_run(trained_run)
    assert not run.tower.training
    out = run.tower(torch.zeros(2, *run.spec.shape))
    assert out.shape == (2, 16)


def test_training_is_deterministic(tiny_dataset: Path, tmp_path: Path) -> None:
    def once(name: str) -> list[float]:
        config = TrainConfig(
            data_dir=str(tiny_dataset), out_dir=str(tmp_path / name), image_size=24, widths=(4,),
            embedding_dim=8, epochs=1, batch_size=8, samples_per_epoch=16, seed=3, loss="contrastive",
        )
        return [row["loss"] for row in train(config).history]

    assert once("a") == once("b")


def test_seed_tower_trains_with_contrastive(tiny_dataset: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        data_dir=str(tiny_dataset), out_dir=str(tmp_path / "seed"), tower="seed", image_size=32,
        loss="contrastive", epochs=1, batch_size=8, samples_per_epoch=16,
    )
    result = train(config)
    assert json.loads((tmp_path / "seed" / "config.json").read_text())["loss"]["margin"] == 2.0
    assert load_run(result.run_dir).tower.fc1[-1].out_features == 5


def test_refuses_pickled_weights(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / "tower.safetensors").write_bytes(b"\x80\x04\x95" + b"pickle payload")
    with pytest.raises(RunError, match="unreadable weights"):
        load_run(copy)


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(data_dir="d", out_dir="o", epochs=0)
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(data_dir="d", out_dir="o", device="tpu")
    with pytest.raises(RunError, match="not found"):
        load_run("/nonexistent/run")
