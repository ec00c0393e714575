"""A Milvus gallery's side of the Parquet exchange: its rows read out page by page, and rows
written in as they are (ids and vectors kept, nothing embedded).

:mod:`siamese.index.exchange` owns the files (columns, metadata, checks) and calls these two
functions for a ``milvus…:`` location, so this package never imports it. Reading goes through
the query iterator with the columns an export needs, a page at a time, so an export of millions
of rows holds one page in memory; writing is upserts keyed by the exported ids, so a killed
import run again ends with one row per item.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import DataError, GalleryError, named
from siamese.core.progress import progress_bar
from siamese.index.milvus import collection as col
from siamese.index.milvus.record import (
    Policy,
    default_report,
    milvus_location,
    new_record,
    open_bound,
    publish,
    resolve,
)
from siamese.index.milvus.store import IdentityTally, MilvusStore
from siamese.index.search.filters import Where
from siamese.index.search.index_choice import default_memory_budget, parse_memory
from siamese.index.search.recall import DEFAULT_TARGET
from siamese.index.search.threshold import threshold_record
from siamese.index.store.crash_points import reached
from siamese.index.store.manifest import Manifest
from siamese.index.updates.embeds import Embeds
from siamese.index.updates.reports import UpdateReport, write_rejected_report

#: The columns of an export, as the collection names them.
EXPORT_FIELDS = ["id", "identity", "path", "sha256", "vector"]
#: A batch of rows as the exchange passes them: ids, identities, paths, sha256s, vectors.
Rows = tuple[NDArray[np.int64], list[str], list[str], list[str], NDArray[np.float32]]
#: The update generation an import writes (the first one).
_IMPORT_GENERATION = 1


# ------------------------------------------------------------------------------ reading out
@dataclass
class MilvusRows:
    """What an export of a Milvus gallery reads: its record, the rows selected, their pages."""

    manifest: Manifest
    count: int
    store: MilvusStore
    expression: str

    def pages(self) -> Iterator[Rows]:
        """The selected rows, a query-iterator page at a time, in the order Milvus returns them.

        Raises:
            GalleryError: the collection changed while it was read (another count of rows).
        """
        seen = 0
        for page in self.store.rows(EXPORT_FIELDS, self.expression):
            seen += len(page)
            yield (
                np.fromiter((r["id"] for r in page), np.int64, len(page)),
                [r["identity"] for r in page],
                [r["path"] for r in page],
                [r["sha256"] for r in page],
                np.asarray([r["vector"] for r in page], np.float32).reshape(
                    len(page), self.manifest.dimension
                ),
            )
        if seen != self.count:
            raise GalleryError(
                f"{self.store.location}: {seen} rows read, {self.count} counted before; the "
                "gallery changed during the export, export it again"
            )


def rows_to_export(location: Any, where: Where | None) -> MilvusRows:
    """The gallery record and the rows an export of ``location`` writes (``where`` selects).

    Raises:
        GalleryError: no such gallery, or an update that did not finish (its rows are newer than
            the record: exporting them would mix two states of the gallery).
    """
    store = MilvusStore(milvus_location(location))
    manifest = store.record()
    unfinished = store.count(f"generation > {manifest.generation}")
    if unfinished:
        raise GalleryError(
            f"{store.location}: {unfinished} rows were written by an update that did not finish; "
            "run the same `siamese index build` (or add) again, then export"
        )
    expression = where.expression if where is not None else ""
    return MilvusRows(manifest, store.count(expression), store, expression)


def faiss_index_of(manifest: Manifest) -> str:
    """The FAISS factory a folder gallery built from this Milvus gallery's export uses ('' when
    none matches: DISKANN, then the folder build chooses)."""
    index = col.MilvusIndex.from_json(manifest.faiss_factory)
    p = index.params
    return {
        "FLAT": "Flat",
        "HNSW": f"HNSW{p.get('M', 32)}",
        "IVF_FLAT": f"IVF{p.get('nlist', 0)},Flat",
        "IVF_SQ8": f"IVF{p.get('nlist', 0)},SQ8",
        "IVF_PQ": f"IVF{p.get('nlist', 0)},PQ{p.get('m', 0)}",
    }.get(index.kind, "")


# ------------------------------------------------------------------------------ writing in
@dataclass(frozen=True)
class Imported:
    """What an export says of the gallery it came from (read by the exchange from its files)."""

    folder: Path
    count: int
    #: The exported gallery's index type (a FAISS string or a Milvus name); '' for none.
    index_type: str
    search_params: dict[str, int]
    threshold: dict[str, Any] | None
    #: The exported gallery's id (the ids kept are that gallery's).
    gallery_id: str
    #: A Milvus gallery's export: its Milvus index (JSON), else ''.
    milvus_index: str = ""


def _exported_index(imported: Imported) -> str:
    """The index to build when none is asked: the exported one (an on-disk folder index as its
    in-memory counterpart, Milvus keeping its own segments), else FLAT."""
    if imported.milvus_index:  # from Milvus: its own index (DISKANN has no FAISS name)
        kept = col.MilvusIndex.from_json(imported.milvus_index)
        if kept.kind == "DISKANN":
            return kept.kind
    kind = imported.index_type.removeprefix("ondisk:")
    return kind if kind else "FLAT"


def _import_store(
    location: Any, embedder: Embeds, imported: Imported, index: str | None, budget: int
) -> tuple[MilvusStore, Manifest, col.MilvusIndex]:
    """A new collection bound to ``embedder`` (or the one a killed import left, to finish)."""
    store = MilvusStore(location)
    if store.exists():
        store, manifest = open_bound(location, embedder)  # another model: refused, both named
        if manifest.generation > 0:
            raise GalleryError(
                f"{location}: already a gallery; build from an export into a new collection "
                f"({named('gallery')})"
            )
        return store, manifest, col.MilvusIndex.from_json(manifest.faiss_factory)
    asked = index or _exported_index(imported)
    try:
        chosen, _ = resolve(asked, imported.count, embedder.dim, budget, location)
    except GalleryError as exc:
        if index:
            raise
        choose = f"the export's index; choose another: {named('index')}"
        raise GalleryError(f"{exc} ({choose})") from None
    manifest = new_record(embedder, chosen, location)
    store.create(manifest, chosen)
    store.set_properties({col.IDS_PROPERTY: imported.gallery_id or "export"})
    return store, manifest, chosen


def _checked_rows(batch: Rows, folder: Path) -> list[dict[str, Any]]:
    """Collection rows of one exported batch; an id or text Milvus cannot keep is refused."""
    rows = []
    for item, identity, path, sha, vector in zip(*batch):
        if int(item) >= 2**col.ID_BITS:
            raise DataError(
                f"{folder}: item id {int(item)} is not below 2^{col.ID_BITS}, the largest a "
                "Milvus gallery keeps; build a folder gallery from this export"
            )
        if reason := col.too_long(path, identity):
            raise DataError(f"{folder}: item {int(item)} ({path}): {reason}")
        rows.append(
            {
                "id": int(item),
                "vector": np.asarray(vector, np.float32).tolist(),
                "path": path,
                "identity": identity,
                "sha256": sha,
                "size": 0,  # unknown: a later build hashes the file and keeps the vector if same
                "mtime_ns": 0,
                "generation": _IMPORT_GENERATION,
            }
        )
    return rows


def import_rows(
    imported: Imported,
    batches: Iterable[Rows],
    embedder: Embeds,
    gallery_dir: Any,
    *,
    index: str | None = None,
    memory_budget: int | str | None = None,
    min_recall: float | None = None,
    target_recall: float | None = None,
    search_params: dict[str, int] | None = None,
    recall_queries: int = 1000,
    report_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> UpdateReport:
    """Create the Milvus gallery ``gallery_dir`` from an export's rows: ids and vectors kept.

    The exchange has checked the export (its files, its model against ``embedder``, its ids);
    without ``index`` the exported gallery's index type, search parameters and threshold are
    kept, so it answers as before. A run killed before the record is written leaves a collection
    of generation 0: the same command upserts the same ids again and finishes it.

    Raises:
        GalleryError: already a gallery, or an index type Milvus (Lite) cannot build.
        DataError: an id of 2^53 or more, or a path or identity longer than Milvus keeps.
    """
    started, location = time.perf_counter(), milvus_location(gallery_dir)
    if isinstance(memory_budget, str):
        memory_budget = parse_memory(memory_budget) if memory_budget else None
    budget = memory_budget or default_memory_budget()
    store, manifest, chosen = _import_store(location, embedder, imported, index, budget)
    if index is None:
        search_params = search_params or imported.search_params or None
    with progress_bar("importing", imported.count, progress) as ticker:
        for batch in batches:
            store.upsert(_checked_rows(batch, imported.folder))
            reached("milvus.chunk_upserted")
            ticker.advance(len(batch[0]))
    if imported.threshold:  # distances of the same model: the calibration still holds
        manifest = replace(manifest, threshold=_threshold(imported.threshold))
    policy = Policy(index, search_params, target_recall or DEFAULT_TARGET, min_recall)
    policy.queries, policy.always_measure = recall_queries, True
    tally = IdentityTally(store, manifest, set())
    published = publish(store, manifest, chosen, policy, _IMPORT_GENERATION, tally)
    report = Path(report_path) if report_path else default_report(location)
    write_rejected_report(report, "build", str(imported.folder), [])
    return UpdateReport.published(
        location,  # printed: a location, not a folder
        published,
        started,
        added=published.count,
        report_path=report,
    )


def _threshold(exported: dict[str, Any]) -> dict[str, Any]:
    return threshold_record(
        exported["distance"], far=exported.get("far"), source=exported.get("source", "export")
    )
