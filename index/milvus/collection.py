"""A gallery's Milvus collection: its fields, its model binding, and its index type.

One row per item: the primary key ``id`` (derived from the item's path, so writing the same file
twice is one upsert, never a duplicate), its ``vector``, ``path``, ``identity``, ``sha256``
(content hash), ``size`` and ``mtime_ns`` (how an update tells unchanged files apart), and the
``generation`` of the update that wrote it (rows of a killed update are newer than the record). The
gallery's record (model fingerprint and path, dimension, pair, index type, search parameters,
recall, threshold, counts, generation) is the folder manifest's dataclass, kept as a collection
property with its checksum, so the binding travels with the collection on any Milvus.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from siamese.core.errors import GalleryError, named
from siamese.core.files import sha256_bytes
from siamese.index.location import MilvusLocation
from siamese.index.search.index_choice import ivf_lists
from siamese.index.store.item_writer import KnownFile
from siamese.index.store.manifest import GALLERY_FORMAT_VERSION, Manifest

#: Collection properties (Milvus stores them as strings).
RECORD_PROPERTY = "siamese.gallery"
KIND_PROPERTY = "siamese.embedding_kind"
#: The index Milvus was last asked to build (written right after building it).
INDEX_PROPERTY = "siamese.index"
#: Set on a gallery built from a Parquet export: its ids are the exported gallery's (this
#: property names it), not hashes of the paths, and verify accepts them.
IDS_PROPERTY = "siamese.ids_from"
#: Item ids stay below 2**53, so JSON readers that hold numbers as doubles (the service's page,
#: JavaScript) keep them exact; two paths hashing to one id take the next candidate instead.
ID_BITS = 53
#: Candidate ids tried per path (a collision among 10^9 paths in 53 bits is likely; 16 is not).
MAX_ID_PROBES = 16
#: Longest path and identity Milvus stores (VARCHAR max_length, in bytes).
MAX_PATH_BYTES = 4096
MAX_IDENTITY_BYTES = 1024
#: Index types a server builds that Milvus Lite does not.
SERVER_ONLY = {"DISKANN", "IVF_PQ"}
#: The search parameter each index type tunes, in the folder galleries' names, and Milvus's.
KNOBS = {"IVF_FLAT": "nprobe", "IVF_SQ8": "nprobe", "IVF_PQ": "nprobe", "HNSW": "efSearch"}
KNOBS["DISKANN"] = "search_list"
_MILVUS_PARAM = {"efSearch": "ef"}
_HNSW_EF_CONSTRUCTION = 128


def item_id(path: str, attempt: int = 0) -> int:
    """The ``attempt``-th candidate primary key of the item at ``path``: ID_BITS of a sha256.

    Attempt 0 hashes the path alone; later attempts (taken when another path of the gallery
    holds an id, see :class:`IdAssigner`) hash it with the attempt number.
    """
    data = path if attempt == 0 else f"{path}\0{attempt}"
    digest = hashlib.sha256(data.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - ID_BITS)


def too_long(path: str, identity: str) -> str | None:
    """Why Milvus cannot keep this row's path or identity (VARCHAR limits), or None."""
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        return f"path longer than Milvus stores ({MAX_PATH_BYTES} bytes)"
    if len(identity.encode("utf-8")) > MAX_IDENTITY_BYTES:
        return f"identity (folder name) longer than Milvus stores ({MAX_IDENTITY_BYTES} bytes)"
    return None


def is_own_id(path: str, candidate: int) -> bool:
    """Whether ``candidate`` is one of the ids ``path`` can hold (see :func:`item_id`)."""
    return any(item_id(path, attempt) == candidate for attempt in range(MAX_ID_PROBES))


