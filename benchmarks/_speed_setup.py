"""Inputs of the speed suite, generated once into the work dir and reused while the settings match.

- photos/: 640×480 photo-like RGB JPEGs (decode cost of real pictures); native/: the same at the
  tower's input size.
- identities/: synthetic identities (siamese.demos.synthetic): train/ to train the default tower
briefly,
  gallery/ and queries/ of unseen identities for the fp32-vs-int8 identification comparison
  (int8 is calibrated on gallery/).
- run/ and model-{fp32,fp16,int8}.onnx: the trained default conv tower and its exports.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _photos import generate_photos, resized_copies

from siamese.data.image_folder import scan_image_folder
from siamese.demos.synthetic import SyntheticSpec, generate_identities


@dataclass(frozen=True)
class SpeedConfig:
    """Sizes of one speed run (``-O key=value`` overrides each field)."""

    images: int = 1000
    batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64, 128)
    rounds: int = 3
    pipeline_batch: int = 32
    gallery: int = 100_000
    queries: int = 200
    epochs: int = 5
    steps_per_epoch: int = 16  # of 64 images
    train_identities: int = 200
    unseen_identities: int = 40
    size: int | None = None
    photo_width: int = 640
    photo_height: int = 480
    run: str | None = None
    peer_workers: int | None = None

    @classmethod
    def quick(cls) -> SpeedConfig:
        """Seconds, not minutes: for tests and a first look (figures are not meaningful)."""
        return cls(
            images=24,
            batch_sizes=(1, 8),
            rounds=1,
            pipeline_batch=8,
            gallery=600,
            queries=8,
            epochs=2,
            steps_per_epoch=8,  # enough that the int8 variant passes its own check
            train_identities=6,
            unseen_identities=4,
            size=32,
            photo_width=160,
            photo_height=120,
        )


@dataclass
class Workspace:
    """Paths of the generated inputs and models."""

    root: Path
    photos_dir: Path
    photos: list[Path]
    native_dir: Path
    native: list[Path]
    gallery_dir: Path
    queries: list[tuple[str, str]]
    run_dir: Path
    models: dict[str, Path] = field(default_factory=dict)
    exports: dict[str, Any] = field(default_factory=dict)


def _fresh(folder: Path, stamp: dict[str, Any]) -> bool:
    """True when ``folder`` was built with exactly ``stamp``; otherwise empty it for a rebuild."""
    marker = folder / ".stamp.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return False


def _mark(folder: Path, stamp: dict[str, Any]) -> None:
    (folder / ".stamp.json").write_text(json.dumps(stamp, sort_keys=True))


def _photos(root: Path, config: SpeedConfig, native_size: int) -> tuple[list[Path], list[Path]]:
    stamp = {
        "images": config.images,
        "w": config.photo_width,
        "h": config.photo_height,
        "native": native_size,
    }
    photos_dir, native_dir = root / "photos", root / "native"
    if not (_fresh(photos_dir, stamp) and native_dir.is_dir()):
        shutil.rmtree(native_dir, ignore_errors=True)
        photos = generate_photos(
            photos_dir, config.images, width=config.photo_width, height=config.photo_height
        )
        resized_copies(photos, photos_dir, native_dir, (native_size, native_size))
        _mark(photos_dir, stamp)
    photos = [item.path for item in scan_image_folder(photos_dir)]
    return photos, [native_dir / p.relative_to(photos_dir) for p in photos]


def _identities(
    root: Path, config: SpeedConfig, size: int
) -> tuple[Path, Path, list[tuple[str, str]]]:
    folder = root / "identities"
    stamp = {"train": config.train_identities, "unseen": config.unseen_identities, "size": size}
    if not _fresh(folder, stamp):
        generate_identities(
            folder / "train",
            SyntheticSpec(identities=config.train_identities, images_per_identity=8, size=size + 8),
            seed=0,
        )
        unseen = generate_identities(
            folder / "unseen",
            SyntheticSpec(
                identities=config.unseen_identities, images_per_identity=6, size=size + 8
            ),
            seed=10_000,
        )
        for identity in sorted(p for p in unseen.iterdir() if p.is_dir()):
            images = sorted(identity.iterdir())
            for target, chosen in (("gallery", images[:3]), ("queries", images[3:])):
                (folder / target / identity.name).mkdir(parents=True)
                for image in chosen:
                    shutil.copy2(image, folder / target / identity.name / image.name)
        _mark(folder, stamp)
    queries = [(str(item.path), item.identity) for item in scan_image_folder(folder / "queries")]
    return folder / "train", folder / "gallery", queries


def _train(root: Path, config: SpeedConfig, train_dir: Path, size: int) -> Path:
    from siamese.training import TrainConfig, train

    run_dir = root / "run"
    recipe = TrainConfig(
        data_dir=str(train_dir),
        out_dir=str(run_dir),
        tower="conv",
        image_size=size,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        seed=0,
    )
    stamp = {
        "recipe": recipe.to_dict(),
        "train": config.train_identities,
    }  # a changed default recipe retrains
    if not (_fresh(run_dir, stamp) and (run_dir / "tower.safetensors").is_file()):
        train(recipe, progress=False)
        _mark(run_dir, stamp)
    return run_dir


def prepare(work_dir: Path, config: SpeedConfig) -> Workspace:
    """Generate (or reuse) every input and model the suite measures."""
    from siamese.export import export_onnx
    from siamese.training.towers import tower_entry

    root = work_dir / "speed"
    root.mkdir(parents=True, exist_ok=True)
    size = config.size or tower_entry("conv").default_input()["size"]
    if config.run:  # a given run fixes the tower and its input size
        from siamese.training import load_run

        size = load_run(config.run).spec.height
    photos, native = _photos(root, config, size)
    train_dir, gallery_dir, queries = _identities(root, config, size)
    run_dir = Path(config.run) if config.run else _train(root, config, train_dir, size)
    space = Workspace(
        root, root / "photos", photos, root / "native", native, gallery_dir, queries, run_dir
    )
    for precision in ("fp32", "int8", "fp16"):
        target = root / f"model-{precision}.onnx"
        report = export_onnx(
            run_dir,
            target,
            precision=precision,
            calibration=gallery_dir if precision != "fp32" else None,
        )
        space.models[precision] = target
        space.exports[precision] = {
            "bytes": report.size_bytes,
            "parity": report.parity.to_dict(),
            "variant_check": report.variant.to_dict() if report.variant else None,
        }
    space.exports["config"] = asdict(config)
    return space
