"""The Embedder: model.onnx alone is enough, training and serving preprocess identically.

Bad files are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.core.errors import DeviceUnavailableError, ModelError
from siamese.data.image_folder import scan_image_folder
from siamese.engine import Embedder
from siamese.engine.providers import gpu_present
from siamese.training import load_run
from siamese.training.batches import normalize_batch
from siamese.training.data import load_image_folder


def test_embeds_files_in_order(tiny_model_path: Path, unseen_dataset: Path) -> None:
    paths = [item.path for item in scan_image_folder(unseen_dataset)]
    embedder = Embedder(tiny_model_path, batch_size=5)
    result = embedder.embed_paths(paths)
    assert result.embeddings.shape == (len(paths), 16) and result.embeddings.dtype == np.float32
    assert result.paths == [str(p) for p in paths] and result.failures == []
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    single = embedder.embed_paths(paths[7:8]).embeddings[0]
    np.testing.assert_allclose(single, result.embeddings[7], atol=1e-5)


def test_training_and_engine_preprocessing_agree(
    tiny_model_path: Path, tiny_run: Path, tiny_dataset: Path
) -> None:
    """The same images through the PyTorch tower (training data path) and the engine (ONNX path)."""
    run = load_run(tiny_run)
    data = load_image_folder(tiny_dataset, run.spec)
    pixels = torch.from_numpy(data.pixels).permute(0, 3, 1, 2)  # as training's loader hands them
    with torch.no_grad():
        expected = run.tower(normalize_batch(pixels, run.spec)).numpy()
    actual = Embedder(tiny_model_path).embed_paths(data.paths).embeddings
    assert np.abs(actual - expected).max() < 1e-4
    cosines = np.sum(actual * expected, axis=1) / (
        np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosines.min() > 0.99999


def test_corrupt_file_is_reported_and_batch_goes_on(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    paths = [item.path for item in scan_image_folder(unseen_dataset)][:6]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(paths[0].read_bytes()[:100])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    mixed = paths[:2] + [broken] + paths[2:4] + [text, tmp_path / "gone.png"] + paths[4:]
    result = Embedder(tiny_model_path, batch_size=4).embed_paths(mixed)
    assert result.paths == [str(p) for p in paths]
    assert [p for p, _ in result.failures] == [str(broken), str(text), str(tmp_path / "gone.png")]
    assert "not an image" in result.failures[1][1] and "not found" in result.failures[2][1]
    assert result.embeddings.shape == (6, 16)


def test_embed_images_matches_embed_paths(tiny_model_path: Path, unseen_dataset: Path) -> None:
    paths = [item.path for item in scan_image_folder(unseen_dataset)][:4]
    embedder = Embedder(tiny_model_path)
    images = [Image.open(p) for p in paths]
    np.testing.assert_allclose(
        embedder.embed_images(images), embedder.embed_paths(paths).embeddings, atol=1e-6
    )


def test_auto_device_runs_without_gpu(tiny_model_path: Path) -> None:
    embedder = Embedder(tiny_model_path)
    assert embedder.device in ("cpu", "cuda", "tensorrt")
    if not gpu_present():
        assert embedder.device == "cpu"


@pytest.mark.skipif(gpu_present(), reason="checks the refusal on machines without a GPU")
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_insisting_on_a_missing_gpu_fails_loudly(tiny_model_path: Path, device: str) -> None:
    with pytest.raises(DeviceUnavailableError, match=f"device {device} cannot run here"):
        Embedder(tiny_model_path, device=device)


def test_bad_model_files(tmp_path: Path, tiny_model_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        Embedder(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        Embedder(junk)
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(
        torch.nn.Flatten().eval(),
        (torch.zeros(2, 1, 4, 4),),
        str(plain),
        dynamo=True,
        input_names=["images"],
    )
    with pytest.raises(ModelError, match="not a siamese model"):
        Embedder(plain)
