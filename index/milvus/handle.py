"""The rest of the gallery handle for Milvus: threshold, facts, the model to query with, watching.

These are what :class:`siamese.index.Gallery` calls for a ``milvus…:`` location, with the same
arguments and results as for a folder.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from siamese.core.errors import GalleryError, named
from siamese.index.milvus.collection import RECORD_PROPERTY
from siamese.index.milvus.reader import MilvusGalleryReader
from siamese.index.milvus.record import milvus_location
from siamese.index.milvus.store import MilvusStore
from siamese.index.search.threshold import threshold_record
from siamese.index.updates import uploads


def set_threshold(
    gallery_dir: Any,
    distance: float | None,
    *,
    far: float | None = None,
    source: str = "set by hand",
    model_fingerprint: str | None = None,
) -> dict[str, Any] | None:
    """Store (or clear) the "unknown" threshold in the gallery record (see the folder version)."""
    location = milvus_location(gallery_dir)
    record = None if distance is None else threshold_record(distance, far=far, source=source)
    store = MilvusStore(location)
    manifest = store.record()
    if model_fingerprint is not None and model_fingerprint != manifest.model_fingerprint:
        raise GalleryError(
            f"{location}: the threshold was calibrated with model {model_fingerprint[:12]}, the "
            f"gallery holds embeddings of model {manifest.model_fingerprint[:12]}; distances of "
            "different models are not comparable"
        )
    store.write_record(replace(manifest, threshold=record))
    return record


def facts(gallery_dir: Any) -> dict[str, Any]:
    """What the gallery record says (generation, count, model, index type, threshold…)."""
    return MilvusStore(milvus_location(gallery_dir)).record().to_dict()


def describe(gallery_dir: Any) -> dict[str, Any]:
    """Open the gallery and return its reader's ``info``."""
    with MilvusGalleryReader.open(gallery_dir) as gallery:
        return gallery.info()


def query_model(
    gallery_dir: Any, model: str | os.PathLike[str] | None = None, *, role: str = "query"
) -> Path:
    """The model to embed queries (or, ``role="gallery"``, added images) with."""
    if model is not None:
        return Path(model)
    location = milvus_location(gallery_dir)
    manifest = MilvusStore(location).record()
    query_side = manifest.pair is not None and role == "query"
    recorded = Path(manifest.pair["query_model"] if query_side else manifest.model_path)
    if not recorded.is_file():
        raise GalleryError(
            f"{location}: was built with {recorded}, which is not on this machine; name the "
            f"model ({named('model')} PATH)"
        )
    return recorded


def files_home(gallery_dir: Any) -> Path:
    """The folder that keeps a Milvus gallery's files (uploaded images, under ``uploads/``).

    Beside a Lite file (``PATH.db.files``); for a server, ``COLLECTION.files`` in the working
    folder, since the images must stay readable where the service runs.
    """
    location = milvus_location(gallery_dir)
    return Path((location.uri if location.lite else location.collection) + ".files")


def store_upload(gallery_dir: Any, identity: str, data: bytes, image_format: str | None) -> Path:
    """Keep an uploaded image under :func:`files_home` (see the folder version); its path."""
    home = files_home(gallery_dir)
    home.mkdir(parents=True, exist_ok=True)
    return uploads.store_upload(home, identity, data, image_format)


def stored_uploads(gallery_dir: Any, *args: Any, **kwargs: Any) -> list[Path]:
    """The stored uploads that are ``paths`` or lie in ``identity``'s folder."""
    return uploads.stored_uploads(files_home(gallery_dir), *args, **kwargs)


def audit(gallery_dir: Any, *args: Any, **kwargs: Any) -> Any:
    """The audit searches every item through a folder gallery's own index; not for Milvus yet."""
    raise GalleryError(
        f"{gallery_dir}: the audit reads folder galleries only; build a folder gallery of the "
        "same images (with the same model) to audit them"
    )


class MilvusGenerationWatch:
    """Tells when another process finished an update (or set a threshold) on the collection.

    Each poll reads the collection's properties (one small request): the record changes with
    every finished update.
    """

    def __init__(self, gallery_dir: Any) -> None:
        self.location = milvus_location(gallery_dir)
        self._store: MilvusStore | None = None
        self._seen = self._stamp()

    def _stamp(self) -> str:
        try:
            self._store = self._store or MilvusStore(self.location)
            return str(self._store.properties().get(RECORD_PROPERTY, ""))
        except GalleryError:
            return ""

    def touched(self) -> bool:
        """The record changed since it was last marked seen."""
        return self._stamp() != self._seen

    def differs(self, current: Any) -> bool:
        """Whether the record differs from ``current``'s (a reader); marks it seen if not."""
        stamp = self._stamp()
        assert self._store is not None
        changed = self._store.record() != current.manifest
        if not changed:
            self._seen = stamp
        return changed

    def mark_seen(self) -> None:
        """Record the current record as seen (after opening it)."""
        self._seen = self._stamp()
