"""A Milvus gallery opened for searching: the same reader interface as a folder gallery's.

Milvus answers the nearest-neighbour search (with the gallery's tuned search parameter, and a
boolean filter expression when one is given) and returns each hit's path and identity with it,
so a query costs one round trip. Distances come back squared; they are reported as L2 distances,
as folder galleries report them, so thresholds calibrated on either mean the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError, ModelMismatchError
from siamese.index.location import MilvusLocation
from siamese.index.milvus.collection import KNOBS, milvus_search_params
from siamese.index.milvus.record import index_of, milvus_location
from siamese.index.milvus.store import MilvusStore, in_list
from siamese.index.published import RecordedReader, refuse_other_model
from siamese.index.search.filters import Where, as_where
from siamese.index.search.results import Item, Match, QueryResult
from siamese.index.store.manifest import Manifest

#: Identities are ranked from this many times k nearest items (as folder galleries do).
_IDENTITY_WIDEN = 10
#: Milvus refuses a larger top-k.
MAX_TOP_K = 16384


def where_expression(where: Where | str | None) -> str:
    """The Milvus ``filter`` for ``where`` (a filter text, checked and normalised, or a parsed
    :class:`~siamese.index.search.filters.Where`); '' for none.

    Raises:
        FilterError: a text that does not parse.
    """
    parsed = as_where(where)
    return parsed.expression if parsed is not None else ""


class MilvusGalleryReader(RecordedReader):
    """An opened Milvus gallery: search it with embeddings from the model it was built with."""

    def __init__(
        self, location: MilvusLocation, store: MilvusStore, manifest: Manifest, params: dict
    ) -> None:
        self.location = location
        self.store = store
        self.search_params = params
        #: The Milvus index type and build parameters the record names.
        self.index_spec = index_of(manifest)
        self._keep_record(manifest)

    @classmethod
    def open(
        cls,
        gallery_dir: Any,
        *,
        model_fingerprint: str | None = None,
        model_name: str = "the model",
        model_pair: Any = None,
        mmap: bool = False,
        search_params: dict[str, int] | None = None,
    ) -> MilvusGalleryReader:
        """Open the collection for searching, refusing another model (see GalleryReader.open).

        ``mmap`` is accepted for the same signature (Milvus decides how it holds segments).

        Raises:
            GalleryError: no such gallery, a damaged record, or a search parameter the index
                lacks; ModelMismatchError: another model.
        """
        location = milvus_location(gallery_dir)
        store = MilvusStore(location)
        manifest = store.record()
        if model_fingerprint is not None:
            refuse_other_model(location, manifest, model_fingerprint, model_name, model_pair)  # type: ignore[arg-type]
        params = {**manifest.search_params, **(search_params or {})}
        knob = KNOBS.get(index_of(manifest).kind)
        if set(params) - {knob}:
            raise GalleryError(
                f"{location}: its {manifest.index_type} index has no search parameter "
                f"{', '.join(sorted(set(params) - {knob}))} (it tunes {knob or 'nothing'})"
            )
        store.load()
        return cls(location, store, manifest, params)

    # close: nothing to release, the process keeps its one client per Milvus (see connection)

    @property
    def gallery_dir(self) -> MilvusLocation:
        """Where the gallery lives (named so for code written against folder galleries)."""
        return self.location

    @property
    def faiss_search_parameters(self) -> None:
        """Folder galleries' FAISS parameters: Milvus searches here, so there are none."""
        return None

    def __len__(self) -> int:
        return self.manifest.count

    # ---------------------------------------------------------------- searching
    def _hits(
        self,
        embeddings: NDArray[np.float32],
        k: int,
        params: dict[str, int] | None,
        where: Where | str | None,
    ) -> list[list[dict[str, Any]]]:
        if k < 1:
            raise GalleryError(f"k must be at least 1, got {k}")
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if queries.shape[1] != self.manifest.dimension:
            raise ModelMismatchError(
                f"query embeddings have dimension {queries.shape[1]}, gallery {self.location} "
                f"holds {self.manifest.dimension}"
            )
        milvus_params = milvus_search_params(
            self.index_spec.kind, {**self.search_params, **(params or {})}
        )
        return self.store.search(queries, min(k, MAX_TOP_K), milvus_params, where_expression(where))

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

        Slots Milvus filled with nothing are -1 and inf; ``threads`` is the server's business.
        """
        hits = self._hits(embeddings, k, params, where)
        width = min(k, MAX_TOP_K, max(len(self), max((len(row) for row in hits), default=0)))
        distances = np.full((len(hits), width), np.inf, np.float32)
        ids = np.full((len(hits), width), -1, np.int64)
        for q, row in enumerate(hits):
            for j, hit in enumerate(row[:width]):
                distances[q, j] = np.sqrt(max(hit["distance"], 0.0))
                ids[q, j] = hit["id"]
        return distances, ids

    def search(
        self,
        embeddings: NDArray[np.float32],
        k: int = 5,
        *,
        params: dict[str, int] | None = None,
        threads: int | None = None,
        where: Where | str | None = None,
    ) -> list[QueryResult]:
        """The k nearest items of each query, and identities ranked by closest item.

        ``where``: a filter over the item fields (:func:`~siamese.index.search.filters.parse_where`,
        e.g. ``identity in ["alice", "bob"]``), handed to Milvus as its ``filter`` expression:
        Milvus ranks only the matching items.
        """
        hits = self._hits(embeddings, k * _IDENTITY_WIDEN, params, where)
        results = []
        for row in hits:
            neighbours = [
                Match(int(h["id"]), h["identity"], h["path"], float(np.sqrt(max(h["distance"], 0))))
                for h in row
            ]
            results.append(QueryResult.ranked(neighbours, k, self.threshold))
        return results

    # ------------------------------------------------------------------ reading
    def item(self, item_id: int) -> Item | None:
        """One item by id (None if the collection does not hold it)."""
        found = self.store.items(f"id == {int(item_id)}")
        return found[0] if found else None

    def count(self, identity: str | None = None) -> int:
        """Items, or items of one identity (0 for an identity it does not hold)."""
        return self.store.count("" if identity is None else in_list("identity", [identity]))

    def identity_counts(self) -> dict[str, int]:
        """Items per identity, by identity name."""
        return self.store.identity_counts()

    def items_of(self, identity: str, offset: int = 0, limit: int | None = None) -> list[Item]:
        """One identity's items, in id order, paged."""
        found = self.store.items(in_list("identity", [identity]))
        return found[offset : None if limit is None else offset + limit]

    def items_at(self, paths: Sequence[str]) -> list[Item]:
        """The items recorded at these (canonical) paths."""
        return self.store.items(in_list("path", list(paths))) if paths else []

    def items_with_content(self, sha256s: Sequence[str]) -> list[Item]:
        """The items whose file content has one of these sha256 hashes."""
        return self.store.items(in_list("sha256", list(sha256s))) if sha256s else []

    def all_items(self) -> list[Item]:
        """Every item, in id order."""
        return self.store.items("")

    def info(self) -> dict[str, Any]:
        """The gallery record plus per-identity counts and what Milvus says of its index."""
        described = self.store.index()
        return {
            "gallery": str(self.location),
            **self.manifest.to_dict(),
            "staged": 0,
            "writer_active": False,
            "identity_counts": self.store.identity_counts(),
            "milvus": {
                "uri": self.location.uri if self.location.lite else self.location.text,
                "collection": self.location.collection,
                "lite": self.location.lite,
                "index_type": described.get("index_type"),
                "indexed_rows": described.get("indexed_rows"),
                "rows": self.store.count(),
            },
        }
