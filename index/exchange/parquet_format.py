"""The Parquet export format: its columns and metadata, and reading an export folder back.

An export is a folder of Parquet files (``part-00000.parquet``…) in plain columns any Arrow
reader takes: ``id`` (int64), ``identity``, ``path``, ``sha256`` (strings) and ``vector`` (a
fixed-size list of float32). Each file's key-value metadata (keys prefixed ``siamese.``) says
what its vectors are (the model's fingerprint, name, dimension and embedding kind) and what the
whole export holds, so a file read alone still names the model that made it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import DataError

#: Bumped when the columns or the metadata change meaning.
EXPORT_FORMAT = "1"
#: Rows per Parquet file unless asked otherwise (about 100 MB of 256-d vectors).
DEFAULT_ROWS_PER_FILE = 100_000
#: Rows read, checked and staged at a time when building from an export.
IMPORT_BATCH = 10_000
COLUMNS = ("id", "identity", "path", "sha256", "vector")
PREFIX = "siamese."
PART = "part-{:05d}.parquet"
_INSTALL = 'install it with `pip install -e ".[ray]"` (or `pip install pyarrow`)'


def pyarrow_modules() -> Any:
    """pyarrow, or the one line that says how to get it (it comes with the ray extra).

    Imported when Parquet is used (by name: index/ keeps its own imports at the top), so
    galleries work without it.
    """
    try:
        importlib.import_module("pyarrow.parquet")  # loads pyarrow and its parquet submodule
        return importlib.import_module("pyarrow")
    except ImportError:
        raise DataError(f"Parquet export and import need pyarrow; {_INSTALL}") from None


@dataclass(frozen=True)
class ExportInfo:
    """What an export folder holds, from its files' metadata (checked to agree)."""

    folder: Path
    files: tuple[Path, ...]
    count: int
    dimension: int
    model_fingerprint: str
    model_name: str
    embedding_kind: str
    #: Every ``siamese.*`` key of the first file's metadata, without the prefix.
    metadata: dict[str, str]


# ------------------------------------------------------------------------------ reading
def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if p.is_file())


def _siamese_metadata(schema: Any) -> dict[str, str]:
    raw = schema.metadata or {}
    return {
        key.decode()[len(PREFIX) :]: value.decode()
        for key, value in raw.items()
        if key.startswith(PREFIX.encode())
    }


def is_export(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder of Parquet files written by :func:`export_gallery`.

    False without pyarrow or Parquet files: the path is then read as what else it may be.
    """
    folder = Path(path)
    files = _parquet_files(folder) if folder.is_dir() else []
    if not files:
        return False
    pa = pyarrow_modules()
    try:
        return "export_format" in _siamese_metadata(pa.parquet.read_schema(files[0]))
    except (OSError, ValueError):
        return False


def read_export(path: str | os.PathLike[str]) -> ExportInfo:
    """Read an export folder's metadata and check its files agree with one another.

    Raises:
        DataError: not an export, an unreadable file, a column missing or of another type, or
            files from different models or exports.
    """
    pa, folder = pyarrow_modules(), Path(path)
    files = _parquet_files(folder) if folder.is_dir() else []
    if not files:
        raise DataError(
            f"{folder}: no Parquet files; expected a folder from `siamese index export`"
        )
    first: dict[str, str] | None = None
    count = 0
    for file in files:
        try:
            parquet = pa.parquet.ParquetFile(file)
        except (OSError, ValueError) as exc:
            raise DataError(f"{file}: not a readable Parquet file ({exc})") from None
        meta = _siamese_metadata(parquet.schema_arrow)
        if meta.get("export_format") != EXPORT_FORMAT:
            raise DataError(
                f"{file}: not a siamese export of format {EXPORT_FORMAT} (its metadata has "
                f"export_format {meta.get('export_format')!r})"
            )
        if first is None:
            first = meta
        for key in ("model_fingerprint", "dimension", "gallery_id", "generation", "where"):
            if meta.get(key) != first.get(key):
                raise DataError(
                    f"{file}: {key} {meta.get(key)!r} differs from {files[0].name}'s "
                    f"{first.get(key)!r}; the folder mixes exports"
                )
        _check_schema(pa, file, parquet.schema_arrow, int(meta["dimension"]))
        count += parquet.metadata.num_rows
    assert first is not None
    if str(count) != first.get("count"):
        raise DataError(
            f"{folder}: holds {count} rows, its metadata says {first.get('count')}; a file is "
            "missing or extra"
        )
    return ExportInfo(
        folder,
        tuple(files),
        count,
        int(first["dimension"]),
        first["model_fingerprint"],
        first.get("model_name", "?"),
        first.get("embedding_kind", "image"),
        first,
    )


def _check_schema(pa: Any, file: Path, schema: Any, dim: int) -> None:
    wanted = {
        "id": pa.int64(),
        "identity": pa.string(),
        "path": pa.string(),
        "sha256": pa.string(),
        "vector": pa.list_(pa.float32(), dim),
    }
    for name, kind in wanted.items():
        index = schema.get_field_index(name)
        if index < 0 or not schema.field(index).type.equals(kind):
            found = schema.field(index).type if index >= 0 else "missing"
            raise DataError(f"{file}: column {name} should be {kind}, is {found}")


def iter_export(
    info: ExportInfo, batch_rows: int = IMPORT_BATCH
) -> Iterator[tuple[NDArray[np.int64], list[str], list[str], list[str], NDArray[np.float32]]]:
    """(ids, identities, paths, sha256s, vectors) of an export, batch by batch, files in order.

    Raises:
        DataError: a missing value or a vector that is not finite, named by file and item id.
    """
    pa = pyarrow_modules()
    for file in info.files:
        for batch in pa.parquet.ParquetFile(file).iter_batches(batch_rows, columns=list(COLUMNS)):
            for name in COLUMNS:
                if batch.column(name).null_count:
                    raise DataError(f"{file}: column {name} has missing values")
            ids = batch.column("id").to_numpy().astype(np.int64)
            vectors = batch.column("vector").flatten().to_numpy().astype(np.float32)
            vectors = vectors.reshape(len(ids), info.dimension)
            bad = ~np.isfinite(vectors).all(axis=1)
            if bad.any():
                raise DataError(f"{file}: item {ids[bad][0]} has a vector that is not finite")
            yield (
                ids,
                batch.column("identity").to_pylist(),
                batch.column("path").to_pylist(),
                batch.column("sha256").to_pylist(),
                vectors,
            )


def check_ids(info: ExportInfo) -> None:
    """Item ids are kept by a build from the export: each must be positive and appear once."""
    pa = pyarrow_modules()
    ids = np.concatenate(
        [pa.parquet.read_table(f, columns=["id"]).column("id").to_numpy() for f in info.files]
    )
    if len(ids) and ids.min() < 1:
        raise DataError(f"{info.folder}: item id {ids.min()} is not positive")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{info.folder}: item id {unique[counts > 1][0]} appears more than once")
