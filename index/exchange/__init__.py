"""Galleries to and from Parquet (Arrow): one row per item with its vector, for other engines.

:func:`export_gallery` writes any gallery (a folder, or a Milvus collection read page by page)
as Parquet files; :func:`build_from_export` creates a gallery (either kind) back from them with
the same ids and vectors, refusing another model;
:func:`read_export` and :func:`is_export` read an export folder's metadata. pyarrow is needed
(the ``ray`` extra brings it).
"""

from siamese.index.exchange.parquet_build import build_from_export, refuse_other_model
from siamese.index.exchange.parquet_export import ExportReport, export_gallery
from siamese.index.exchange.parquet_format import (
    COLUMNS,
    DEFAULT_ROWS_PER_FILE,
    EXPORT_FORMAT,
    ExportInfo,
    is_export,
    iter_export,
    read_export,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_ROWS_PER_FILE",
    "EXPORT_FORMAT",
    "ExportInfo",
    "ExportReport",
    "build_from_export",
    "export_gallery",
    "is_export",
    "iter_export",
    "read_export",
    "refuse_other_model",
]
