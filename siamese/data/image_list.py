"""Gallery image lists: a CSV or Parquet file naming each image and its identity.

Galleries that live on shared storage are often described by a table rather than a folder
layout. A list has the columns ``path`` and ``identity`` (others are ignored); a relative path is
resolved against the list file's own folder, so a list and its images can move together. Rows
that cannot become an image (no path, no identity, a name of a format outside the allow-list)
are refused with their line, like the odd files of a folder scan; whether each named file exists
and decodes is checked later, as for a folder.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from siamese.core.errors import DataError
from siamese.data.image_folder import FolderScan, LabelledImage, image_extensions

LIST_SUFFIXES = (".csv", ".parquet")
_COLUMNS = ("path", "identity")


def is_image_list(path: str | os.PathLike[str]) -> bool:
    """True for an existing file named like a list (.csv or .parquet)."""
    return os.path.isfile(path) and Path(path).suffix.lower() in LIST_SUFFIXES


def _csv_rows(path: Path) -> list[tuple[int, str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: the list needs the columns path and identity (a header row); "
                    f"missing {', '.join(missing)}"
                )
            return [
                (reader.line_num, (row["path"] or "").strip(), (row["identity"] or "").strip())
                for row in reader
            ]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the list is not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV list ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the list ({exc.strerror or exc})") from None


def _parquet_rows(path: Path) -> list[tuple[int, str, str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading a Parquet list needs pyarrow; install it with "
            '`pip install -e ".[ray]"` or use a CSV list'
        ) from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: not a readable Parquet list ({exc})") from None
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: the list needs the columns path and identity; missing {', '.join(missing)}"
        )
    paths = table.column("path").to_pylist()
    identities = table.column("identity").to_pylist()
    return [
        (row + 1, "" if p is None else str(p).strip(), "" if i is None else str(i).strip())
        for row, (p, i) in enumerate(zip(paths, identities))
    ]


def scan_image_list(list_file: str | os.PathLike[str]) -> FolderScan:
    """The images a list names, in list order, and its refused rows.

    Raises:
        DataError: not a .csv or .parquet file, unreadable, or without path and identity columns.
    """
    path = Path(list_file)
    suffix = path.suffix.lower()
    if suffix not in LIST_SUFFIXES:
        raise DataError(
            f"{path}: expected a folder of images or a list file (.csv or .parquet with columns "
            "path and identity)"
        )
    rows = _csv_rows(path) if suffix == ".csv" else _parquet_rows(path)
    base = path.resolve().parent
    where = "line" if suffix == ".csv" else "row"
    scan = FolderScan()
    for line, name, identity in rows:
        if not name:
            scan.refused.append((f"{path}:{line}", f"{where} {line} of the list has no path"))
            continue
        image = base / name  # an absolute name stays as it is
        if not identity:
            scan.refused.append((str(image), f"{where} {line} of the list has no identity"))
        elif image.suffix.lower() not in image_extensions():
            scan.refused.append(
                (str(image), f"not named like an image ({image.suffix or 'no extension'})")
            )
        else:
            scan.images.append(LabelledImage(image, identity))
    return scan
