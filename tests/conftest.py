"""Shared fixtures: a tiny generated dataset, a briefly trained run, its ONNX export and a gallery.

Everything is generated offline and sized so the whole suite runs in minutes on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from siamese.synthetic import SyntheticSpec, generate_identities

TINY = SyntheticSpec(identities=8, images_per_identity=6, size=40)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 identities × 6 images (PNG and JPEG), 40×40 grey."""
    return generate_identities(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=123)


@pytest.fixture(scope="session")
def unseen_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 other identities × 6 images, used as a gallery the tower never saw."""
    spec = SyntheticSpec(identities=4, images_per_identity=6, size=40)
    return generate_identities(tmp_path_factory.mktemp("data") / "unseen", spec, seed=456)


@pytest.fixture(scope="session")
def trained_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conv tower trained for two short epochs at 32×32 (fast, not accurate); it serves 16 numbers, 8 from its head and 8 components."""
    from siamese.training import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(
        data_dir=str(tiny_dataset),
        out_dir=str(run_dir),
        image_size=32,
        widths=(8, 16),
        head_dim=8,
        epochs=2,
        steps_per_epoch=4,
        identities_per_batch=4,
        images_per_identity=3,
        val_fraction=0.25,
        seed=0,
    )
    train(config)
    return run_dir


@pytest.fixture(scope="session")
def model_path(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported to ONNX."""
    from siamese.export import export_onnx

    return export_onnx(trained_run, tmp_path_factory.mktemp("models") / "model.onnx").path


@pytest.fixture(scope="session")
def gallery_dir(
    model_path: Path, unseen_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A gallery of the unseen identities built with the tiny model."""
    from siamese.engine import Embedder
    from siamese.index import Gallery

    out = tmp_path_factory.mktemp("galleries") / "gallery"
    Gallery.build(unseen_dataset, Embedder(model_path), out)
    return out


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep optimised-model and TensorRT caches out of the user's home during tests."""
    import os

    os.environ["SIAMESE_CACHE_DIR"] = str(tmp_path_factory.mktemp("siamese-cache"))