class IdAssigner:
    """Ids for an update's files: a file the gallery holds keeps its id; a new one takes the
    first of its candidate ids that no other path holds.

    Deterministic given what the collection holds, so a killed update's rerun gives every file
    the id it had, and an upsert replaces rather than duplicates.
    """

    def __init__(
        self,
        known: Mapping[str, KnownFile],
        lookup: Callable[[list[int]], dict[int, str]] | None = None,
    ) -> None:
        """``known``: the collection's files (all of them, or with ``lookup``, those planned);
        ``lookup``: which paths hold some ids, asked when ``known`` is not all of them."""
        self._known = known
        #: The files this update knows the collection holds, by path.
        self.known = known
        self._lookup = lookup
        self._holder = {entry.id: path for path, entry in known.items()}

    def prefetch(self, paths: Sequence[str]) -> None:
        """Ask ``lookup`` once who holds the first candidate ids of these new paths."""
        if self._lookup is not None:
            wanted = [item_id(p) for p in paths if p not in self._known]
            asked = [i for i in wanted if i not in self._holder]
            if asked:
                self._holder.update(self._lookup(asked))

    def __call__(self, path: str) -> int:
        """The id of the file at ``path``.

        Raises:
            GalleryError: every candidate id is held by another path (not seen in practice).
        """
        if path in self._known:
            return self._known[path].id
        for attempt in range(MAX_ID_PROBES):
            candidate = item_id(path, attempt)
            if candidate not in self._holder and self._lookup is not None:
                self._holder.update(self._lookup([candidate]))
            if self._holder.setdefault(candidate, path) == path:
                return candidate
        raise GalleryError(f"{path}: its {MAX_ID_PROBES} candidate ids are all held by others")


def schema(dimension: int) -> Any:
    """The collection schema of a gallery of ``dimension``-long vectors."""
    # The extra, imported once a Milvus gallery is used (pymilvus takes a second or two).
    pymilvus = importlib.import_module("pymilvus")
    DataType = pymilvus.DataType
    fields = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    fields.add_field("id", DataType.INT64, is_primary=True)
    fields.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    fields.add_field("path", DataType.VARCHAR, max_length=MAX_PATH_BYTES)
    fields.add_field("identity", DataType.VARCHAR, max_length=MAX_IDENTITY_BYTES)
    fields.add_field("sha256", DataType.VARCHAR, max_length=64)
    fields.add_field("size", DataType.INT64)
    fields.add_field("mtime_ns", DataType.INT64)
    fields.add_field("generation", DataType.INT64)
    return fields


