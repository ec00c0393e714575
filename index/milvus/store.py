"""A gallery's collection, read and written through pymilvus: rows, record, index, search.

Every call goes through :func:`~siamese.index.milvus.connection.call`, so a Milvus failure is
one :class:`GalleryError` line naming the location. Rows are written with upserts keyed by the
item id (see :func:`~siamese.index.milvus.collection.item_id`): writing a chunk twice, after a
killed run, leaves one row per file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError
from siamese.index.location import MilvusLocation
from siamese.index.milvus import collection as col
from siamese.index.milvus.connection import call, client
from siamese.index.search.results import Item
from siamese.index.store.item_writer import KnownFile
from siamese.index.store.manifest import Manifest

#: Rows per query-iterator page and per upsert request (Milvus caps a request's size).
PAGE = 2000
_ITEM_FIELDS = ["id", "path", "identity", "sha256"]
_FILE_FIELDS = [*_ITEM_FIELDS, "size", "mtime_ns"]


def _quoted(values: Sequence[str]) -> str:
    """A Milvus expression list of strings (JSON quoting is what its parser reads)."""
    return "[" + ",".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


class MilvusStore:
    """One gallery collection on one Milvus (a server, or a Milvus Lite file)."""

    def __init__(self, location: MilvusLocation) -> None:
        self.location = location
        self.client = client(location)
        self.name = location.collection

    def _call(self, doing: str, method: str, *args: Any, **kw: Any) -> Any:
        return call(self.location, doing, getattr(self.client, method), *args, **kw)

    # --------------------------------------------------------------- collection
    def exists(self) -> bool:
        """Whether the collection exists (a gallery or not)."""
        return bool(self._call("list collections", "has_collection", self.name))

    def create(self, manifest: Manifest, index: col.MilvusIndex) -> None:
        """Create the collection with its schema, index and record, loaded for search."""
        self._call(
            "create the collection",
            "create_collection",
            self.name,
            schema=col.schema(manifest.dimension),
            index_params=index.index_params(self.client),
            properties={**col.record_properties(manifest), col.INDEX_PROPERTY: index.to_json()},
            consistency_level="Strong",
        )

    def properties(self) -> dict[str, Any]:
        """The collection's properties (strings)."""
        described = self._call("describe the collection", "describe_collection", self.name)
        return dict(described.get("properties") or {})

    def record(self) -> Manifest:
        """The gallery record (model binding, index, search parameters, threshold, counts).

        Raises:
            GalleryError: no such collection, or not a siamese gallery.
        """
        if not self.exists():
            raise GalleryError(f"{self.location}: no such gallery (build one there first)")
        return col.read_record(self.location, self.properties())

    def write_record(self, manifest: Manifest) -> None:
        """Replace the gallery record (one property write: readers see the old or the new one)."""
        self._set(col.record_properties(manifest))

    def set_properties(self, properties: dict[str, str]) -> None:
        """Write collection properties beside the record (e.g. where imported ids came from)."""
        self._set(properties)

    def _set(self, properties: dict[str, str]) -> None:
        self._call(
            "store the gallery record",
            "alter_collection_properties",
            self.name,
            properties=properties,
        )

    def flush(self) -> None:
        """Seal what was written into segments (durable, and indexed: Milvus searches rows not
        yet sealed by brute force, so recall is only meaningful after this)."""
        self._call("flush the collection", "flush", self.name)

    def load(self) -> None:
        """Load the collection for search (a Milvus Lite file reopens released)."""
        self._call("load the collection", "load_collection", self.name)

    def index(self) -> dict[str, Any]:
        """What Milvus says of the vector index (type, metric, params, rows indexed)."""
        return dict(self._call("describe the index", "describe_index", self.name, "vector"))

    def rebuild_index(self, index: col.MilvusIndex) -> None:
        """Replace the vector index by ``index`` (the rows stay; nothing is embedded again)."""
        self._call("release the collection", "release_collection", self.name)
        self._call("drop the index", "drop_index", self.name, "vector")
        self._call("build the index", "create_index", self.name, index.index_params(self.client))
        self._set({col.INDEX_PROPERTY: index.to_json()})
        self.load()

    def built_index(self, recorded: col.MilvusIndex) -> col.MilvusIndex:
        """The index Milvus holds now (a rebuild killed before its record may differ from it)."""
        text = self.properties().get(col.INDEX_PROPERTY)
        return col.MilvusIndex.from_json(text) if text else recorded

    # --------------------------------------------------------------------- rows
    def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace rows by id, a page at a time."""
        for start in range(0, len(rows), PAGE):
            self._call("write items", "upsert", self.name, rows[start : start + PAGE])

    def delete(self, ids: Sequence[int]) -> None:
        """Delete rows by id (ids not there are ignored)."""
        ids = list(ids)
        for start in range(0, len(ids), PAGE):
            self._call("delete items", "delete", self.name, ids=ids[start : start + PAGE])

    def count(self, expression: str = "") -> int:
        """Rows (matching ``expression``): counted by Milvus, not read."""
        rows = self._call(
            "count items", "query", self.name, filter=expression, output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def rows(self, fields: list[str], expression: str = "") -> Iterator[list[dict[str, Any]]]:
        """Every row (matching ``expression``), page by page, with ``fields``."""
        iterator = self._call(
            "read items",
            "query_iterator",
            self.name,
            batch_size=PAGE,
            filter=expression,
            output_fields=fields,
        )
        try:
            while True:
                page = call(self.location, "read items", iterator.next)
                if not page:
                    return
                yield list(page)
        finally:
            iterator.close()

    def known_files(self, paths: Sequence[str] | None = None) -> dict[str, KnownFile]:
        """What the gallery holds, by path, as an update plans against (never staged).

        ``paths``: only these (an ``add`` of a few files reads a few rows, not the gallery).
        """
        if paths is None:
            pages: Iterator[list[dict[str, Any]]] = self.rows(_FILE_FIELDS)
        else:
            wanted = sorted(set(paths))
            pages = (
                self._page(in_list("path", wanted[start : start + PAGE]), _FILE_FIELDS)
                for start in range(0, len(wanted), PAGE)
            )
        return {
            row["path"]: KnownFile(
                row["id"], row["identity"], row["sha256"], row["size"], row["mtime_ns"], False
            )
            for page in pages
            for row in page
        }

    def _page(self, expression: str, fields: list[str]) -> list[dict[str, Any]]:
        """The rows matching ``expression``, at most PAGE (an ``in`` over at most PAGE keys)."""
        return list(
            self._call(
                "read items",
                "query",
                self.name,
                filter=expression,
                output_fields=fields,
                limit=PAGE,
            )
        )

    def holders(self, ids: Sequence[int]) -> dict[int, str]:
        """The paths holding these ids (those held), by id."""
        found: dict[int, str] = {}
        ids = sorted(set(ids))
        for start in range(0, len(ids), PAGE):
            rows = self._page(in_list("id", ids[start : start + PAGE]), ["id", "path"])
            found.update({row["id"]: row["path"] for row in rows})
        return found

    def items(self, expression: str, limit: int | None = None, offset: int = 0) -> list[Item]:
        """Items matching ``expression``, by id (a page of them with ``limit``)."""
        if limit is None:
            found = [row for page in self.rows(_ITEM_FIELDS, expression) for row in page]
        else:
            found = self._call(
                "read items",
                "query",
                self.name,
                filter=expression,
                output_fields=_ITEM_FIELDS,
                limit=limit,
                offset=offset,
            )
        items = [Item(r["id"], r["path"], r["identity"], r["sha256"]) for r in found]
        return sorted(items, key=lambda item: item.id)

    def identity_counts(self) -> dict[str, int]:
        """Items per identity, by identity name (read from the identity field, page by page)."""
        counts: dict[str, int] = {}
        for page in self.rows(["identity"]):
            for row in page:
                counts[row["identity"]] = counts.get(row["identity"], 0) + 1
        return dict(sorted(counts.items()))

    def vectors(self, ids: Sequence[int]) -> dict[int, NDArray[np.float32]]:
        """The stored vectors of ``ids`` (those present)."""
        found = self._call(
            "read vectors", "get", self.name, ids=list(ids), output_fields=["id", "vector"]
        )
        return {r["id"]: np.asarray(r["vector"], np.float32) for r in found}

    def all_vectors(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Every id and vector (recall's exact ground truth needs them all)."""
        ids: list[int] = []
        vectors: list[Any] = []
        for page in self.rows(["id", "vector"]):
            ids += [r["id"] for r in page]
            vectors += [r["vector"] for r in page]
        return np.asarray(ids, np.int64), np.asarray(vectors, np.float32)

    # ------------------------------------------------------------------- search
    def search(
        self,
        queries: NDArray[np.float32],
        k: int,
        search_params: dict[str, Any],
        expression: str = "",
        fields: Sequence[str] = ("path", "identity"),
    ) -> list[list[dict[str, Any]]]:
        """The k nearest rows of each query, nearest first: dicts of id, distance (squared L2)
        and ``fields``."""
        hits = self._call(
            "search",
            "search",
            self.name,
            data=np.asarray(queries, np.float32).tolist(),
            limit=k,
            filter=expression,
            output_fields=list(fields),
            search_params=search_params,
        )
        return [
            [{"id": h["id"], "distance": h["distance"], **h.get("entity", {})} for h in row]
            for row in hits
        ]


