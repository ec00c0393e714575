"""Incremental galleries: re-builds embed only what changed, add/remove, stable ids.

Resuming interrupted runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from siamese.core.errors import GalleryError
from siamese.engine import Embedder
from siamese.index import Gallery, GalleryWriter
from siamese.index.store.manifest import Manifest


@pytest.fixture()
def images(unseen_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the unseen identities (4 × 6 images) that a test may change."""
    return Path(shutil.copytree(unseen_dataset, tmp_path / "images"))


def ids_by_path(gallery_dir: Path) -> dict[str, int]:
    with Gallery.open(gallery_dir) as gallery:
        return {item.path: item.id for item in gallery.items.all_items()}


def test_rebuild_embeds_only_new_and_changed_files(
    images: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    embedder = Embedder(tiny_model_path)
    gallery = tmp_path / "g"
    first = Gallery.build(images, embedder, gallery, commit_every=5)
    assert (first.embedded, first.count, first.identities) == (24, 24, 4)
    before = ids_by_path(gallery)

    (images / "id_000" / min(os.listdir(images / "id_000"))).unlink()  # vanished
    changed = images / "id_001" / min(os.listdir(images / "id_001"))
    shutil.copy(
        images / "id_002" / min(os.listdir(images / "id_002")), changed
    )  # new content, same name
    touched = images / "id_003" / min(os.listdir(images / "id_003"))
    os.utime(
        touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9)
    )  # same content, new mtime
    shutil.copytree(images / "id_002", images / "id_new")  # a new identity: 6 files

    second = Gallery.build(images, embedder, gallery, commit_every=5)
    assert (second.embedded, second.removed, second.count, second.identities) == (7, 2, 29, 5)
    assert (
        second.unchanged == 22 - 1 and second.generation > first.generation
    )  # the touched file is re-hashed, not embedded
    after = ids_by_path(gallery)
    kept = set(before) & set(after) - {str(changed)}
    assert kept and all(before[p] == after[p] for p in kept)  # stable ids
    assert after[str(changed)] not in before.values()  # changed content is a new item
    assert max(after.values()) > max(before.values())
    assert Gallery.verify(gallery).ok


def test_add_and_remove(
    images: Path, tiny_model_path: Path, tmp_path: Path, unseen_dataset: Path
) -> None:
    embedder = Embedder(tiny_model_path)
    gallery = tmp_path / "g"
    Gallery.build(
        images / "id_000", embedder, gallery
    )  # loose files: 6 identities of one image each
    report = Gallery.add(gallery, [images / "id_001"], embedder, identity="bob")
    assert (report.added, report.count) == (6, 12)
    loose = tmp_path / "more" / "carol"
    loose.mkdir(parents=True)
    one = shutil.copy(next((images / "id_002").iterdir()), loose / "c1.png")
    report = Gallery.add(gallery, [one], embedder)
    assert report.added == 1 and ids_by_path(gallery)[str(Path(one).resolve())] == 13  # next id
    with Gallery.open(gallery) as opened:
        assert (
            opened.items.identity_counts()["bob"] == 6
            and opened.items.identity_counts()["carol"] == 1
        )
    assert Gallery.add(gallery, [one], embedder).added == 0  # already there, unchanged

    assert Gallery.remove(gallery, identities=["bob"]).removed == 6
    assert (
        Gallery.remove(gallery, paths=[tmp_path / "more"]).removed == 1
    )  # a folder removes what is under it
    with pytest.raises(GalleryError, match="no items match identity 'bob'"):
        Gallery.remove(gallery, identities=["bob"])
    with Gallery.open(gallery) as opened:
        assert len(opened) == 6 and "bob" not in opened.items.identity_counts()
    assert Gallery.verify(gallery).ok


class _Crash(Exception):
    pass


class _CrashingEmbedder:
    """An embedder that dies after ``batches`` batches, like a build killed mid-way."""

    def __init__(self, embedder: Embedder, batches: int) -> None:
        self._embedder, self._left = embedder, batches

    def __getattr__(self, name: str):
        return getattr(self._embedder, name)

    def iter_embed_paths(self, paths):
        for batch in self._embedder.iter_embed_paths(paths):
            if self._left == 0:
                raise _Crash()
            self._left -= 1
            yield batch


def test_an_interrupted_build_resumes_from_its_last_commit(
    images: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    embedder = Embedder(tiny_model_path, batch_size=2)
    gallery = tmp_path / "g"
    with pytest.raises(_Crash):
        Gallery.build(images, _CrashingEmbedder(embedder, batches=7), gallery, commit_every=4)
    with Gallery.open(gallery) as opened:
        published, staged = len(opened), opened.items.staged_count()
    assert (
        published + staged == 12 and published > 0
    )  # 3 committed chunks of 4; the 4th died mid-chunk
    assert Gallery.verify(gallery).ok
    report = Gallery.build(images, embedder, gallery, commit_every=4)
    assert report.resumed == staged and report.embedded == 24 - 12 and report.count == 24
    assert Gallery.verify(gallery).ok


def test_publish_interrupted_before_its_manifest_is_rolled_back(
    images: Path, tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = Embedder(tiny_model_path)
    gallery = tmp_path / "g"
    Gallery.build(images / "id_000", embedder, gallery)
    generation = Manifest.read(gallery).generation

    def crash(self, gallery_dir):
        raise _Crash()

    with monkeypatch.context() as patched:
        patched.setattr(Manifest, "write", crash)
        with pytest.raises(_Crash):
            Gallery.add(gallery, [images / "id_001"], embedder)
    # items were marked as published in SQLite, but the manifest never switched:
    # readers see the old state
    with Gallery.open(gallery) as opened:
        assert opened.manifest.generation == generation and len(opened) == 6
    assert Gallery.verify(gallery).ok
    report = Gallery.add(gallery, [images / "id_001"], embedder)
    assert (report.resumed, report.embedded, report.count) == (6, 0, 12)
    assert sorted(p.name for p in gallery.glob("index.*")) == [Manifest.read(gallery).index_file]


def test_rejected_files_are_reported_as_json(
    images: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    (images / "id_000" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    (images / "id_000" / "empty.png").write_bytes(b"")
    (images / "id_001" / "scan.psd").write_bytes(b"8BPS")
    report = Gallery.build(
        images, Embedder(tiny_model_path), tmp_path / "g", report_path=tmp_path / "rejected.json"
    )
    assert report.count == 24
    rejected = json.loads((tmp_path / "rejected.json").read_text())
    reasons = {Path(r["path"]).name: r["reason"] for r in rejected["rejected"]}
    assert rejected["command"] == "build" and rejected["rejected_count"] == 3
    assert (
        "corrupt or truncated" in reasons["broken.jpg"]
        and "empty file" in reasons["empty.png"]
        and "not allowed" in reasons["scan.psd"]
    )


def test_foreign_and_occupied_folders(images: Path, tiny_model_path: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "g"
    Gallery.build(images / "id_000", Embedder(tiny_model_path), gallery)
    with (
        GalleryWriter.open(gallery),
        pytest.raises(GalleryError, match="gallery is locked by another writer"),
    ):
        Gallery.remove(gallery, identities=["x"])
    with pytest.raises(GalleryError, match="not a siamese gallery"):
        GalleryWriter.open(images)