@dataclass(frozen=True)
class MilvusIndex:
    """A Milvus index type with its build parameters (what ``--index`` maps to)."""

    kind: str
    params: dict[str, int]

    @property
    def name(self) -> str:
        """How reports name it: ``HNSW(M=32)``, ``IVF_FLAT(nlist=256)``, ``FLAT``."""
        shown = {k: v for k, v in self.params.items() if k != "efConstruction"}
        inner = ",".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.kind}({inner})" if inner else self.kind

    @property
    def exact(self) -> bool:
        """FLAT finds the exact neighbours; nothing to measure or tune."""
        return self.kind == "FLAT"

    def to_json(self) -> str:
        """How the record and the collection's properties keep it."""
        return json.dumps({"kind": self.kind, "params": self.params}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MilvusIndex:
        """The index :meth:`to_json` wrote."""
        stored = json.loads(text)
        return cls(str(stored["kind"]), {str(k): int(v) for k, v in stored["params"].items()})

    def index_params(self, client: Any) -> Any:
        """pymilvus IndexParams building this index on the ``vector`` field, L2 metric."""
        params = client.prepare_index_params()
        params.add_index(
            field_name="vector", index_type=self.kind, metric_type="L2", params=dict(self.params)
        )
        return params


def milvus_index(asked: str, count: int, location: MilvusLocation) -> MilvusIndex:
    """The Milvus index for an ``--index`` value: a Milvus type or a FAISS factory string.

    ``Flat`` → FLAT, ``HNSW32`` → HNSW M=32, ``IVF1024,Flat`` → IVF_FLAT nlist=1024,
    ``IVF…,SQ8`` → IVF_SQ8, ``IVF…,PQ16`` → IVF_PQ m=16; Milvus names (``IVF_FLAT``, ``HNSW``,
    ``DISKANN``…) take their lists from ``count`` as folder galleries do.

    Raises:
        GalleryError: a type with no Milvus counterpart, or DISKANN on Milvus Lite.
    """
    text = asked.strip()
    upper = text.upper()
    lists = ivf_lists(max(count, 1))
    if upper in {"FLAT", "IDMAP,FLAT"}:
        found = MilvusIndex("FLAT", {})
    elif match := re.fullmatch(r"HNSW(\d*)(,FLAT)?", upper):
        found = MilvusIndex(
            "HNSW", {"M": int(match[1] or 32), "efConstruction": _HNSW_EF_CONSTRUCTION}
        )
    elif match := re.fullmatch(r"IVF(\d*)(,FLAT|_FLAT)", upper):
        found = MilvusIndex("IVF_FLAT", {"nlist": int(match[1] or lists)})
    elif match := re.fullmatch(r"IVF(\d*)(,SQ8|_SQ8)", upper):
        found = MilvusIndex("IVF_SQ8", {"nlist": int(match[1] or lists)})
    elif match := re.fullmatch(r"IVF(\d*),PQ(\d+)(X8)?", upper):
        found = MilvusIndex(
            "IVF_PQ", {"nlist": int(match[1] or lists), "m": int(match[2]), "nbits": 8}
        )
    elif upper == "IVF_PQ":
        found = MilvusIndex("IVF_PQ", {"nlist": lists, "m": 0, "nbits": 8})
    elif upper == "DISKANN":
        found = MilvusIndex("DISKANN", {})
    else:
        raise GalleryError(
            f"{location}: index type {asked!r} has no Milvus counterpart; use FLAT, IVF_FLAT, "
            f"IVF_SQ8, IVF_PQ, HNSW or DISKANN (servers), a FAISS string such as HNSW32 or "
            f"IVF1024,Flat, or auto ({named('index')})"
        )
    if found.kind in SERVER_ONLY and location.lite:
        raise GalleryError(
            f"{location}: {found.kind} needs a Milvus server (Milvus Lite does not build it); use "
            "HNSW or IVF_SQ8 here, or a milvus://HOST:PORT/COLLECTION gallery"
        )
    return found


def complete_pq(index: MilvusIndex, dimension: int) -> MilvusIndex:
    """IVF_PQ's m: given, or the largest of 64, 32, 16, 8, 4 that divides ``dimension``."""
    if index.kind != "IVF_PQ" or index.params["m"]:
        if index.kind == "IVF_PQ" and dimension % index.params["m"]:
            raise GalleryError(
                f"IVF_PQ with m={index.params['m']} needs a dimension divisible by it, the model's "
                f"is {dimension}"
            )
        return index
    m = next((m for m in (64, 32, 16, 8, 4, 2, 1) if dimension % m == 0 and m < dimension), 1)
    return MilvusIndex("IVF_PQ", {**index.params, "m": m})


def milvus_search_params(index_kind: str, params: dict[str, int]) -> dict[str, Any]:
    """pymilvus ``search_params`` from the gallery's (folder-style) search parameters."""
    knob = KNOBS.get(index_kind)
    inner = {_MILVUS_PARAM.get(k, k): v for k, v in params.items() if k == knob}
    return {"metric_type": "L2", "params": inner}


def record_properties(manifest: Manifest) -> dict[str, str]:
    """The collection properties that carry ``manifest`` (with its checksum)."""
    payload = manifest.to_dict()
    text = json.dumps({**payload, "checksum": _checksum(payload)}, sort_keys=True)
    return {RECORD_PROPERTY: text, KIND_PROPERTY: "image"}


def read_record(location: MilvusLocation, properties: dict[str, Any]) -> Manifest:
    """The gallery record kept in a collection's properties.

    Raises:
        GalleryError: the collection holds no siamese gallery, or its record is damaged.
    """
    text = properties.get(RECORD_PROPERTY)
    if not text:
        raise GalleryError(
            f"{location}: the collection is not a siamese gallery (no {RECORD_PROPERTY} property)"
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GalleryError(f"{location}: damaged gallery record ({exc})") from None
    if not isinstance(data, dict) or data.pop("checksum", None) != _checksum(data):
        raise GalleryError(
            f"{location}: the gallery record's checksum does not match; it is damaged or was edited"
        )
    if data.get("format_version") != GALLERY_FORMAT_VERSION:
        raise GalleryError(f"{location}: gallery format {data.get('format_version')} not supported")
    try:
        return Manifest(**data)
    except TypeError as exc:
        raise GalleryError(f"{location}: malformed gallery record ({exc})") from None


def _checksum(payload: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
