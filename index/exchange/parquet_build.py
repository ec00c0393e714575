"""Building a gallery back from a Parquet export: vectors taken as they are, never embedded again.

The model is still named (its fingerprint binds the new gallery, as a build's would), and an
export whose vectors came from another model is refused, naming both.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from siamese.core.errors import DataError, GalleryError, ModelMismatchError, named
from siamese.core.progress import progress_bar
from siamese.index.exchange.parquet_format import ExportInfo, check_ids, iter_export, read_export
from siamese.index.location import is_milvus
from siamese.index.milvus import exchange as milvus_exchange
from siamese.index.published import short_fingerprint
from siamese.index.search import faiss_index as fx
from siamese.index.search.index_choice import default_memory_budget, parse_memory, resolve_index
from siamese.index.search.threshold import set_threshold
from siamese.index.store.gallery_files import REJECTED_FILE
from siamese.index.store.item_writer import NewItem
from siamese.index.store.manifest import MANIFEST_FILE
from siamese.index.updates.embeds import Embeds
from siamese.index.updates.operations import _build_recall, _choice_record, _pair_record
from siamese.index.updates.reports import UpdateReport, write_rejected_report
from siamese.index.updates.writer import GalleryWriter


# ------------------------------------------------------------------------------ building back
def refuse_other_model(info: ExportInfo, embedder: Embeds) -> None:
    """Raise ModelMismatchError naming both models unless ``embedder`` made the export's vectors."""
    if embedder.fingerprint != info.model_fingerprint:
        raise ModelMismatchError(
            f"{info.folder}: exported from model {short_fingerprint(info.model_fingerprint)} "
            f"({info.model_name}) but {embedder.model_path} is "
            f"{short_fingerprint(embedder.fingerprint)}; build with the model the export came "
            "from, or embed the images again"
        )
    if embedder.dim != info.dimension:  # same fingerprint, other size: a damaged export
        raise DataError(
            f"{info.folder}: vectors of dimension {info.dimension}, {embedder.model_path} "
            f"embeds {embedder.dim}"
        )


def _index_for(
    info: Any, index: str | None, search_params: dict[str, int] | None, memory_budget: Any
) -> tuple[str | None, str, dict[str, int] | None, Any]:
    """The index asked for, the folder gallery's index type, search parameters and choice record.

    Without ``index`` the exported gallery's own type and parameters: the same answers.
    """
    if index is None:
        index = info.metadata.get("index_type") or None  # none: a Milvus DISKANN, chosen anew
        exported = json.loads(info.metadata.get("search_params") or "{}") if index else None
        search_params = search_params or exported
    if isinstance(memory_budget, str):
        memory_budget = parse_memory(memory_budget) if memory_budget else None
    choice = resolve_index(
        index, info.count, info.dimension, memory_budget or default_memory_budget()
    )
    index_type = choice.index_type if choice else index or fx.DEFAULT_INDEX
    needed = fx.min_training_vectors(fx.new_index(info.dimension, index_type))
    if info.count < needed:
        raise GalleryError(
            f"index type {index_type} needs at least {needed} vectors to train, {info.folder} "
            f"has {info.count}; choose a smaller index or let one be chosen ({named('index')} auto)"
        )
    return index, index_type, search_params, choice


def _stage_rows(writer: GalleryWriter, info: Any, progress: bool) -> None:
    """Every exported row into the writer, ids kept, vectors as they are."""
    with progress_bar("importing", info.count, progress) as ticker:
        for ids, identities, paths, hashes, vectors in iter_export(info):
            writer.items.stage(
                [
                    NewItem(p, n, h, 0, 0, v, int(i))
                    for i, n, p, h, v in zip(ids, identities, paths, hashes, vectors)
                ]
            )
            ticker.advance(len(ids))


