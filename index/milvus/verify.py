"""`siamese index verify` for a Milvus gallery: record, counts, ids, index, files and vectors.

Milvus keeps the rows and the index itself, so what can go wrong is between siamese and the
collection: an update that did not finish (rows newer than the record), rows written by hand
(an id that is not its path's hash), an index other than the recorded one, image files changed
since indexing, and stored vectors that the gallery's model no longer produces (checked on a
sample when an embedder is given).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from siamese.core.errors import GalleryError
from siamese.index.milvus.collection import IDS_PROPERTY, is_own_id
from siamese.index.milvus.reader import MilvusGalleryReader
from siamese.index.updates.embeds import Embeds
from siamese.index.verify import VerifyReport, check_item_files, check_model

#: Items re-embedded to compare with their stored vectors.
VECTOR_SAMPLE = 64
#: Largest L2 difference between a stored and a fresh vector, relative to the vector's length.
VECTOR_TOLERANCE = 1e-3
_LISTED = 10


def verify_gallery(
    gallery_dir: Any, *, check_files: bool = True, embedder: Embeds | None = None
) -> VerifyReport:
    """Check a Milvus gallery; problems are collected, not raised.

    Args:
        check_files: hash every indexed image file and compare it with the recorded hash.
        embedder: the gallery's (gallery-side) model: a sample of items is embedded again and
            compared with the stored vectors.
    """
    location = gallery_dir
    report = VerifyReport(str(location))
    try:
        gallery = MilvusGalleryReader.open(location)
    except GalleryError as exc:
        report.problems.append(str(exc))
        return report
    manifest, store = gallery.manifest, gallery.store
    report.generation, report.count = manifest.generation, manifest.count
    report.checked.append("gallery record checksum")
    rows = store.count()
    newer = store.count(f"generation > {manifest.generation}")
    if rows != manifest.count or newer:
        report.problems.append(
            f"{location}: {rows} rows, the record says {manifest.count}"
            + (f"; {newer} written by an update that did not finish" if newer else "")
            + "; run the same `siamese index build` (or add) again"
        )
    counts = store.identity_counts()
    if sum(counts.values()) != rows or len(counts) != manifest.identities:
        report.problems.append(
            f"{location}: {len(counts)} identities holding {sum(counts.values())} rows, the record "
            f"says {manifest.identities} identities"
        )
    report.checked.append("counts (rows = record, identities)")
    items = gallery.all_items()
    # Built from a Parquet export: the ids are the exported gallery's, kept, not path hashes.
    imported = store.properties().get(IDS_PROPERTY)
    wrong = [] if imported else [i.path for i in items if not is_own_id(i.path, i.id)]
    paths = {i.path for i in items}
    report.duplicate_ids = len(items) - len(paths)
    report.phantom_ids = len(wrong)
    if wrong:
        report.problems.append(
            f"{location}: {len(wrong)} rows whose id is not their path's (written outside siamese: "
            f"{', '.join(wrong[:_LISTED])})"
        )
    if report.duplicate_ids:
        report.problems.append(f"{location}: {report.duplicate_ids} paths held twice")
    report.checked.append(
        f"every item once, ids kept from gallery {imported}'s export"
        if imported
        else "every item once, its id its path's"
    )
    _check_index(gallery, report)
    check_model(gallery, report)
    if embedder is not None:
        _check_vectors(gallery, embedder, report)
    if check_files:
        check_item_files(items, report)
    return report


def _check_index(gallery: MilvusGalleryReader, report: VerifyReport) -> None:
    described = gallery.store.index()
    recorded = gallery.index_spec.kind
    if str(described.get("index_type", "")).upper() != recorded:
        report.problems.append(
            f"{gallery.location}: Milvus holds a {described.get('index_type')} index, the record "
            f"says {gallery.manifest.index_type}; build the gallery again with index type "
            f"{recorded}"
        )
    report.checked.append(f"vector index ({described.get('index_type')}, L2)")


def _check_vectors(gallery: MilvusGalleryReader, embedder: Embeds, report: VerifyReport) -> None:
    """A sample of items embedded again by the gallery's model, against their stored vectors."""
    if embedder.fingerprint != gallery.manifest.model_fingerprint:
        report.problems.append(
            f"{embedder.model_path}: not the gallery's model; vectors not compared"
        )
        return
    # Ids are hashes of paths, so the first ones Milvus returns are a sample spread at random.
    items = gallery.store.items("", limit=VECTOR_SAMPLE) if len(gallery) else []
    stored = gallery.store.vectors([i.id for i in items])
    by_path = {i.path: i.id for i in items}
    differ, embedded = [], 0
    for batch in embedder.iter_embed_paths(list(by_path)):
        for path, fresh in zip(batch.paths, batch.embeddings):
            kept = stored[by_path[path]]
            embedded += 1
            if np.linalg.norm(kept - fresh) > VECTOR_TOLERANCE * max(
                1.0, float(np.linalg.norm(kept))
            ):
                differ.append(path)
    if differ:
        report.problems.append(
            f"{len(differ)} of {embedded} sampled items embed differently now than their stored "
            f"vectors ({', '.join(differ[:_LISTED])}); the files or the model changed"
        )
    report.checked.append(f"stored vectors = the model's ({embedded} sampled)")
