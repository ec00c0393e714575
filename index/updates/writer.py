"""A gallery's single writer: holds the lock and current index, stages items, publishes generations.

Publishing generation G+1: write ``index.<G+1>.faiss`` (temp file, fsync, rename, directory
fsync), mark the staged and removed items as of G+1 in SQLite (one transaction), then replace
manifest.json (the commit point). A writer opening a gallery first undoes whatever an
interrupted writer did after the last manifest: marks go back to staged, stray files go.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import faiss
import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError, RecallTooLowError, named
from siamese.core.files import fsync_dir
from siamese.index.ondisk import build as ondisk
from siamese.index.ondisk.files import is_ondisk
from siamese.index.search import faiss_index as fx
from siamese.index.search.recall import DEFAULT_TARGET, Recall, RecallProbe, tune
from siamese.index.store.crash_points import reached
from siamese.index.store.gallery_files import index_file_name, load_published_index, remove_debris
from siamese.index.store.item_store import (
    EMPTY_FINGERPRINT,
    combine_fingerprint,
    refuse_edited_rows,
)
from siamese.index.store.item_writer import ItemWriter, NewItem
from siamese.index.store.lock import WriterLock, is_locked
from siamese.index.store.manifest import ITEMS_FILE, MANIFEST_FILE, Manifest, now_iso

#: Recall is measured again once the gallery has grown or shrunk by this share since its figure.
_RECALL_STALE_AFTER = 0.10


@dataclass(frozen=True)
class RecallPolicy:
    """How a publish checks an approximate index against exact search."""

    measure: bool = True
    target: float = DEFAULT_TARGET
    minimum: float | None = None
    queries: int = 1000


@final  # not meant for subclassing, so __enter__ returns exactly a GalleryWriter
class GalleryWriter:
    """Writes one gallery; use :meth:`open` or :meth:`create`, then :meth:`close` (or ``with``)."""

    def __init__(
        self, gallery_dir: Path, lock: WriterLock, manifest: Manifest, items: ItemWriter
    ) -> None:
        self.gallery_dir = gallery_dir
        self.lock = lock
        self.manifest = manifest
        self.items = items
        self._index: faiss.Index | None = None
        self.last_recall: Recall | None = None
        #: Items withdrawn by this writer's publishes (removed, replaced, or repaired duplicates).
        self.removed_count = 0
        #: Where the parts of an on-disk merge run (None: local processes); see ondisk.PartRunner.
        self.part_runner: ondisk.PartRunner | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, gallery_dir: str | os.PathLike[str]) -> GalleryWriter:
        """Lock an existing gallery for writing and recover from any interrupted writer.

        Raises:
            GalleryLockedError: another writer holds the gallery.
            GalleryError: the gallery is damaged (it is then left untouched).
        """
        gallery_dir = Path(gallery_dir)
        Manifest.read(
            gallery_dir
        )  # a clear error for a missing or foreign folder, before locking it
        lock = WriterLock(gallery_dir).acquire()
        items: ItemWriter | None = None
        try:
            manifest = Manifest.read(gallery_dir)
            items = ItemWriter(gallery_dir / manifest.items_file)
            if items.meta("gallery_id") != manifest.gallery_id:
                raise GalleryError(
                    f"{gallery_dir / manifest.items_file}: belongs to another gallery than "
                    f"{gallery_dir / MANIFEST_FILE}"
                )
            writer = cls(gallery_dir, lock, manifest, items)
            writer._index = writer._load_index()  # checks the checksum before anything is changed
            refuse_edited_rows(
                items.path, items.fingerprint(manifest.generation), manifest.items_fingerprint
            )
            items.roll_back_after(manifest.generation)
            items.drop_removed_vectors(manifest.generation)
            remove_debris(gallery_dir, manifest)
            return writer
        except BaseException:
            if items is not None:
                items.close()
            lock.release()
            raise

    @classmethod
    def create(
        cls,
        gallery_dir: str | os.PathLike[str],
        *,
        dimension: int,
        model_fingerprint: str,
        model_path: str,
        index_type: str = fx.DEFAULT_INDEX,
        search_params: dict[str, int] | None = None,
        pair: dict[str, Any] | None = None,
    ) -> GalleryWriter:
        """Create an empty gallery (generation 0) and lock it for writing.

        ``pair``: the manifest's pair record when ``model_path`` is a pair's gallery tower.

        It is assembled in a hidden sibling folder and renamed into place, so ``gallery_dir`` is
        either absent or a complete gallery, even if the process is killed meanwhile.

        Raises:
            GalleryError: ``gallery_dir`` exists and is not empty, or the index type is invalid.
        """
        gallery_dir = Path(gallery_dir)
        index = fx.new_index(dimension, index_type)
        fx.search_parameters(
            index, search_params
        )  # refuse a parameter the type lacks before creating anything
        gallery_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_creations(gallery_dir)
        staging = gallery_dir.parent / f".{gallery_dir.name}.creating-{uuid.uuid4().hex[:12]}"
        staging.mkdir()  # not mkdtemp: the gallery folder gets the usual permissions
        lock = WriterLock(staging).acquire()
        try:
            gallery_id = uuid.uuid4().hex
            ItemWriter.create(staging / ITEMS_FILE, gallery_id, dimension).close()
            digest, size = fx.write_index(index, staging / index_file_name(0))
            manifest = Manifest(
                gallery_id=gallery_id,
                generation=0,
                model_fingerprint=model_fingerprint,
                model_path=model_path,
                dimension=dimension,
                metric=fx.METRIC,
                index_type=index_type,
                faiss_factory=fx.faiss_factory(index_type),
                index_file=index_file_name(0),
                index_sha256=digest,
                index_bytes=size,
                items_fingerprint=EMPTY_FINGERPRINT,
                count=0,
                identities=0,
                created=now_iso(),
                search_params=dict(search_params or {}),
                pair=pair,
            )
            manifest.write(staging)
            try:
                os.rename(
                    staging, gallery_dir
                )  # replaces an empty folder; fails on a non-empty one
            except OSError:
                raise GalleryError(
                    f"{gallery_dir}: folder holds other files and is not a gallery; choose an "
                    "empty or new folder"
                ) from None
            fsync_dir(gallery_dir.parent)
        except BaseException:
            lock.release()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        lock.path = gallery_dir / lock.path.name
        writer = cls(gallery_dir, lock, manifest, ItemWriter(gallery_dir / ITEMS_FILE))
        writer._index = index
        return writer

    def close(self) -> None:
        """Release the database and the lock."""
        try:
            self.items.close()
        finally:
            self.lock.release()

    def __enter__(self) -> GalleryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state
    @property
    def dimension(self) -> int:
        """Embedding dimension."""
        return self.manifest.dimension

    def _load_index(self) -> faiss.Index:
        try:
            return load_published_index(self.gallery_dir, self.manifest)
        except FileNotFoundError as exc:
            missing = exc.filename or self.gallery_dir / self.manifest.index_file
            raise GalleryError(f"{missing}: missing; the gallery is incomplete") from None

    @property
    def index(self) -> faiss.Index:
        """The index of the current generation, in memory."""
        if self._index is None:
            self._index = self._load_index()
        return self._index

    def stage_embeddings(
        self,
        vectors: NDArray[np.float32],
        paths: Sequence[str],
        identities: Sequence[str],
        sha256s: Sequence[str] | None = None,
    ) -> None:
        """Stage embeddings computed elsewhere (a distributed job, a benchmark).

        :meth:`publish` makes them visible.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if (
            vectors.ndim != 2
            or vectors.shape[1] != self.dimension
            or not len(vectors) == len(paths) == len(identities)
        ):
            raise GalleryError(
                f"expected {len(paths)} vectors of dimension {self.dimension} for {len(paths)} "
                f"paths, got shape {vectors.shape}"
            )
        hashes = sha256s or [""] * len(paths)
        self.items.stage(
            [
                NewItem(str(p), str(i), h, 0, 0, v)
                for p, i, h, v in zip(paths, identities, hashes, vectors)
            ]
        )

    def needs_repair(self) -> bool:
        """Whether newer rows of their path supersede published rows (a publish withdraws them)."""
        return bool(self.items.superseded())

    def can_publish_incrementally(self) -> bool:
        """Whether staged items can be published now without training (the index is trained)."""
        return bool(self.index.is_trained)

    # ---------------------------------------------------------------- publishing
    def publish(
        self,
        *,
        removed: NDArray[np.int64] | list[int] = (),
        index_type: str | None = None,
        search_params: dict[str, int] | None = None,
        recall: RecallPolicy = RecallPolicy(),
    ) -> Manifest:
        """Publish the next generation: staged items added, ``removed`` ids gone.

        A new ``index_type`` rebuilds the index as that type.

        Published rows that a staged row of the same path replaces are withdrawn too (whichever
        run staged the replacement), as are older duplicates of a path: one path, one item.

        Raises:
            GalleryError: too few vectors to train the index type.
            RecallTooLowError: the index misses ``recall.minimum``; nothing is published.
        """
        asked = np.asarray(removed, dtype=np.int64)
        removed = np.unique(
            np.asarray(self.items.published_among(asked) + self.items.superseded(), np.int64)
        )
        new_type = index_type or self.manifest.index_type
        generation = self.manifest.generation + 1
        built: ondisk.Built | None = None
        try:
            index, source, staged_ids, built = self._build_next(new_type, removed, generation)
            expected = self.manifest.count - len(removed) + len(staged_ids)
            if index.ntotal != expected:
                raise GalleryError(
                    f"{self.gallery_dir}: index would hold {index.ntotal} vectors, items "
                    f"{expected}; nothing published"
                )
            params, measured = self._check_recall(index, new_type, source, search_params, recall)
            index_file, digest, size, parts = self._write_index_file(index, built, generation)
            reached("index-written")
            fingerprint = combine_fingerprint(
                self.manifest.items_fingerprint,
                self.items.rows(staged_ids),
                self.items.rows(removed),
            )
            count, identities = self.items.publish(generation, removed)
            manifest = self.manifest.next(
                index_type=new_type,
                faiss_factory=fx.faiss_factory(new_type),
                index_file=index_file,
                index_sha256=digest,
                index_bytes=size,
                items_fingerprint=fingerprint,
                count=count,
                identities=identities,
                search_params=params,
                recall=measured,
                parts=parts,
            )
            manifest.write(self.gallery_dir)  # the commit point
        except BaseException as exc:
            self._index = (
                None  # may have been changed in place: reload the published one if needed again
            )
            if built is not None and isinstance(exc, Exception):  # refused, not killed: tidy up
                remove_debris(self.gallery_dir, self.manifest)
            raise
        finally:
            if built is not None:
                built.cleanup()
        self.manifest, self._index = manifest, index
        self.removed_count += len(removed)
        reached("published")
        remove_debris(self.gallery_dir, manifest)
        self.items.drop_removed_vectors(generation)
        return manifest

    def _build_next(
        self, new_type: str, removed: NDArray[np.int64], generation: int
    ) -> tuple[faiss.Index, Any, NDArray[np.int64], ondisk.Built | None]:
        """The next generation's index, its recall source, the staged ids it adds, and the
        on-disk build behind it (None for an index in one file)."""
        if is_ondisk(new_type):  # built in parts and merged on disk, or updated beside that
            staged_ids = self.items.staged_ids()
            built = self._next_ondisk(new_type, removed, staged_ids, generation)
            return built.index, built.source, staged_ids, built
        staged_ids, staged_vectors = self.items.staged(self.dimension)
        index, source = self._next_index(new_type, removed, staged_ids, staged_vectors)
        return index, source, staged_ids, None

    def _write_index_file(
        self, index: faiss.Index, built: ondisk.Built | None, generation: int
    ) -> tuple[str, str, int, list[dict[str, Any]] | None]:
        """(file name, sha256, bytes, on-disk parts) of the generation's index, written."""
        if built is None:
            index_file = index_file_name(generation)
            digest, size = fx.write_index(index, self.gallery_dir / index_file)
            return index_file, digest, size, None
        parts = [part.to_dict() for part in built.parts]
        return built.header, built.header_sha256, built.header_bytes, parts

    def _next_index(
        self,
        index_type: str,
        removed: NDArray[np.int64],
        staged_ids: NDArray[np.int64],
        staged_vectors: NDArray[np.float32],
    ) -> tuple[faiss.Index, tuple[NDArray[np.int64], NDArray[np.float32]] | None]:
        """The current index changed in place, or a new one built from the stored vectors.

        With a new index come the (ids, vectors) it was built from, else None.
        """
        if index_type == self.manifest.index_type and self.index.is_trained:
            index = self.index
            if not len(removed) or fx.remove_ids(index, removed):
                fx.add_vectors(index, staged_vectors, staged_ids)
                return index, None
        live_ids, live_vectors = self.items.published_vectors(self.dimension)
        keep = ~np.isin(live_ids, removed)
        ids = np.concatenate([live_ids[keep], staged_ids])
        vectors = np.concatenate([live_vectors[keep], staged_vectors])
        del live_ids, live_vectors  # large galleries: hold one copy of the vectors, not two
        index = fx.new_index(self.dimension, index_type)
        if not index.is_trained:
            needed = fx.min_training_vectors(index)
            if len(ids) < needed:
                raise GalleryError(
                    f"index type {index_type} needs at least {needed} vectors to train, the "
                    f"gallery has {len(ids)}; choose a smaller index (or {named('index')} auto)"
                )
            sample = np.random.default_rng(0).choice(
                len(ids), size=fx.training_sample_size(index, len(ids)), replace=False
            )
            fx.train(index, vectors[np.sort(sample)])
        fx.add_vectors(index, vectors, ids)
        return index, (ids, vectors)

    def _next_ondisk(
        self,
        index_type: str,
        removed: NDArray[np.int64],
        staged_ids: NDArray[np.int64],
        generation: int,
    ) -> ondisk.Built:
        """The next on-disk generation: the added part and removed ids updated, or a new merge."""
        if index_type == self.manifest.index_type and self.manifest.parts is not None:
            updated = ondisk.update(
                self.gallery_dir,
                self.manifest,
                removed,
                staged_ids,
                lambda: self.items.staged(self.dimension),
                generation,
            )
            if updated is not None:
                return updated
        live = self.manifest.count - len(removed) + len(staged_ids)
        return ondisk.merge(
            self.gallery_dir,
            self.items,
            index_type,
            removed,
            generation,
            self.dimension,
            trained=ondisk.reusable_quantizer(self.gallery_dir, self.manifest, index_type, live),
            runner=self.part_runner,
        )

    def _check_recall(
        self,
        index: faiss.Index,
        index_type: str,
        source: tuple[NDArray[np.int64], NDArray[np.float32]] | None,
        search_params: dict[str, int] | None,
        policy: RecallPolicy,
    ) -> tuple[dict[str, int], dict[str, Any] | None]:
        """The search parameters to store and the recall figure, measured when due.

        Recall below the policy's minimum is refused (RecallTooLowError).
        """
        fx.search_parameters(index, search_params)  # refuse a parameter this type lacks
        params = dict(
            search_params
            if search_params is not None
            else self.manifest.search_params
            if index_type == self.manifest.index_type
            else {}
        )
        previous = self.manifest.recall if index_type == self.manifest.index_type else None
        if fx.is_exact(index_type) or index.ntotal < 2:
            return params, {
                "at1": 1.0,
                "at10": 1.0,
                "queries": 0,
                "params": {},
                "count": int(index.ntotal),
                "exact": fx.is_exact(index_type),
            }
        stale = previous is None or abs(
            index.ntotal - previous["count"]
        ) > _RECALL_STALE_AFTER * max(previous["count"], 1)
        if not (
            policy.measure
            and (
                source is not None
                or stale
                or search_params is not None
                or policy.minimum is not None
            )
        ):
            return params, previous
        if is_ondisk(index_type) and source is not None:  # the merge's vectors, memory-mapped
            probe = RecallProbe(source[1], source[0], queries=policy.queries)
        else:
            ids = fx.index_ids(index)
            probe = RecallProbe(self._vectors_of(ids, source), ids, queries=policy.queries)
        measured = (
            probe.score(index, params)
            if search_params is not None
            else tune(index, probe, max(policy.target, policy.minimum or 0.0))
        )
        self.last_recall = measured
        if policy.minimum is not None and measured.at10 < policy.minimum:
            knob = f" even with {measured.params}" if measured.params else ""
            raise RecallTooLowError(
                f"{index_type}: recall@10 {measured.at10:.3f} against exact search{knob} "
                f"is below the minimum asked for ({named('min_recall')} {policy.minimum}); "
                "nothing was published (the embeddings are kept: try another index type, "
                f"{named('index')})"
            )
        return measured.params, {**measured.to_dict(), "count": int(index.ntotal), "exact": False}

    def _vectors_of(
        self, ids: NDArray[np.int64], source: tuple[NDArray[np.int64], NDArray[np.float32]] | None
    ) -> NDArray[np.float32]:
        """Stored embeddings aligned with ``ids``.

        They come from ``source`` (ids, vectors) when given, else from the database.
        """
        if source is None:
            live_ids, live_vectors = self.items.published_vectors(self.dimension)
            staged_ids, staged_vectors = self.items.staged(self.dimension)
            source = (
                np.concatenate([live_ids, staged_ids]),
                np.concatenate([live_vectors, staged_vectors]),
            )
            del live_vectors, staged_vectors
        all_ids, all_vectors = source
        order = np.argsort(all_ids)
        positions = order[np.searchsorted(all_ids[order], ids)]
        return all_vectors[positions]


def _remove_abandoned_creations(gallery_dir: Path) -> None:
    """Delete hidden half-created siblings of ``gallery_dir`` left by a killed `index build`."""
    for leftover in gallery_dir.parent.glob(f".{gallery_dir.name}.creating-*"):
        if leftover.is_dir() and not is_locked(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
