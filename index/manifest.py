"""manifest.json: the gallery's commit point, naming its files, their checksums and the model it needs.

Gallery files are written under generation-numbered names; publishing a new manifest (atomic
rename) switches readers from one complete generation to the next, so a crash mid-build leaves
the previous gallery loadable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from siamese.errors import GalleryError
from siamese.io import read_json, write_json_atomic

MANIFEST_FILE = "manifest.json"
GALLERY_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """What a gallery directory holds."""

    model_fingerprint: str
    model_path: str
    dimension: int
    metric: str
    faiss_factory: str
    count: int
    identities: int
    generation: int
    index_file: str
    index_sha256: str
    items_file: str
    created: str
    format_version: int = GALLERY_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def write(self, gallery_dir: Path) -> None:
        """Atomically publish this manifest: the gallery switches to its files."""
        write_json_atomic(gallery_dir / MANIFEST_FILE, self.to_dict())

    @classmethod
    def read(cls, gallery_dir: Path) -> Manifest:
        """Read and validate a gallery's manifest.

        Raises:
            GalleryError: missing, malformed, or from a newer siamese.
        """
        path = gallery_dir / MANIFEST_FILE
        if not gallery_dir.is_dir():
            raise GalleryError(f"{gallery_dir}: gallery folder not found (build one with `siamese index build`)")
        if not path.is_file():
            raise GalleryError(f"{path}: missing; {gallery_dir} is not a siamese gallery")
        try:
            data = read_json(path)
        except ValueError as exc:
            raise GalleryError(str(exc)) from exc
        if not isinstance(data, dict):
            raise GalleryError(f"{path}: not a gallery manifest")
        version = data.get("format_version")
        if isinstance(version, int) and version > GALLERY_FORMAT_VERSION:
            raise GalleryError(f"{path}: gallery format {version} is newer than this siamese supports; upgrade siamese")
        try:
            return cls(**data)
        except TypeError as exc:
            raise GalleryError(f"{path}: malformed manifest ({exc})") from exc


def now_iso() -> str:
    """UTC timestamp to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
