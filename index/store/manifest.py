"""manifest.json: the gallery's commit point, naming its index file, checksums and its model.

A writer publishes generation G+1 by writing ``index.<G+1>.faiss``, marking its items in the
SQLite database as belonging to G+1, and then atomically replacing this manifest: readers see
generation G or G+1, never a mix. The manifest carries its own checksum, so a hand-edited or
damaged manifest is refused rather than trusted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from siamese.core.errors import GalleryError
from siamese.core.files import read_json, sha256_bytes, write_json_atomic
from siamese.index.location import is_milvus

MANIFEST_FILE = "manifest.json"
ITEMS_FILE = "items.sqlite"
GALLERY_FORMAT_VERSION = 2


@dataclass(frozen=True)
class Manifest:
    """What one generation of a gallery directory holds."""

    gallery_id: str
    generation: int
    model_fingerprint: str
    model_path: str
    dimension: int
    metric: str
    index_type: str
    faiss_factory: str
    index_file: str
    index_sha256: str
    index_bytes: int
    items_fingerprint: str
    count: int
    identities: int
    created: str
    search_params: dict[str, int] = field(default_factory=dict)
    recall: dict[str, Any] | None = None
    #: {distance, far, source, set}: beyond ``distance`` a query is "unknown".
    #: See siamese.index.search.threshold.
    threshold: dict[str, Any] | None = None
    #: On-disk galleries: their data files (merged lists, added part, removed ids) with sizes
    #: and checksums (siamese.index.ondisk.files.PartFile); None for an index in one file.
    parts: list[dict[str, Any]] | None = None
    items_file: str = ITEMS_FILE
    format_version: int = GALLERY_FORMAT_VERSION
    #: Built with the gallery tower of a pseudo-siamese pair: {fingerprint (the pair's),
    #: query_model (path of the query tower), query_kind (image or text), query_tower (its
    #: tower fingerprint)}; queries through that query tower are accepted
    # (siamese/contracts/pair_card.py).
    pair: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def next(self, **changes: Any) -> Manifest:
        """The manifest of the following generation, with ``changes``."""
        return replace(self, generation=self.generation + 1, created=now_iso(), **changes)

    def write(self, gallery_dir: Path) -> None:
        """Atomically publish this manifest (with its checksum).

        The gallery switches to this generation.
        """
        payload = self.to_dict()
        write_json_atomic(gallery_dir / MANIFEST_FILE, {**payload, "checksum": _checksum(payload)})

    @classmethod
    def read(cls, gallery_dir: Path) -> Manifest:
        """Read and validate a gallery's manifest.

        Raises:
            GalleryError: missing, malformed, damaged (checksum), or from another siamese version.
        """
        path = gallery_dir / MANIFEST_FILE
        if not gallery_dir.is_dir() and is_milvus(gallery_dir):  # a folder-only operation
            raise GalleryError(f"{gallery_dir}: a Milvus gallery; this reads folder galleries only")
        if not gallery_dir.is_dir():
            raise GalleryError(
                f"{gallery_dir}: gallery folder not found (build one with `siamese index build`)"
            )
        if not path.is_file():
            raise GalleryError(f"{path}: missing; {gallery_dir} is not a siamese gallery")
        try:
            data = read_json(path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise GalleryError(f"{path}: damaged manifest ({exc})") from exc
        if not isinstance(data, dict):
            raise GalleryError(f"{path}: not a gallery manifest")
        version = data.get("format_version")
        if isinstance(version, int) and version > GALLERY_FORMAT_VERSION:
            raise GalleryError(
                f"{path}: gallery format {version} is newer than this siamese supports; upgrade "
                "siamese"
            )
        if version != GALLERY_FORMAT_VERSION:
            raise GalleryError(
                f"{path}: gallery format {version} predates incremental galleries; build it again "
                "into a new folder"
            )
        stored = data.pop("checksum", None)
        if stored != _checksum(data):
            raise GalleryError(
                f"{path}: checksum does not match its content; the manifest is damaged or was "
                "edited"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise GalleryError(f"{path}: malformed manifest ({exc})") from exc


def _checksum(payload: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def now_iso() -> str:
    """UTC timestamp to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