def build_from_export(
    export_dir: str | os.PathLike[str],
    embedder: Embeds,
    gallery_dir: str | os.PathLike[str],
    *,
    index: str | None = None,
    memory_budget: int | str | None = None,
    min_recall: float | None = None,
    target_recall: float | None = None,
    search_params: dict[str, int] | None = None,
    recall_queries: int = 1000,
    report_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
    part_runner: Any = None,
    **_ignored: Any,
) -> UpdateReport:
    """Create ``gallery_dir`` from an export: its rows and vectors as they are, ids kept.

    ``embedder`` names the model (fingerprint, path, pair): nothing is embedded, but the gallery is
    bound to that model as if it had, and refused if the export's vectors came from another. The
    options are :func:`~siamese.index.updates.operations.build_gallery`'s (``commit_every`` and
    other embedding options do not apply and are ignored). Without ``index``, the exported
    gallery's index type, search parameters and threshold are kept, so it answers as before.

    Raises:
        DataError: not an export, malformed files, or no rows.
        GalleryError: ``gallery_dir`` is already a gallery or a folder of other files.
        ModelMismatchError: the export's vectors come from another model.
    """
    started, info = time.perf_counter(), read_export(export_dir)
    refuse_other_model(info, embedder)
    if is_milvus(gallery_dir):
        return _into_milvus(info, embedder, gallery_dir, **_milvus_options(locals()))
    gallery_dir = Path(gallery_dir)
    if (gallery_dir / MANIFEST_FILE).exists():
        raise GalleryError(
            f"{gallery_dir}: already a gallery; build from an export into a new folder "
            f"({named('gallery_dir')})"
        )
    if info.count == 0:
        raise DataError(f"{info.folder}: the export holds no items")
    check_ids(info)
    index, index_type, search_params, choice = _index_for(info, index, search_params, memory_budget)
    with GalleryWriter.create(
        gallery_dir,
        dimension=info.dimension,
        model_fingerprint=embedder.fingerprint,
        model_path=str(Path(embedder.model_path).resolve()),
        index_type=index_type,
        search_params=search_params,
        pair=_pair_record(embedder),
    ) as writer:
        writer.part_runner = part_runner
        _stage_rows(writer, info, progress)
        recall = _build_recall(min_recall, target_recall, recall_queries)
        manifest = writer.publish(index_type=index_type, search_params=search_params, recall=recall)
    threshold = json.loads(info.metadata.get("threshold") or "null")
    if threshold:  # distances of the same model: the calibration still holds
        set_threshold(
            gallery_dir, threshold["distance"], far=threshold.get("far"), source=threshold["source"]
        )
    report_path = Path(report_path) if report_path else gallery_dir / REJECTED_FILE
    write_rejected_report(report_path, "build", str(info.folder), [])
    return UpdateReport.published(
        gallery_dir,
        manifest,
        started,
        added=manifest.count,
        choice={"asked": index, **_choice_record(choice)} if choice else None,
        report_path=report_path,
    )


_MILVUS_OPTIONS = (
    "index",
    "memory_budget",
    "min_recall",
    "target_recall",
    "search_params",
    "recall_queries",
    "report_path",
    "progress",
)


def _milvus_options(given: dict[str, Any]) -> dict[str, Any]:
    """The build options a Milvus import takes (the part runner is a folder index's)."""
    return {name: given[name] for name in _MILVUS_OPTIONS}


def _into_milvus(info: ExportInfo, embedder: Embeds, gallery: Any, **options: Any) -> UpdateReport:
    """Create the Milvus gallery ``gallery`` from a checked export (its rows upserted as they
    are, ids kept): :func:`siamese.index.milvus.exchange.import_rows`."""
    if info.count == 0:
        raise DataError(f"{info.folder}: the export holds no items")
    check_ids(info)
    meta = info.metadata
    imported = milvus_exchange.Imported(
        folder=info.folder,
        count=info.count,
        index_type=meta.get("index_type", ""),
        search_params=json.loads(meta.get("search_params") or "{}"),
        threshold=json.loads(meta.get("threshold") or "null"),
        gallery_id=meta.get("gallery_id", ""),
        milvus_index=meta.get("milvus_index", ""),
    )
    return milvus_exchange.import_rows(imported, iter_export(info), embedder, gallery, **options)
