"""Writing a gallery's items and their stored vectors as a Parquet export, for other engines.

The vectors are the ones the gallery stored at embedding time, not decoded from the index, so an
export of a compressed (PQ, SQ) or on-disk gallery still carries the exact embeddings.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import DataError, named
from siamese.core.progress import progress_bar
from siamese.index.exchange.parquet_format import (
    DEFAULT_ROWS_PER_FILE,
    EXPORT_FORMAT,
    PART,
    PREFIX,
    pyarrow_modules,
)
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
    item database, as of its published generation. The files appear together: they are written
    in a hidden sibling folder renamed into place.

    Raises:
        DataError: pyarrow missing, ``rows_per_file`` below 1, or ``out_dir`` not empty.
        GalleryError: not a gallery, or a damaged one.
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
    with GalleryReader.open(gallery_dir) as gallery:
        ids = gallery.items.ids() if where is None else gallery.items.ids_where(*where.sql())
        total = max(1, math.ceil(len(ids) / rows_per_file))
        metadata = _metadata(gallery.manifest, len(ids), total, where)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = out_dir.parent / f".{out_dir.name}.exporting-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            with progress_bar("exporting", len(ids), progress) as ticker:
                for part in range(total):
                    chunk = ids[part * rows_per_file : (part + 1) * rows_per_file]
                    table = _table(pa, gallery, chunk, {**metadata, "part": str(part)})
                    pa.parquet.write_table(table, staging / PART.format(part))
                    ticker.advance(len(chunk))
            os.rename(staging, out_dir)  # replaces an empty folder
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return ExportReport(
        out_dir,
        [PART.format(part) for part in range(total)],
        len(ids),
        gallery.manifest.dimension,
        gallery.manifest.model_fingerprint,
        where.expression if where else None,
        time.perf_counter() - started,
    )


def _metadata(manifest: Manifest, count: int, files: int, where: Where | None) -> dict[str, str]:
    """The key-value metadata every file of an export carries (without the prefix)."""
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
        "index_type": manifest.index_type,
        "search_params": json.dumps(manifest.search_params),
        "threshold": json.dumps(manifest.threshold) if manifest.threshold else "",
        "count": str(count),
        "files": str(files),
        "where": where.expression if where else "",
        "pair": json.dumps(manifest.pair) if manifest.pair else "",
    }


def _table(
    pa: Any, gallery: GalleryReader, ids: NDArray[np.int64], metadata: dict[str, str]
) -> Any:
    """One file's rows: the items of ``ids`` with their stored vectors."""
    dim = gallery.manifest.dimension
    items = gallery.items.get(ids.tolist())
    rows = [items[int(i)] for i in ids]
    vectors = gallery.items.vectors(ids, dim)
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "identity": pa.array([r.identity for r in rows], pa.string()),
            "path": pa.array([r.path for r in rows], pa.string()),
            "sha256": pa.array([r.sha256 for r in rows], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        },
        metadata={(PREFIX + k).encode(): v.encode() for k, v in metadata.items()},
    )
