"""`siamese index verify`: every invariant of a gallery, checked from scratch.

The manifest and index checksums, index count == item rows, every id in the index exactly once
and nothing else (no missing, duplicate or phantom ids), the items fingerprint, the stored
vectors of exact indexes, SQLite's own integrity check, the model file, and (optionally) that
every indexed file still has the content hash recorded for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from siamese.core.errors import GalleryError
from siamese.core.files import sha256_file
from siamese.index.ondisk.files import check_part
from siamese.index.ondisk.read import parts_of
from siamese.index.published import GalleryReader, RecordedReader
from siamese.index.search import faiss_index as fx
from siamese.index.search.results import Item
from siamese.index.updates.sync import sha256_regular_file

_VECTOR_SAMPLE = 1000
_LISTED = 10


@dataclass
class VerifyReport:
    """Outcome of a verification: ``ok`` when ``problems`` is empty; warnings do not fail it."""

    gallery_dir: str
    generation: int | None = None
    count: int | None = None
    staged: int = 0
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_ids: int = 0
    duplicate_ids: int = 0
    phantom_ids: int = 0
    files_checked: int = 0
    files_changed: int = 0

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        """One line for the terminal."""
        where = Path(self.gallery_dir)
        if self.ok:
            return (
                f"{where}: ok — generation {self.generation}, {self.count} items, "
                f"{len(self.checked)} checks" + (f", {self.staged} staged" if self.staged else "")
            )
        return f"{where}: {len(self.problems)} problem(s)"


def verify_gallery(
    gallery_dir: str | os.PathLike[str], *, check_files: bool = True
) -> VerifyReport:
    """Check a gallery's published generation; problems are collected, not raised.

    Args:
        check_files: also hash every indexed image file and compare it with the recorded hash.
    """
    report = VerifyReport(str(gallery_dir))
    try:
        gallery = GalleryReader.open(gallery_dir)
    except GalleryError as exc:
        report.problems.append(str(exc))
        return report
    with gallery:
        report.generation, report.count = gallery.manifest.generation, gallery.manifest.count
        report.checked.append(
            "manifest checksum, index checksum, counts (index = items = manifest)"
        )
        report.staged = gallery.items.staged_count()
        _check_parts(gallery, report)
        _check_ids(gallery, report)
        _check_fingerprint(gallery, report)
        _check_vectors(gallery, report)
        report.problems += gallery.items.integrity_problems()
        report.checked.append("SQLite integrity_check")
        check_model(gallery, report)
        if check_files:
            check_item_files(gallery.items.all_items(), report)
    return report


def _check_parts(gallery: GalleryReader, report: VerifyReport) -> None:
    """On-disk galleries: every chunk of every data file (opening checked sizes and a sample)."""
    parts = parts_of(gallery.manifest)
    for part in parts:
        try:
            check_part(gallery.gallery_dir, part, full=True)
        except GalleryError as exc:
            report.problems.append(str(exc))
        except OSError as exc:  # removed or unreadable since the gallery was opened
            report.problems.append(f"{exc.filename or part.name}: {exc.strerror or exc}")
    if parts:
        report.checked.append(
            f"data files of the on-disk index, every chunk ({', '.join(p.name for p in parts)})"
        )


def _check_ids(gallery: GalleryReader, report: VerifyReport) -> None:
    in_index = fx.index_ids(gallery.index)
    unique, counts = np.unique(in_index, return_counts=True)
    rows = gallery.items.ids()
    report.duplicate_ids = int((counts > 1).sum())
    report.missing_ids = int(np.setdiff1d(rows, unique).size)
    report.phantom_ids = int(np.setdiff1d(unique, rows).size)
    for name, value in (
        ("duplicate", report.duplicate_ids),
        ("missing", report.missing_ids),
        ("phantom", report.phantom_ids),
    ):
        if value:
            report.problems.append(
                f"{gallery.gallery_dir}: {value} {name} ids (index against item rows)"
            )
    report.checked.append("every item id in the index exactly once")


def _check_fingerprint(gallery: GalleryReader, report: VerifyReport) -> None:
    if gallery.items.fingerprint() != gallery.manifest.items_fingerprint:
        report.problems.append(
            f"{gallery.items.path}: items fingerprint does not match manifest.json; item rows were "
            "changed"
        )
    report.checked.append("items fingerprint")


def _check_vectors(gallery: GalleryReader, report: VerifyReport) -> None:
    """Indexes keeping vectors exactly (Flat, HNSW over Flat): stored and indexed vectors agree."""
    inner = faiss.downcast_index(gallery.index)
    storage = faiss.downcast_index(inner.index) if isinstance(inner, faiss.IndexIDMap2) else None
    if isinstance(storage, faiss.IndexHNSW):
        storage = faiss.downcast_index(storage.storage)
    if not isinstance(storage, faiss.IndexFlat) or not len(gallery):
        return
    ids = gallery.items.ids()
    sample = ids[np.linspace(0, len(ids) - 1, min(_VECTOR_SAMPLE, len(ids))).astype(int)]
    stored = gallery.items.vectors(sample, gallery.manifest.dimension)
    indexed = np.stack([inner.reconstruct(int(i)) for i in sample])
    if not np.array_equal(stored, indexed):
        report.problems.append(
            f"{gallery.gallery_dir / gallery.manifest.index_file}: vectors differ from the stored "
            "embeddings"
        )
    report.checked.append(f"stored embeddings = indexed vectors ({len(sample)} sampled)")


def check_model(gallery: RecordedReader, report: VerifyReport) -> None:
    """The gallery's recorded model is still there, and still the same file (any backend)."""
    model = gallery.model_path
    if not model.is_file():
        report.warnings.append(
            f"{model}: the gallery's model is not there any more; searches must name a model"
        )
    elif sha256_file(model) != gallery.manifest.model_fingerprint:
        report.problems.append(
            f"{model}: fingerprint differs from the model the gallery was built with; the model "
            "file was replaced"
        )
    else:
        report.checked.append("model fingerprint")


def check_item_files(items: Iterable[Item], report: VerifyReport) -> None:
    """Every item's file is still there with the content it was embedded from (any backend)."""
    changed = []
    for item in items:
        report.files_checked += 1
        try:
            same = sha256_regular_file(item.path) == item.sha256  # a pipe now there never blocks
        except OSError:
            same = False
        if not same:
            changed.append(item.path)
    report.files_changed = len(changed)
    if changed:
        listed = ", ".join(changed[:_LISTED]) + (" …" if len(changed) > _LISTED else "")
        report.problems.append(
            f"{len(changed)} indexed files are missing or changed since indexing ({listed}); run "
            "`siamese index build` again"
        )
    report.checked.append("image files' hashes")
