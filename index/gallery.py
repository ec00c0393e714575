"""A gallery directory: FAISS index + SQLite items + manifest, built from images, searched by embedding."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from siamese.errors import GalleryError, ModelMismatchError
from siamese.image_folder import scan_image_folder
from siamese.index.faiss_index import DEFAULT_FACTORY, METRIC, add_vectors, new_index, read_index, search, write_index
from siamese.index.item_store import ItemStore, write_items
from siamese.index.manifest import MANIFEST_FILE, Manifest, now_iso
from siamese.index.results import IdentityMatch, Item, Match, QueryResult
from siamese.io import fsync_dir, sha256_file
from siamese.progress import progress_bar

if TYPE_CHECKING:
    from siamese.engine.embedder import Embedder

#: Identities are ranked from this many times k nearest items, so k distinct identities are usually found.
_IDENTITY_WIDEN = 10


@dataclass
class BuildReport:
    """Outcome of a gallery build."""

    gallery_dir: Path
    count: int
    identities: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "gallery": str(self.gallery_dir),
            "count": self.count,
            "identities": self.identities,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.count / self.seconds, 1) if self.seconds else None,
        }


def short(fingerprint: str) -> str:
    """The first 16 hex digits of a fingerprint, enough to tell models apart in messages."""
    return fingerprint[:16]


def _publish(gallery_dir: Path, manifest_fields: dict[str, Any], index, items: list[Item], previous: Manifest | None) -> Manifest:
    """Write a new generation of files, then the manifest that switches to them, then drop the old."""
    generation = (previous.generation + 1) if previous else 1
    index_file, items_file = f"index.{generation:06d}.faiss", f"items.{generation:06d}.sqlite"
    for name in (index_file, items_file):  # leftovers of a crashed attempt at this generation
        (gallery_dir / name).unlink(missing_ok=True)
    write_index(index, gallery_dir / index_file)
    write_items(gallery_dir / items_file, items)
    with open(gallery_dir / items_file, "rb+") as handle:
        os.fsync(handle.fileno())
    fsync_dir(gallery_dir)
    manifest = Manifest(
        generation=generation,
        index_file=index_file,
        index_sha256=sha256_file(gallery_dir / index_file),
        items_file=items_file,
        count=len(items),
        identities=len({item.identity for item in items}),
        created=now_iso(),
        **manifest_fields,
    )
    manifest.write(gallery_dir)
    if previous:
        for name in (previous.index_file, previous.items_file):
            if name not in (index_file, items_file):
                (gallery_dir / name).unlink(missing_ok=True)
    return manifest


class Gallery:
    """An opened gallery: search it with embeddings from the model it was built with."""

    def __init__(self, gallery_dir: Path, manifest: Manifest, index, items: ItemStore) -> None:
        self.gallery_dir = gallery_dir
        self.manifest = manifest
        self.index = index
        self.items = items

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        image_dir: str | os.PathLike[str],
        embedder: Embedder,
        gallery_dir: str | os.PathLike[str],
        *,
        factory: str = DEFAULT_FACTORY,
        progress: bool = False,
    ) -> BuildReport:
        """Embed every image of an ImageFolder (or loose files) into a new gallery at ``gallery_dir``.

        Undecodable images are reported in the result and skipped. An existing gallery there is
        replaced atomically; a folder that holds other files is refused.

        Raises:
            DataError: no images in ``image_dir``.
            GalleryError: ``gallery_dir`` is a non-gallery folder, or nothing could be embedded.
        """
        started = time.perf_counter()
        gallery_dir = Path(gallery_dir)
        labelled = scan_image_folder(image_dir, loose_files=True)
        previous = cls._previous_manifest(gallery_dir)
        index = new_index(embedder.dim, factory)
        identity_of = {os.fspath(item.path): item.identity for item in labelled}
        items: list[Item] = []
        failures: list[tuple[str, str]] = []
        with progress_bar("indexing", len(labelled), progress) as ticker:
            for batch in embedder.iter_embed_paths(identity_of):
                ids = np.arange(len(items), len(items) + len(batch.paths), dtype=np.int64)
                add_vectors(index, batch.embeddings, ids)
                for item_id, path in zip(ids, batch.paths):
                    items.append(Item(int(item_id), str(Path(path).resolve()), identity_of[path], sha256_file(path)))
                failures.extend(batch.failures)
                ticker.advance(len(batch.paths) + len(batch.failures))
        if not items:
            raise GalleryError(f"{image_dir}: none of the {len(labelled)} images could be decoded; nothing to index")
        gallery_dir.mkdir(parents=True, exist_ok=True)
        fields = {
            "model_fingerprint": embedder.fingerprint,
            "model_path": str(embedder.model_path.resolve()),
            "dimension": embedder.dim,
            "metric": METRIC,
            "faiss_factory": factory,
        }
        manifest = _publish(gallery_dir, fields, index, items, previous)
        return BuildReport(gallery_dir, manifest.count, manifest.identities, failures, time.perf_counter() - started)

    @staticmethod
    def _previous_manifest(gallery_dir: Path) -> Manifest | None:
        if not gallery_dir.exists():
            return None
        if not gallery_dir.is_dir():
            raise GalleryError(f"{gallery_dir}: exists and is a file; choose another --out folder")
        if (gallery_dir / MANIFEST_FILE).exists():
            return Manifest.read(gallery_dir)
        if any(not p.name.startswith(".") for p in gallery_dir.iterdir()):
            raise GalleryError(f"{gallery_dir}: folder holds other files and is not a gallery; choose an empty or new --out folder")
        return None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, gallery_dir: str | os.PathLike[str], *, model_fingerprint: str | None = None, model_name: str = "the model") -> Gallery:
        """Open a gallery, verifying its files and (when given) the model it must be searched with.

        Raises:
            GalleryError: missing or damaged files.
            ModelMismatchError: ``model_fingerprint`` differs from the model the gallery was built with.
        """
        gallery_dir = Path(gallery_dir)
        manifest = Manifest.read(gallery_dir)
        if model_fingerprint is not None and model_fingerprint != manifest.model_fingerprint:
            raise ModelMismatchError(
                f"{gallery_dir}: built with model {short(manifest.model_fingerprint)} but {model_name} is "
                f"{short(model_fingerprint)}; query with the gallery's model or rebuild the gallery with this one"
            )
        index_path, items_path = gallery_dir / manifest.index_file, gallery_dir / manifest.items_file
        for path in (index_path, items_path):
            if not path.is_file():
                raise GalleryError(f"{path}: missing; the gallery is incomplete, rebuild it with `siamese index build`")
        if sha256_file(index_path) != manifest.index_sha256:
            raise GalleryError(f"{index_path}: checksum does not match manifest.json; the index file is damaged, rebuild the gallery")
        index = read_index(index_path)
        if index.d != manifest.dimension or index.ntotal != manifest.count:
            raise GalleryError(f"{index_path}: holds {index.ntotal} vectors of dimension {index.d}, manifest says {manifest.count} of {manifest.dimension}")
        items = ItemStore(items_path)
        if items.count() != manifest.count:
            items.close()
            raise GalleryError(f"{items_path}: holds {items.count()} items, manifest says {manifest.count}")
        return cls(gallery_dir, manifest, index, items)

    def close(self) -> None:
        """Release the item database."""
        self.items.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model_path(self) -> Path:
        """The model file the gallery was built with (as recorded at build time)."""
        return Path(self.manifest.model_path)

    def __len__(self) -> int:
        return self.manifest.count

    # ---------------------------------------------------------------- searching
    def search(self, embeddings: NDArray[np.float32], k: int = 5) -> list[QueryResult]:
        """The k nearest items of each query embedding, and the identities ranked by closest item.

        k larger than the gallery returns every item; never a placeholder.
        """
        if k < 1:
            raise GalleryError(f"k must be at least 1, got {k}")
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if queries.shape[1] != self.manifest.dimension:
            raise ModelMismatchError(f"query embeddings have dimension {queries.shape[1]}, gallery {self.gallery_dir} holds {self.manifest.dimension}")
        distances, ids = search(self.index, queries, k * _IDENTITY_WIDEN)
        items = self.items.get(ids[ids >= 0].tolist())
        results = []
        for row_distances, row_ids in zip(distances, ids):
            neighbours = [Match(int(i), items[i].identity, items[i].path, float(d)) for d, i in zip(row_distances, row_ids) if i in items]
            ranked: dict[str, IdentityMatch] = {}
            for match in neighbours:
                if match.identity not in ranked:
                    ranked[match.identity] = IdentityMatch(match.identity, match.distance, match.id, match.path)
            results.append(QueryResult(neighbours[:k], list(ranked.values())[:k]))
        return results

    def info(self) -> dict[str, Any]:
        """Manifest facts plus per-identity counts (for `siamese info`)."""
        counts = self.items.identity_counts()
        return {"gallery": str(self.gallery_dir), **self.manifest.to_dict(), "identity_counts": counts}
