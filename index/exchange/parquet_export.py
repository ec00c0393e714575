"""Writing a gallery's items and their stored vectors as a Parquet export, for other engines.

The vectors are the ones the gallery stored at embedding time, not decoded from the index, so an
export of a compressed (PQ, SQ) or on-disk gallery still carries the exact embeddings. A Milvus
gallery's rows come from :mod:`siamese.index.milvus.exchange`, a query-iterator page at a time;
either source is written as it comes, a batch per row group, so memory holds one batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import DataError, GalleryError, named
from siamese.core.progress import progress_bar
from siamese.index.exchange.parquet_format import (
    DEFAULT_ROWS_PER_FILE,
    EXPORT_FORMAT,
    IMPORT_BATCH,
    PART,
    PREFIX,
    pyarrow_modules,
)
from siamese.index.location import is_milvus
from siamese.index.milvus import exchange as milvus_exchange
from siamese.index.milvus.exchange import Rows
from siamese.index.published import GalleryReader
from siamese.index.search.filters import Where, as_where
from siamese.index.store.manifest import Manifest


@dataclass(frozen=True)
class ExportReport:
    """Outcome of :func:`export_gallery`."""

    folder: Path
    files: list[str]
    count: int
    dimension: int
    model_fingerprint: str
    where: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "parquet": str(self.folder),
            "files": self.files,
            "count": self.count,
            "dimension": self.dimension,
            "model_fingerprint": self.model_fingerprint,
            "where": self.where,
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------------ export
def export_gallery(
    gallery_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    where: Where | str | None = None,
    progress: bool = False,
) -> ExportReport:
    """Write the gallery's items (those ``where`` selects, else all) as Parquet files in a folder.

    Works on every folder gallery (flat, IVF, HNSW, on-disk): the rows and vectors come from its
    item database, as of its published generation. A Milvus gallery (``milvus…:`` location) is
    read a query-iterator page at a time, ``where`` handed to Milvus as its filter. The files
    appear together: they are written in a hidden sibling folder renamed into place.

    Raises:
        DataError: pyarrow missing, ``rows_per_file`` below 1, or ``out_dir`` not empty.
        GalleryError: not a gallery, a damaged one, or a Milvus gallery an update left unfinished.
        FilterError: ``where`` does not parse.
    """
    pa = pyarrow_modules()
    started, out_dir, where = time.perf_counter(), Path(out_dir), as_where(where)
    if rows_per_file < 1:
        raise DataError(f"rows per file must be at least 1, got {rows_per_file}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(
            f"{out_dir}: exists and is not an empty folder; export into a new one "
            f"({named('parquet')})"
        )
    if is_milvus(gallery_dir):
        source = milvus_exchange.rows_to_export(gallery_dir, where)
        manifest, count, batches = source.manifest, source.count, source.pages()
        index_type = milvus_exchange.faiss_index_of(manifest)
        total = _write(pa, out_dir, batches, count, rows_per_file, progress,
                       _metadata(manifest, count, rows_per_file, where, index_type))  # fmt: skip
    else:
        with GalleryReader.open(gallery_dir) as gallery:
            manifest = gallery.manifest
            ids = gallery.items.ids() if where is None else gallery.items.ids_where(*where.sql())
            count, batches = len(ids), _folder_batches(gallery, ids)
            total = _write(pa, out_dir, batches, count, rows_per_file, progress,
                           _metadata(manifest, count, rows_per_file, where))  # fmt: skip
    return ExportReport(
        out_dir,
        [PART.format(part) for part in range(total)],
        count,
        manifest.dimension,
        manifest.model_fingerprint,
        where.expression if where else None,
        time.perf_counter() - started,
    )


def _write(
    pa: Any,
    out_dir: Path,
    batches: Iterator[Rows],
    count: int,
    rows_per_file: int,
    progress: bool,
    metadata: dict[str, str],
) -> int:
    """Write ``count`` rows from ``batches`` as files of ``rows_per_file`` rows: staged in a
    hidden sibling folder, renamed into place once all are written. Returns the files' count.

    Batches are cut at file boundaries and each piece written as it comes (a row group), so
    memory holds one batch, never a whole file.
    """
    total, dim = int(metadata["files"]), int(metadata["dimension"])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.exporting-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    writer: Any = None
    written = 0
    try:
        with progress_bar("exporting", count, progress) as ticker:
            for batch in batches:
                start = 0
                while start < len(batch[0]):
                    if written == count:
                        raise GalleryError(f"more rows than the {count} counted: {_CHANGED}")
                    if written % rows_per_file == 0:  # the next file begins
                        writer = _next_file(pa, writer, staging, metadata, written // rows_per_file)
                    take = min(len(batch[0]) - start, rows_per_file - written % rows_per_file)
                    piece = tuple(column[start : start + take] for column in batch)
                    writer.write_table(_table(pa, piece, dim, writer.schema))  # type: ignore[arg-type]
                    start, written = start + take, written + take
                    ticker.advance(take)
        if written != count:
            raise GalleryError(f"{written} rows read, {count} counted: {_CHANGED}")
        if count == 0:  # an empty export is one file of no rows, its metadata still readable
            writer = _next_file(pa, writer, staging, metadata, 0)
        writer.close()
        os.rename(staging, out_dir)  # replaces an empty folder
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return total


_CHANGED = "the gallery changed during the export; export it again"


def _next_file(pa: Any, writer: Any, staging: Path, metadata: dict[str, str], part: int) -> Any:
    """Close the file being written (if any) and open part ``part``."""
    if writer is not None:
        writer.close()
    schema = _schema(pa, int(metadata["dimension"]), {**metadata, "part": str(part)})
    return pa.parquet.ParquetWriter(staging / PART.format(part), schema)


def _folder_batches(gallery: GalleryReader, ids: NDArray[np.int64]) -> Iterator[Rows]:
    """A folder gallery's rows of ``ids`` with their stored vectors, IMPORT_BATCH at a time."""
    dim = gallery.manifest.dimension
    for start in range(0, len(ids), IMPORT_BATCH):
        chunk = ids[start : start + IMPORT_BATCH]
        items = gallery.items.get(chunk.tolist())
        rows = [items[int(i)] for i in chunk]
        yield (
            chunk,
            [r.identity for r in rows],
            [r.path for r in rows],
            [r.sha256 for r in rows],
            gallery.items.vectors(chunk, dim),
        )


