"""ONNX export: signature, dynamic batch, metadata, parity, and refusal to publish a bad model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from siamese.core.errors import ParityError, RunError
from siamese.export import check_parity, export_onnx
from siamese.export.parity import ParityReport
from siamese.training import load_run
from siamese.training.batches import normalize_batch


def test_signature_and_dynamic_batch(model_path: Path) -> None:
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model)
    (inp,), (outp,) = model.graph.input, model.graph.output
    assert (inp.name, outp.name) == ("images", "embeddings")
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [1, 32, 32]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8  # bytes in, normalised inside
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 5, 64):
        pixels = rng.integers(0, 256, (batch, 1, 32, 32), dtype=np.uint8)
        out = session.run(None, {"images": pixels})[0]
        assert out.shape == (batch, 16) and out.dtype == np.float32


def test_metadata_carries_preprocessing(model_path: Path, trained_run: Path) -> None:
    props = {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}
    config = json.loads((trained_run / "config.json").read_text())
    assert json.loads(props["siamese.input_spec"]) == config["input_spec"]
    assert props["siamese.embedding_dim"] == "16"
    assert props["siamese.normalized"] == "true"
    assert json.loads(props["siamese.tower"])["name"] == "conv"
    assert len(props["siamese.run_fingerprint"]) == 64


def test_parity_within_tolerance(model_path: Path, trained_run: Path) -> None:
    run = load_run(trained_run)
    report = check_parity(run.tower, model_path, run.spec, batch_sizes=(1, 3, 17))
    assert report.passed
    assert report.max_abs_diff < 1e-4 and report.min_cosine > 0.9999
    assert "parity ok" in report.summary()


def test_feature_projection_exports_with_parity(tiny_dataset: Path, tmp_path: Path) -> None:
    from siamese.training import TrainConfig, train

    config = TrainConfig(
        data_dir=str(tiny_dataset),
        out_dir=str(tmp_path / "run"),
        image_size=32,
        widths=(8, 16),
        head_dim=16,
        epochs=1,
        steps_per_epoch=2,
        identities_per_batch=4,
        images_per_identity=3,
        embed_from="features",
        grid=2,
    )
    train(config)
    report = export_onnx(tmp_path / "run", tmp_path / "model.onnx")
    assert report.parity.passed and report.info.normalized
    run = load_run(tmp_path / "run")
    pixels = np.random.default_rng(0).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    served = session.run(None, {"images": pixels})[0]
    with torch.no_grad():
        images = normalize_batch(torch.from_numpy(pixels), run.spec)
        expected = run.tower.projection(run.tower.backbone(images)).numpy()
    assert np.allclose(served, expected, atol=1e-4) and np.allclose(
        np.linalg.norm(served, axis=1), 1.0, atol=1e-5
    )


def test_parity_detects_a_different_tower(model_path: Path, trained_run: Path) -> None:
    run = load_run(trained_run)
    with torch.no_grad():
        next(run.tower.backbone.parameters()).mul_(-1.0)  # the first convolution
    assert not check_parity(run.tower, model_path, run.spec).passed


def test_failed_parity_writes_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = ParityReport((1,), 0.5, 0.2, 1.0, False)
    monkeypatch.setattr("siamese.export.onnx_export.check_parity", lambda *args, **kwargs: bad)
    target = tmp_path / "model.onnx"
    with pytest.raises(ParityError, match="not written"):
        export_onnx(trained_run, target)
    assert list(tmp_path.iterdir()) == []


def test_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="run directory not found"):
        export_onnx(tmp_path / "missing", tmp_path / "m.onnx")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(RunError, match="tower.safetensors: missing"):
        export_onnx(tmp_path / "half", tmp_path / "m.onnx")
