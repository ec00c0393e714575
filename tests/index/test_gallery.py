"""Galleries: build, search, persistence, k beyond the gallery, model mismatch, damaged files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from siamese.core.errors import DataError, GalleryError, ModelMismatchError
from siamese.data.image_folder import scan_image_folder
from siamese.engine import Embedder
from siamese.index import Gallery


def test_gallery_files_and_manifest(gallery_dir: Path, tiny_model_path: Path) -> None:
    manifest = json.loads((gallery_dir / "manifest.json").read_text())
    assert manifest["count"] == 24 and manifest["identities"] == 4
    assert manifest["dimension"] == 16 and manifest["metric"] == "l2"
    assert manifest["model_fingerprint"] == Embedder(tiny_model_path).fingerprint
    assert manifest["index_type"] == "Flat" and manifest["faiss_factory"] == "IDMap2,Flat"
    assert (gallery_dir / manifest["index_file"]).is_file() and (
        gallery_dir / manifest["items_file"]
    ).is_file()
    assert manifest["recall"]["exact"] and manifest["recall"]["at10"] == 1.0
    assert not list(gallery_dir.glob("*.tmp"))


def test_each_image_finds_itself_first(
    gallery_dir: Path, tiny_model_path: Path, unseen_dataset: Path
) -> None:
    items = scan_image_folder(unseen_dataset)
    embedder = Embedder(tiny_model_path)
    with Gallery.open(gallery_dir, model_fingerprint=embedder.fingerprint) as gallery:
        results = gallery.search(embedder.embed_paths([i.path for i in items]).embeddings, k=3)
    for item, result in zip(items, results):
        assert result.matches[0].path == str(item.path.resolve())
        assert result.matches[0].distance == pytest.approx(0.0, abs=1e-3)
        assert result.identities[0].identity == item.identity
        assert [m.distance for m in result.matches] == sorted(m.distance for m in result.matches)
        assert len({i.identity for i in result.identities}) == len(result.identities)


def test_search_matches_brute_force(gallery_dir: Path) -> None:
    with Gallery.open(gallery_dir) as gallery:
        vectors = np.stack([gallery.index.reconstruct(int(i)) for i in gallery.items.ids()])
        queries = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
        results = gallery.search(queries, k=4)
    distances = np.linalg.norm(queries[:, None, :] - vectors[None], axis=2)
    for row, result in zip(distances, results):
        np.testing.assert_allclose(
            [m.distance for m in result.matches], np.sort(row)[:4], rtol=1e-4
        )


def test_k_larger_than_gallery_returns_what_exists(gallery_dir: Path) -> None:
    with Gallery.open(gallery_dir) as gallery:
        (result,) = gallery.search(np.zeros((1, 16), np.float32), k=1000)
    assert len(result.matches) == 24 and all(m.id >= 0 for m in result.matches)
    assert len(result.identities) == 4


def test_rebuild_without_changes_publishes_nothing(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "g"
    embedder = Embedder(tiny_model_path)
    Gallery.build(unseen_dataset, embedder, out)
    first = json.loads((out / "manifest.json").read_text())
    report = Gallery.build(unseen_dataset, embedder, out)
    assert (report.embedded, report.unchanged, report.added, report.removed) == (0, 24, 0, 0)
    assert json.loads((out / "manifest.json").read_text()) == first
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["manifest.json", first["index_file"], "items.sqlite", "rejected.json"]
    )
    with Gallery.open(out) as gallery:
        assert len(gallery) == 24 and gallery.info()["identity_counts"] == {
            f"id_{i:03d}": 6 for i in range(4)
        }


def test_model_mismatch_is_refused(gallery_dir: Path) -> None:
    with pytest.raises(ModelMismatchError) as info:
        Gallery.open(gallery_dir, model_fingerprint="f" * 64, model_name="other.onnx")
    manifest = json.loads((gallery_dir / "manifest.json").read_text())
    message = str(info.value)
    assert (
        manifest["model_fingerprint"][:16] in message
        and "ffffffffffffffff" in message
        and "other.onnx" in message
    )


def test_corrupt_image_in_gallery_is_skipped(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    shutil.copytree(unseen_dataset, images)
    (images / "id_001" / "zzz.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    report = Gallery.build(images, Embedder(tiny_model_path), tmp_path / "g")
    assert report.count == 24
    assert [Path(p).name for p, _ in report.failures] == ["zzz.jpg"]


def test_damaged_files_are_detected(gallery_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "g"
    shutil.copytree(gallery_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    index_file = copy / manifest["index_file"]
    data = bytearray(index_file.read_bytes())
    data[-5] ^= 0xFF
    index_file.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="checksum does not match"):
        Gallery.open(copy)
    index_file.unlink()
    with pytest.raises(GalleryError, match="missing"):
        Gallery.open(copy)
    (copy / "manifest.json").write_text("{ not json")
    with pytest.raises(GalleryError, match="not valid JSON"):
        Gallery.open(copy)


def test_build_refuses_foreign_folder_and_empty_input(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(GalleryError, match="not a gallery"):
        Gallery.build(unseen_dataset, Embedder(tiny_model_path), foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        Gallery.build(tmp_path / "empty", Embedder(tiny_model_path), tmp_path / "g")


def test_loose_files_are_identities(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    loose = tmp_path / "people"
    loose.mkdir()
    for item in scan_image_folder(unseen_dataset)[::6]:
        shutil.copy(item.path, loose / f"{item.identity}{item.path.suffix}")
    report = Gallery.build(loose, Embedder(tiny_model_path), tmp_path / "g")
    assert report.count == 4 and report.identities == 4