def in_list(field: str, values: Sequence[Any]) -> str:
    """``field in [...]``: a Milvus expression for any of ``values`` (strings or ints)."""
    if values and isinstance(values[0], str):
        return f"{field} in {_quoted(values)}"
    return f"{field} in [{','.join(str(int(v)) for v in values)}]"


#: Above this many identities touched by one update, the count is taken afresh from every row.
TALLY_LIMIT = 10_000


class IdentityTally:
    """The gallery's identity count after an update, from the identities it touched.

    Milvus counts rows but not distinct values, so counting identities afresh reads the identity
    of every row. When the collection is as its record left it (no rows of an unfinished update,
    the recorded count), the count after an update is the recorded one, less the touched
    identities present before, plus those present after: only their rows are read.
    """

    def __init__(self, store: MilvusStore, manifest: Manifest, touched: set[str]) -> None:
        self.store, self.base, self.touched = store, manifest.identities, sorted(touched)
        as_recorded = (
            manifest.generation > 0
            and len(touched) <= TALLY_LIMIT
            and store.count(f"generation > {manifest.generation}") == 0
            and store.count() == manifest.count
        )
        self.before = self._present() if as_recorded else None

    def _present(self) -> set[str]:
        if not self.touched:
            return set()
        pages = self.store.rows(["identity"], in_list("identity", self.touched))
        return {row["identity"] for page in pages for row in page}

    def after(self) -> int:
        """Identities the collection holds now."""
        if self.before is None:
            return len(self.store.identity_counts())
        return self.base - len(self.before) + len(self._present())
