"""Loading ImageFolders for training: labels, corrupt files skipped, identity-level splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.contracts.spec import InputSpec
from siamese.core.errors import DataError
from siamese.training.data import load_image_folder, split_identities


def test_loads_every_format_with_labels(tmp_path: Path) -> None:
    formats = ["png", "jpeg", "pgm", "bmp", "webp"]
    for identity in ("alice", "bob"):
        (tmp_path / identity).mkdir()
        for fmt in formats:
            Image.new(
                "RGB", (30, 20), (200, 10, 10) if identity == "alice" else (10, 10, 200)
            ).save(tmp_path / identity / f"img.{fmt}")
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, InputSpec.create(16, 1))
    assert data.identities == ["alice", "bob"]
    assert data.pixels.shape == (10, 16, 16, 1) and data.pixels.dtype == np.uint8
    assert list(np.bincount(data.labels)) == [5, 5]
    assert not data.skipped


def test_corrupt_image_is_skipped_and_reported(tiny_dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(tiny_dataset, copy)
    bad = copy / "id_000" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    data = load_image_folder(copy, InputSpec.create(24, 1))
    assert len(data) == 48
    assert [path for path, _ in data.skipped] == [str(bad)]


def test_missing_and_empty_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        load_image_folder(tmp_path / "nope", InputSpec.create(16, 1))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_image_folder(tmp_path / "empty", InputSpec.create(16, 1))


def test_split_is_by_identity_and_reproducible() -> None:
    identities = [f"p{i}" for i in range(20)]
    train, val = split_identities(identities, 0.25, seed=7)
    assert len(val) == 5 and not set(train) & set(val) and sorted(train + val) == sorted(identities)
    assert split_identities(identities, 0.25, seed=7) == (train, val)
    assert split_identities(identities[:3], 0.25, seed=7) == (identities[:3], [])
