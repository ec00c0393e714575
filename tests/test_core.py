"""Root-package helpers: input specs, atomic writes, image folder scanning."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, DataError
from siamese.core.files import atomic_path, sha256_file, write_json_atomic
from siamese.data.image_folder import list_image_paths, scan_image_folder


def test_input_spec_round_trip_and_validation() -> None:
    spec = InputSpec.create(
        (48, 64), 3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize="fit-crop"
    )
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.shape == (3, 48, 64) and spec.mode == "RGB"
    with pytest.raises(ConfigError, match="one value per channel"):
        InputSpec.create(32, 3, mean=(0.5,))
    with pytest.raises(ConfigError, match="channels"):
        InputSpec.create(32, 2)
    with pytest.raises(ConfigError, match="unknown input spec keys"):
        InputSpec.from_dict({**spec.to_dict(), "flip": True})


def test_atomic_write_leaves_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]
    assert len(sha256_file(target)) == 64


def test_scan_labels_nested_and_loose_files(tmp_path: Path) -> None:
    (tmp_path / "bob" / "2019").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for path in (
        tmp_path / "bob" / "a.png",
        tmp_path / "bob" / "2019" / "b.jpg",
        tmp_path / ".hidden" / "c.png",
        tmp_path / "carol.webp",
    ):
        Image.new("L", (8, 8)).save(path)
    (tmp_path / "README.txt").write_text("ignored")
    assert [(i.identity, i.path.name) for i in scan_image_folder(tmp_path)] == [
        ("bob", "b.jpg"),
        ("bob", "a.png"),
    ]
    loose = scan_image_folder(tmp_path, loose_files=True)
    assert ("carol", "carol.webp") in [(i.identity, i.path.name) for i in loose]
    assert [p.name for p in list_image_paths([tmp_path / "bob", tmp_path / "carol.webp"])] == [
        "a.png",
        "b.jpg",
        "carol.webp",
    ]
    with pytest.raises(DataError, match="expected a folder"):
        scan_image_folder(tmp_path / "carol.webp")