def _metadata(
    manifest: Manifest, count: int, rows_per_file: int, where: Where | None, index_type: str = ""
) -> dict[str, str]:
    """The key-value metadata every file of an export carries (without the prefix).

    ``index_type``: the FAISS index a folder gallery built back uses, when the manifest's is not
    one (a Milvus gallery's; its own is kept as ``milvus_index``).
    """
    milvus = index_type != ""
    return {
        "export_format": EXPORT_FORMAT,
        "model_fingerprint": manifest.model_fingerprint,
        "model_name": Path(manifest.model_path).name,
        "model_path": manifest.model_path,
        "dimension": str(manifest.dimension),
        # Gallery items are embedded images, whatever the pair's query side embeds.
        "embedding_kind": "image",
        "metric": manifest.metric,
        "gallery_id": manifest.gallery_id,
        "generation": str(manifest.generation),
        "backend": "milvus" if milvus else "folder",
        "index_type": index_type if milvus else manifest.index_type,
        "milvus_index": manifest.faiss_factory if milvus else "",
        "search_params": json.dumps(manifest.search_params),
        "threshold": json.dumps(manifest.threshold) if manifest.threshold else "",
        "count": str(count),
        "files": str(max(1, math.ceil(count / rows_per_file))),
        "where": where.expression if where else "",
        "pair": json.dumps(manifest.pair) if manifest.pair else "",
    }


def _schema(pa: Any, dim: int, metadata: dict[str, str]) -> Any:
    """The export's columns, with ``metadata`` under the ``siamese.`` prefix."""
    return pa.schema(
        [
            ("id", pa.int64()),
            ("identity", pa.string()),
            ("path", pa.string()),
            ("sha256", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ],
        metadata={(PREFIX + k).encode(): v.encode() for k, v in metadata.items()},
    )


def _table(pa: Any, rows: Rows, dim: int, schema: Any) -> Any:
    """One piece of a file: ids, identities, paths, hashes and vectors as the export's columns."""
    ids, identities, paths, hashes, vectors = rows
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(ids, np.int64), pa.int64()),
            pa.array(identities, pa.string()),
            pa.array(paths, pa.string()),
            pa.array(hashes, pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, dim),
        ],
        schema=schema,
    )
