"""Gallery use cases: a gallery opened together with the towers that serve it.

A gallery answers queries embedded by the model it was built with. For one tower that is one
model; for a pseudo-siamese pair it is three roles: the query tower (images or text), the
gallery tower that embeds images added to the gallery, and which of them embeds image queries.
This module settles the roles and the fingerprint handshake once, for the CLI and the service
alike (engine and index never see each other: this is where they meet). Builds run here too,
with a local or a Ray embedder: this module owns a Ray build's parts folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siamese.core.errors import DataError, GalleryError, SiameseError, named
from siamese.engine import Embedder, TextEmbedder, open_query_embedder
from siamese.index import Gallery, UpdateReport, VerifyReport
from siamese.index.exchange import build_from_export, is_export
from siamese.index.location import is_milvus, parse_location
from siamese.index.published import GalleryReader

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

    gallery: GalleryReader
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
            f"a text tower; query it with texts ({named('text')})"
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
    gallery: GalleryReader,
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


@dataclass
class ModelTowers:
    """A model's towers: ``query`` embeds queries; ``gallery`` embeds gallery images when the
    model is a pair's query tower (None: one tower does both)."""

    query: Embedder | TextEmbedder
    gallery: Embedder | None


def open_towers(
    model: str | os.PathLike[str],
    gallery_model: str | os.PathLike[str] | None = None,
    *,
    device: str = "auto",
    batch_size: int | None = None,
) -> ModelTowers:
    """``model``, and for a pair's query tower its gallery tower (``gallery_model``, or the
    partner file beside it), checked to belong to the same pair.

    Raises:
        DataError: the two models are not one pair.
    """
    options = {} if batch_size is None else {"batch_size": batch_size}
    opened = open_query_embedder(model, device=device, **options)
    pair = opened.pair
    if gallery_model is None and (pair is None or pair.role != "query"):
        return ModelTowers(opened, None)
    assert gallery_model is not None or pair is not None
    path = gallery_model or Path(model).parent / pair.partner_file  # type: ignore[union-attr]
    gallery = Embedder(path, device=device, **options)
    if pair is None or gallery.pair is None or gallery.pair.fingerprint != pair.fingerprint:
        theirs = gallery.pair.fingerprint[:16] if gallery.pair else "none"
        raise DataError(
            f"{path}: not the gallery tower of {model}'s pair (pair "
            f"{pair.fingerprint[:16] if pair else 'none'} against {theirs})"
        )
    return ModelTowers(opened, gallery)


@dataclass
class BuildOutcome:
    """What a build did, and with which engine (a Ray build adds its pool's figures)."""

    report: UpdateReport
    device: str
    ray: dict[str, Any] | None = None


def add_with_tower(
    gallery_dir: str | os.PathLike[str],
    paths: Any,
    model: str | os.PathLike[str] | None = None,
    *,
    device: str = "auto",
    batch_size: int = 32,
    **add_options: Any,
) -> BuildOutcome:
    """Embed ``paths`` with the tower the gallery adds images with (``model``, or the one it
    recorded: a pair's gallery tower) and add them (:meth:`Gallery.add`)."""
    tower = Gallery.query_model(gallery_dir, model, role="gallery")
    with Embedder(tower, device=device, batch_size=batch_size) as embedder:
        report = Gallery.add(gallery_dir, paths, embedder, **add_options)
        return BuildOutcome(report, embedder.device)


#: The folder inside a gallery where a Ray build commits its finished parts (resumable).
RAY_PARTS_DIR = ".ray-parts"


def ray_parts_dir(gallery_dir: str | os.PathLike[str]) -> Path:
    """Where a Ray build commits its parts: inside a gallery folder; beside a Milvus Lite file
    (``PATH.db.ray-parts``), or in the working folder for a server (``COLLECTION.ray-parts``)."""
    if is_milvus(gallery_dir):
        location = parse_location(gallery_dir)
        assert not isinstance(location, Path)
        return Path((location.uri if location.lite else location.collection) + RAY_PARTS_DIR)
    return Path(gallery_dir) / RAY_PARTS_DIR


def verify_with_model(
    gallery_dir: str | os.PathLike[str], *, check_files: bool = True, device: str = "auto"
) -> VerifyReport:
    """``Gallery.verify``; a Milvus gallery also embeds a sample of its items again with its own
    model (when the file is on this machine) and compares them with the stored vectors."""
    if not is_milvus(gallery_dir):
        return Gallery.verify(gallery_dir, check_files=check_files)
    try:
        tower = Gallery.query_model(gallery_dir, role="gallery")
    except GalleryError:  # no gallery, or its model is elsewhere: verify says which
        return Gallery.verify(gallery_dir, check_files=check_files)
    with Embedder(tower, device=device) as embedder:
        return Gallery.verify(gallery_dir, check_files=check_files, embedder=embedder)


def build_with_engine(
    image_dir: str | os.PathLike[str],
    model: str | os.PathLike[str],
    gallery_dir: str | os.PathLike[str],
    *,
    engine: str = "local",
    device: str = "auto",
    batch_size: int = 32,
    commit_every: int | None = None,
    ray: dict[str, Any] | None = None,
    **build_options: Any,
) -> BuildOutcome:
    """Build or update ``gallery_dir`` with a local or a Ray embedder (``engine``).

    The Ray path owns its parts folder (``gallery_dir/.ray-parts``): a killed build leaves it
    for the next run to resume from, a published gallery removes it. Its cluster also runs the
    parts of an on-disk index merge, handed to the index explicitly.

    Args:
        ray: RayEmbedder options (address, actors, cpus_per_actor, gpus_per_actor, part_size).
        build_options: :meth:`Gallery.build`'s (index, memory_budget, min_recall, ...).
    """
    gallery_dir = Path(gallery_dir)
    if is_export(image_dir):  # a Parquet export: its vectors as they are; the model binds only
        with Embedder(model, device="cpu", batch_size=1) as embedder:
            report = build_from_export(image_dir, embedder, gallery_dir, **build_options)
            return BuildOutcome(report, f"{embedder.device}, vectors from the export")
    if engine == "local":
        with Embedder(model, device=device, batch_size=batch_size) as embedder:
            report = Gallery.build(
                image_dir, embedder, gallery_dir, commit_every=commit_every or 1000, **build_options
            )
            return BuildOutcome(report, embedder.device)
    from siamese.engine.ray_pool import RayEmbedder

    pool = RayEmbedder(
        model, ray_parts_dir(gallery_dir), device=device, batch_size=batch_size, **(ray or {})
    )
    with pool:
        chunk = commit_every or max(1000, pool.suggested_chunk)
        report = Gallery.build(
            image_dir,
            pool,
            gallery_dir,
            commit_every=chunk,
            part_runner=pool.run_tasks,
            **build_options,
        )
        stats = pool.stats.to_dict()
    # Published: the parts of this build, or of an earlier killed one, are in the gallery now.
    shutil.rmtree(ray_parts_dir(gallery_dir), ignore_errors=True)
    return BuildOutcome(report, f"ray ({pool.device})", stats)
