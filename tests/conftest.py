"""Shared fixtures: a tiny generated dataset, an untrained and a briefly trained run, their ONNX
exports and a gallery.

Everything is generated offline and sized so the whole suite runs in minutes on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from siamese.demos.synthetic import SyntheticSpec, generate_identities

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
    """A conv tower trained for two short epochs at 32×32 (fast, not accurate).

    It serves 16 numbers, 8 from its head and 8 components.
    """
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
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained conv tower with fixed, seeded weights, written as a run directory (no training).

    The same tower, input and served size as trained_run (32×32 grey in, 16 numbers out: 8 from the
    head, 8 pooled features through the unfitted projection), written by the run-dir writer the
    trainer uses, so export treats it like any run. Random conv features still tell images apart,
    which is all that engine, index, service and CLI tests ask (an image finds itself first, an
    upload is found again); only tests about what training learns need trained_run.
    """
    from siamese.training import TrainConfig
    from siamese.training.trainer import write_untrained_run

    run_dir = tmp_path_factory.mktemp("runs") / "untrained"
    config = TrainConfig(
        data_dir=str(run_dir), out_dir=str(run_dir), image_size=32, widths=(8, 16), head_dim=8
    )
    return write_untrained_run(config, seed=20240516)


@pytest.fixture(scope="session")
def tiny_model_path(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained tower exported once through siamese.export, the project's model format."""
    from siamese.export import export_onnx

    return export_onnx(tiny_run, tmp_path_factory.mktemp("models") / "tiny.onnx").path


@pytest.fixture(scope="session")
def model_path(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The briefly trained run exported to ONNX (for tests about what training learned)."""
    from siamese.export import export_onnx

    return export_onnx(trained_run, tmp_path_factory.mktemp("models") / "model.onnx").path


@pytest.fixture(scope="session")
def gallery_dir(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A gallery of the unseen identities built with the untrained tiny model (tiny_model_path)."""
    from siamese.engine import Embedder
    from siamese.index import Gallery

    out = tmp_path_factory.mktemp("galleries") / "gallery"
    Gallery.build(unseen_dataset, Embedder(tiny_model_path), out)
    return out


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep optimised-model and TensorRT caches out of the user's home during tests."""
    import os

    os.environ["SIAMESE_CACHE_DIR"] = str(tmp_path_factory.mktemp("siamese-cache"))


# ------------------------------------------------------------------ pseudo-siamese pairs
@pytest.fixture(scope="session")
def pair_dataset(tmp_path_factory: pytest.TempPathFactory):
    """Photos (RGB 32 px), sketches (grey 24 px) and captions of 16 identities, 2 photo-only."""
    from siamese.demos.synthetic import PairSpec, generate_pair_identities

    spec = PairSpec(
        identities=16,
        photos_per_identity=3,
        sketches_per_identity=2,
        captions_per_identity=3,
        photo_size=32,
        sketch_size=24,
        photo_only=2,
    )
    return generate_pair_identities(tmp_path_factory.mktemp("pair-data"), spec, seed=0)


@pytest.fixture(scope="session")
def pair_config():
    """``pair_config(pair_dataset, out_dir, **changes)``: a tiny pair TrainConfig."""
    return _pair_config


def _pair_config(data, out: Path, **changes):
    from siamese.training import TrainConfig

    base = {
        "data_dir": str(data.photos),
        "out_dir": str(out),
        "image_size": 32,
        "channels": 3,
        "widths": (8, 16),
        "head_dim": 8,
        "epochs": 2,
        "steps_per_epoch": 3,
        "identities_per_batch": 6,
        "images_per_identity": 2,
        "val_fraction": 0.3,
        "text_max_length": 16,
        "text_layers": 1,
        "seed": 0,
    }
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="session")
def image_pair_run(pair_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sketch → photo pair (grey 24 px query tower, RGB 32 px gallery tower), two tiny epochs."""
    from siamese.training import train

    run_dir = tmp_path_factory.mktemp("pair-runs") / "sketch"
    train(
        _pair_config(
            pair_dataset,
            run_dir,
            query_data=str(pair_dataset.sketches),
            query_image_size=24,
            query_channels=1,
        )
    )
    return run_dir


@pytest.fixture(scope="session")
def text_pair_run(pair_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text → photo pair (one-block transformer text tower), two tiny epochs."""
    from siamese.training import train

    run_dir = tmp_path_factory.mktemp("pair-runs") / "text"
    train(_pair_config(pair_dataset, run_dir, captions=str(pair_dataset.captions)))
    return run_dir


def _export_pair_run(run_dir: Path, out: Path):
    from siamese.export.pair_export import export_pair

    return export_pair(run_dir, out / "model.onnx", batch_sizes=(1, 5))


@pytest.fixture(scope="session")
def image_pair_export(image_pair_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """The sketch → photo pair exported: model.query.onnx and model.gallery.onnx (report)."""
    return _export_pair_run(image_pair_run, tmp_path_factory.mktemp("pair-models"))


@pytest.fixture(scope="session")
def text_pair_export(text_pair_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """The text → photo pair exported: model.query.onnx (text) and model.gallery.onnx (report)."""
    return _export_pair_run(text_pair_run, tmp_path_factory.mktemp("pair-models"))


@pytest.fixture(scope="session")
def text_pair_gallery(text_pair_export, pair_dataset, tmp_path_factory) -> Path:
    """A gallery of the pair dataset's photos built with the text pair's gallery tower."""
    from siamese.engine import Embedder
    from siamese.index import Gallery

    gallery_dir = tmp_path_factory.mktemp("pair-galleries") / "photos"
    with Embedder(text_pair_export.gallery.path, device="cpu") as embedder:
        Gallery.build(pair_dataset.photos, embedder, gallery_dir)
    return gallery_dir
