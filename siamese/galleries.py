"""Gallery use cases: a gallery opened together with the towers that serve it.

A gallery answers queries embedded by the model it was built with. For one tower that is one
model; for a pseudo-siamese pair it is three roles: the query tower (images or text), the
gallery tower that embeds images added to the gallery, and which of them embeds image queries.
This module settles the roles and the fingerprint handshake once, for the CLI and the service
alike (engine and index never see each other: this is where they meet).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siamese.core.errors import GalleryError, SiameseError
from siamese.engine import Embedder, TextEmbedder, open_query_embedder
from siamese.index import Gallery
from siamese.index.published import PublishedGallery

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11


@dataclass
class ServedGallery:
    """An opened gallery and its towers.

    Attributes:
        query: the model that embeds what users ask with (image or text), the one the gallery's
            fingerprint check was made with.
        images: embeds image queries (a text → image pair's gallery tower: None unless ``adds``
            loaded it).
        adds: embeds images added to the gallery (a pair's gallery tower); None when not asked.
        text: embeds text queries; None unless the query tower reads text.
    """

    gallery: PublishedGallery
    query: Embedder | TextEmbedder
    images: Embedder | None
    adds: Embedder | None
    text: TextEmbedder | None
    model_path: Path

    def close(self) -> None:
        """Close the gallery and every tower (once each)."""
        self.gallery.close()
        towers = {id(t): t for t in (self.query, self.images, self.adds) if t is not None}
        for tower in towers.values():
            close = getattr(tower, "close", None)  # a text tower holds no pool to release
            if close is not None:
                close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_served_gallery(
    gallery_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    adds: bool = False,
    queries: str | None = None,
    **gallery_options: Any,
) -> ServedGallery:
    """Open ``gallery_dir`` with the towers it was built with (or ``model``).

    Args:
        model: the query model (default: the one the gallery recorded).
        adds: also load the tower that embeds added images (a pair's gallery tower).
        queries: "text" or "image": refuse a query model of the other kind before the gallery
            is opened.
        gallery_options: passed to :meth:`Gallery.open` (mmap, search_params).

    Raises:
        GalleryError, ModelMismatchError, ModelError, DeviceUnavailableError: as the CLI and
            the service report them.
    """
    model_path = Gallery.query_model(gallery_dir, model)
    options = {} if batch_size is None else {"batch_size": batch_size}
    opened = open_query_embedder(model_path, device=device, **options)
    if queries is not None and opened.kind != queries:
        wrong = (
            "a text tower; query it with --text"
            if queries == "image"
            else "embeds images, not text"
        )
        raise SiameseError(f"{model_path}: {wrong}")
    try:
        gallery = Gallery.open(
            gallery_dir,
            model_fingerprint=opened.fingerprint,
            model_name=str(model_path),
            model_pair=opened.pair,
            **gallery_options,
        )
    except BaseException:
        opened.close()
        raise
    text = opened if isinstance(opened, TextEmbedder) else None
    if opened.pair is None and text is None:
        assert isinstance(opened, Embedder)
        return ServedGallery(gallery, opened, opened, opened if adds else None, None, model_path)
    try:  # a pair: added images (and, with a text tower, image queries) use the gallery tower
        tower = _gallery_tower(gallery_dir, gallery, device, options) if adds else None
    except BaseException:
        gallery.close()
        opened.close()
        raise
    images = tower if text is not None else opened
    return ServedGallery(gallery, opened, images, tower, text, model_path)


def _gallery_tower(
    gallery_dir: str | os.PathLike[str],
    gallery: PublishedGallery,
    device: str,
    options: dict[str, Any],
) -> Embedder:
    own = Path(gallery.model_path)
    if not own.is_file():
        raise GalleryError(
            f"{gallery_dir}: its gallery tower {own} is no longer there; it embeds the images "
            "added to the gallery"
        )
    return Embedder(own, device=device, **options)
