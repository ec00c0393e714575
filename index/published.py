"""A gallery directory opened for searching: one published generation of index and items.

This is the reading half of :class:`siamese.index.Gallery`, kept below the modules that write
(:mod:`~siamese.index.updates.operations`, :mod:`~siamese.index.verify`) so that they can open a
gallery
without importing the public class that drives them: imports in index/ go one way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError, ModelMismatchError, named
from siamese.index.search import faiss_index as fx
from siamese.index.search.filters import Where, as_where
from siamese.index.search.results import Item, Match, QueryResult
from siamese.index.store.gallery_files import load_published_index
from siamese.index.store.item_store import ItemStore
from siamese.index.store.items_check import check_item_rows
from siamese.index.store.lock import is_locked
from siamese.index.store.manifest import MANIFEST_FILE, Manifest
from siamese.index.updates.uploads import forget_uploads

#: Identities are ranked from this many times k nearest items, so k distinct ones are usually found.
_IDENTITY_WIDEN = 10
#: A writer may publish (and delete the old index file) between reading the manifest and the index.
_OPEN_ATTEMPTS = 5
#: A filtered search an approximate index answered short is redone exactly up to this many matches.
EXACT_FILTER_SCAN = 200_000
#: Filters whose matching ids a reader keeps (all are forgotten when one more comes).
SELECTIONS_KEPT = 32

_Opened = TypeVar("_Opened", bound="GalleryReader")


def short_fingerprint(fingerprint: str) -> str:
    """The first 16 hex digits of a fingerprint, enough to tell models apart in messages."""
    return fingerprint[:16]


def refuse_other_model(
    gallery_dir: Path,
    manifest: Manifest,
    fingerprint: str,
    model_name: str,
    pair: Any = None,
) -> None:
    """Raise ModelMismatchError naming both models unless ``fingerprint`` is the gallery's model.

    A gallery built with a pair's gallery tower also accepts that pair's query tower: ``pair``
    (the query model's :class:`~siamese.contracts.pair_card.PairInfo`, or None) must then have the
    query
    role and the pair fingerprint the manifest recorded.
    """
    if fingerprint == manifest.model_fingerprint:
        return
    recorded = manifest.pair
    if recorded is None:
        raise ModelMismatchError(
            f"{gallery_dir}: built with model {short_fingerprint(manifest.model_fingerprint)} but "
            f"{model_name} is {short_fingerprint(fingerprint)}; use the gallery's model, "
            "or build a new gallery with this one"
        )
    if pair is not None and pair.role == "query" and pair.fingerprint == recorded["fingerprint"]:
        return
    theirs = (
        f"the {pair.role} tower of pair {short_fingerprint(pair.fingerprint)}"
        if pair is not None
        else f"model {short_fingerprint(fingerprint)}, not part of a pair"
    )
    raise ModelMismatchError(
        f"{gallery_dir}: built with the gallery tower of pair "
        f"{short_fingerprint(recorded['fingerprint'])} but {model_name} is {theirs}; query with "
        f"the pair's query tower ({recorded.get('query_model', '?')}) or build a new gallery"
    )


def gallery_model_path(
    gallery_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    *,
    role: str = "query",
) -> Path:
    """The model to embed queries with: ``model``, or the one the gallery recorded.

    A pair's gallery records its query tower: that is the query model (the gallery tower itself
    is still accepted when given as ``model``). ``role="gallery"``: the model that embeds images
    added to the gallery, the gallery's own (a pair's gallery tower).

    Raises:
        GalleryError: no model given and the recorded one is gone (or the folder is not a gallery).
    """
    if model is not None:
        return Path(model)
    gallery_dir = Path(gallery_dir)
    manifest = Manifest.read(gallery_dir)
    query_side = manifest.pair is not None and role == "query"
    recorded = Path(manifest.pair["query_model"] if query_side else manifest.model_path)
    if not recorded.is_file():
        raise GalleryError(
            f"{gallery_dir}: was built with {recorded}, which is no longer there; name the model "
            f"({named('model')} PATH)"
        )
    return recorded


_Reader = TypeVar("_Reader", bound="RecordedReader")


class RecordedReader:
    """What an opened gallery offers from its record, whatever holds its vectors.

    The model it was built with, the generation it reads, the "unknown" threshold, use as a
    context manager and the cleaning of stored uploads: the same for a folder
    (:class:`GalleryReader`) and a Milvus collection (index/milvus/reader.py).
    """

    manifest: Manifest

    def _keep_record(self, manifest: Manifest) -> None:
        self.manifest = manifest
        #: Distance beyond which a query is "unknown": the stored calibration; set None (or
        #: another value) to override.
        self.threshold: float | None = (
            manifest.threshold["distance"] if manifest.threshold else None
        )

    def close(self) -> None:
        """Release what the reader holds (nothing, unless a backend says otherwise)."""

    def __enter__(self: _Reader) -> _Reader:  # noqa: PYI019 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model_path(self) -> Path:
        """The model file the gallery was built with (as recorded at build time)."""
        return Path(self.manifest.model_path)

    @property
    def generation(self) -> int:
        """The finished update this reader reads (it never changes under it)."""
        return self.manifest.generation

    def items_at(self, paths: Sequence[str]) -> list[Item]:
        """The items recorded at these (canonical) paths."""
        raise NotImplementedError

    def forget_uploads(self, candidates: Sequence[Path]) -> int:
        """Delete the stored uploads among ``candidates`` that this generation no longer holds.

        Call it on the generation published by a removal (see ``Gallery.stored_uploads`` for the
        candidates, listed before removing); returns how many files were deleted.
        """
        referenced = {item.path for item in self.items_at([str(p) for p in candidates])}
        return forget_uploads(list(candidates), referenced)


class GalleryReader(RecordedReader):
    """An opened gallery: search it with embeddings from the model it was built with."""

    def __init__(
        self,
        gallery_dir: Path,
        manifest: Manifest,
        index: faiss.Index,
        items: ItemStore,
        search_params: dict[str, int],
    ) -> None:
        self.gallery_dir = gallery_dir
        self.index = index
        self.items = items
        self.search_params = search_params
        self._params = fx.search_parameters(index, search_params)
        #: Recent filters' matching ids and their FAISS selector, by expression: this generation's
        #: items never change, and a served filter is asked again and again.
        self._selections: dict[str, tuple[NDArray[np.int64], Any]] = {}
        self._keep_record(manifest)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(  # noqa: PYI019 (typing.Self needs Python 3.11)
        cls: type[_Opened],
        gallery_dir: str | os.PathLike[str],
        *,
        model_fingerprint: str | None = None,
        model_name: str = "the model",
        model_pair: Any = None,
        mmap: bool = False,
        search_params: dict[str, int] | None = None,
    ) -> _Opened:
        """Open the gallery's published generation, verifying its files and (when given) the model.

        Checked before anything is served: the manifest's checksum, the index file's size and
        checksum, the counts, and the items fingerprint over every published row (id, path,
        identity, content hash), so an edited item row is refused, not served as right. The
        rows' check is skipped when the item database is unchanged since it last passed
        (:mod:`~siamese.index.store.items_check`), so opening a large gallery does not read every
        row.

        Args:
            gallery_dir: the gallery folder.
            model_fingerprint: sha256 of the model that will embed queries; refused if it differs.
            model_name: how to name that model in errors.
            model_pair: the query model's pair record (``Embedder.pair``): a pair's query tower
                is accepted by a gallery built with the same pair's gallery tower.
            mmap: memory-map the index instead of reading it into memory (large IVF and flat
                indexes).
            search_params: override the stored search parameters, e.g. {"nprobe": 32} or
                {"efSearch": 128}.

        Raises:
            GalleryError: missing or damaged files, or a search parameter the index lacks.
            ModelMismatchError: ``model_fingerprint`` differs from the model the gallery was built
                with.
        """
        gallery_dir = Path(gallery_dir)
        for attempt in range(_OPEN_ATTEMPTS):
            manifest = Manifest.read(gallery_dir)
            if model_fingerprint is not None:
                refuse_other_model(gallery_dir, manifest, model_fingerprint, model_name, model_pair)
            try:
                index = load_published_index(gallery_dir, manifest, mmap=mmap)
                break
            except FileNotFoundError as exc:
                if (
                    attempt + 1 < _OPEN_ATTEMPTS
                    and Manifest.read(gallery_dir).generation != manifest.generation
                ):
                    continue  # a writer published a newer generation meanwhile: open that one
                missing = exc.filename or gallery_dir / manifest.index_file  # or an on-disk part
                raise GalleryError(f"{missing}: missing; the gallery is incomplete") from None
        items = cls._open_items(gallery_dir, manifest, index)
        try:
            return cls(
                gallery_dir,
                manifest,
                index,
                items,
                {**manifest.search_params, **(search_params or {})},
            )
        except BaseException:
            items.close()
            raise

    @staticmethod
    def _open_items(gallery_dir: Path, manifest: Manifest, index: faiss.Index) -> ItemStore:
        items_path = gallery_dir / manifest.items_file
        if not items_path.is_file():
            raise GalleryError(f"{items_path}: missing; the gallery is incomplete")
        items = ItemStore(items_path, manifest.generation)
        try:
            if items.meta("gallery_id") != manifest.gallery_id:
                raise GalleryError(
                    f"{items_path}: belongs to another gallery than {gallery_dir / MANIFEST_FILE}; "
                    "the manifest does not match this folder"
                )
            check_item_rows(gallery_dir, manifest, items, index.ntotal)
        except BaseException:
            items.close()
            raise
        return items

    def close(self) -> None:
        """Release the item database."""
        self.items.close()

    @property
    def faiss_search_parameters(self) -> Any:
        """The SearchParameters :meth:`nearest` passes by default (to time raw FAISS alike)."""
        return self._params

    def __len__(self) -> int:
        return self.manifest.count

    # ---------------------------------------------------------------- searching
    def _queries(self, embeddings: NDArray[np.float32], k: int) -> NDArray[np.float32]:
        if k < 1:
            raise GalleryError(f"k must be at least 1, got {k}")
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if queries.shape[1] != self.manifest.dimension:
            raise ModelMismatchError(
                f"query embeddings have dimension {queries.shape[1]}, gallery {self.gallery_dir} "
                f"holds {self.manifest.dimension}"
            )
        return queries

    def nearest(
        self,
        embeddings: NDArray[np.float32],
        k: int = 5,
        *,
        params: dict[str, int] | None = None,
        threads: int | None = None,
        where: Where | str | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The k nearest item ids of each query and their L2 distances (Q×min(k, len)).

        Where an approximate index found fewer, the rest are -1 and inf. ``params`` overrides search
        parameters for this call; ``threads`` caps FAISS's threads (see
        :func:`siamese.index.search.faiss_index.search`). ``where`` (a filter,
        :func:`~siamese.index.search.filters.parse_where`) ranks only the matching items:
        Q×min(k, matching).

        Raises:
            FilterError: ``where`` does not parse.
        """
        queries = self._queries(embeddings, k)
        where = as_where(where)
        if where is not None:
            return self._nearest_where(queries, k, where, params, threads)
        search_params = (
            self._params
            if params is None
            else fx.search_parameters(self.index, {**self.search_params, **params})
        )
        return fx.search(self.index, queries, k, search_params, threads=threads)

    def _selection(self, where: Where) -> tuple[NDArray[np.int64], Any]:
        """The ids ``where`` selects in this generation and their selector (cached per filter)."""
        known = self._selections.get(where.expression)
        if known is None:
            ids = self.items.ids_where(*where.sql())
            known = (ids, fx.id_selector(ids))
            if len(self._selections) >= SELECTIONS_KEPT:
                self._selections = {}  # rebound, not cleared: a concurrent search keeps its own
            self._selections[where.expression] = known
        return known

    def _nearest_where(
        self,
        queries: NDArray[np.float32],
        k: int,
        where: Where,
        params: dict[str, int] | None,
        threads: int | None,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Search among the items ``where`` selects: FAISS with an id selector over them.

        An approximate index can still come back short of min(k, matching) (IVF lists not
        probed, an HNSW walk that meets few matches); those queries are answered exactly over
        the matching items' stored vectors, when there are few enough of them to scan.
        """
        ids, selector = self._selection(where)
        search_params = fx.search_parameters(
            self.index, {**self.search_params, **(params or {})}, selector=selector
        )
        k = min(k, len(ids))
        distances, found = fx.search(self.index, queries, k, search_params, threads=threads)
        short = np.flatnonzero((found < 0).any(axis=1)) if k else np.zeros(0, np.int64)
        if len(short) and len(ids) <= EXACT_FILTER_SCAN:
            vectors = self.items.vectors(ids, self.manifest.dimension)
            squared, rows = faiss.knn(queries[short], vectors, k)
            distances[short] = np.sqrt(np.maximum(squared, 0.0))
            found[short] = ids[rows]
        return distances, found

    def search(
        self,
        embeddings: NDArray[np.float32],
        k: int = 5,
        *,
        params: dict[str, int] | None = None,
        threads: int | None = None,
        where: Where | str | None = None,
    ) -> list[QueryResult]:
        """The k nearest items of each query embedding, and the identities ranked by closest item.

        k larger than the gallery returns every item; never a placeholder. Each result is marked
        ``unknown`` when its nearest identity lies beyond :attr:`threshold`. ``where`` searches
        only the items a filter selects (see :meth:`nearest`).
        """
        distances, ids = self.nearest(
            embeddings, k * _IDENTITY_WIDEN, params=params, threads=threads, where=where
        )
        items = self.items.get(ids[ids >= 0].tolist())
        results = []
        for row_distances, row_ids in zip(distances, ids):
            neighbours = [
                Match(int(i), items[i].identity, items[i].path, float(d))
                for d, i in zip(row_distances, row_ids)
                if i in items
            ]
            results.append(QueryResult.ranked(neighbours, k, self.threshold))
        return results

    def item(self, item_id: int) -> Item | None:
        """One item by id (None if this generation does not hold it)."""
        return self.items.get([item_id]).get(item_id)

    def count(self, identity: str | None = None) -> int:
        """Items of this generation, or of one identity (0 for an identity it does not hold)."""
        return self.items.count(identity)

    def identity_counts(self) -> dict[str, int]:
        """Items per identity, by identity name."""
        return self.items.identity_counts()

    def items_of(self, identity: str, offset: int = 0, limit: int | None = None) -> list[Item]:
        """One identity's items, in id order, paged."""
        return self.items.of_identity(identity, offset, limit)

    def items_at(self, paths: Sequence[str]) -> list[Item]:
        """The items recorded at these (canonical) paths."""
        return self.items.by_paths(paths)

    def items_with_content(self, sha256s: Sequence[str]) -> list[Item]:
        """The items whose file content has one of these sha256 hashes."""
        return self.items.by_sha256(sha256s)

    def all_items(self) -> list[Item]:
        """Every item of this generation, in id order."""
        return self.items.all_items()

    def info(self) -> dict[str, Any]:
        """Manifest facts plus per-identity counts, staged items and whether a writer is at work."""
        counts = self.items.identity_counts()
        return {
            "gallery": str(self.gallery_dir),
            **self.manifest.to_dict(),
            "staged": self.items.staged_count(),
            "writer_active": is_locked(self.gallery_dir),
            "identity_counts": counts,
        }
