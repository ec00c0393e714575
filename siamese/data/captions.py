"""Captions files: the text side of a text → image pseudo-siamese dataset.

Two formats, one meaning: a CSV file with a header, or JSONL (one JSON object a line), each
record holding ``text`` and either ``identity`` (the caption describes that identity of the
image ImageFolder) or ``path`` (an image file; its identity is its parent folder's name, as in an
ImageFolder; a relative path is read against the captions file's folder). Extra columns are
ignored. The format is chosen by the extension: ``.jsonl``/``.ndjson`` is JSONL, anything else
CSV. Bad records are one-line errors naming the file and the line, never a traceback.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from siamese.core.errors import DataError

#: Longest caption kept (characters); a longer one is a data error, not a silent cut.
MAX_CAPTION_CHARS = 2000


@dataclass(frozen=True)
class Caption:
    """One caption and the identity it describes (and the image, when the file named one)."""

    identity: str
    text: str
    path: str | None = None


def _records(path: Path) -> list[tuple[int, dict[str, object]]]:
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: captions file is not UTF-8 text") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read captions file ({exc.strerror or exc})") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}: line {number} is not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            records.append((number, record))
        return records
    try:
        reader = csv.DictReader(content.splitlines())
        fields = reader.fieldnames or []
        rows = [(number, dict(row)) for number, row in enumerate(reader, start=2)]
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV file ({exc})") from None
    if "text" not in fields or not ({"identity", "path"} & set(fields)):
        raise DataError(
            f"{path}: a captions CSV needs a header with `text` and `identity` or `path` columns, "
            f"found {', '.join(f for f in fields if f) or 'none'}"
        )
    return rows


def read_captions(path: str | os.PathLike[str]) -> list[Caption]:
    """Every caption of a CSV or JSONL captions file, in file order.

    Raises:
        DataError: missing or unreadable file, a record without text or without identity/path,
            an over-long caption, or no captions at all.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: captions file not found")
    captions = []
    for number, record in _records(path):
        text, identity, image = record.get("text"), record.get("identity"), record.get("path")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}: line {number} has no text")
        if len(text) > MAX_CAPTION_CHARS:
            raise DataError(
                f"{path}: line {number} has a caption of {len(text)} characters (at most "
                f"{MAX_CAPTION_CHARS})"
            )
        if isinstance(image, str) and image.strip():
            image_path = Path(image)
            if not image_path.is_absolute():
                image_path = path.parent / image_path
            captions.append(Caption(image_path.parent.name, text.strip(), str(image_path)))
        elif isinstance(identity, str) and identity.strip():
            captions.append(Caption(identity.strip(), text.strip()))
        else:
            raise DataError(f"{path}: line {number} names neither an identity nor an image path")
    if not captions:
        raise DataError(f"{path}: no captions")
    return captions
