"""A Milvus gallery's record: the collection bound to its model, its index, each update's end.

The record is the folder manifest's dataclass kept as a collection property
(:mod:`~siamese.index.milvus.collection`). Here it is created for a new gallery (the model's
fingerprint, path, dimension and pair; the index asked for, mapped onto Milvus's), checked
against the model of every later update (any other model is refused naming both), and written
when an update finishes (:func:`publish`: recall measured when due, counts, the generation).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from siamese.core.errors import (
    GalleryError,
    ModelMismatchError,
    RecallTooLowError,
    named,
)
from siamese.index.location import MilvusLocation, parse_location
from siamese.index.milvus import collection as col
from siamese.index.milvus.quality import check_recall
from siamese.index.milvus.store import IdentityTally, MilvusStore
from siamese.index.published import refuse_other_model
from siamese.index.search.index_choice import resolve_index
from siamese.index.search.recall import DEFAULT_TARGET
from siamese.index.store.crash_points import reached
from siamese.index.store.manifest import GALLERY_FORMAT_VERSION, Manifest, now_iso
from siamese.index.updates.embeds import Embeds
from siamese.index.updates.operations import _pair_record

#: Recall is measured again once the count has moved this share since it was (as folders do).
_RECALL_STALE_AFTER = 0.10


@dataclass
class Policy:
    """What an update asks of the index: its type, fixed search parameters, recall."""

    index: str | None = None
    search_params: dict[str, int] | None = None
    target: float = DEFAULT_TARGET
    minimum: float | None = None
    queries: int = 1000
    always_measure: bool = False


def milvus_location(location: Any) -> MilvusLocation:
    """``location`` as a MilvusLocation (callers dispatch on :func:`is_milvus` first)."""
    parsed = parse_location(location)
    assert isinstance(parsed, MilvusLocation)
    return parsed


def index_of(manifest: Manifest) -> col.MilvusIndex:
    """The Milvus index a gallery record names."""
    return col.MilvusIndex.from_json(manifest.faiss_factory)


def default_report(location: MilvusLocation) -> Path:
    """Where refused files are listed: beside a Lite file, or ``COLLECTION.rejected.json`` here."""
    if location.lite:
        return Path(location.uri + ".rejected.json")
    return Path(f"{location.collection}.rejected.json")


def open_bound(location: MilvusLocation, embedder: Embeds) -> tuple[MilvusStore, Manifest]:
    """The gallery's store and record, refusing a model other than the one it is bound to.

    Raises:
        GalleryError: no such gallery; ModelMismatchError: another model (both named).
    """
    store = MilvusStore(location)
    manifest = store.record()
    refuse_other_model(
        location,  # type: ignore[arg-type]  (only named in the message)
        manifest,
        embedder.fingerprint,
        str(embedder.model_path),
        getattr(embedder, "pair", None),
    )
    if embedder.dim != manifest.dimension:
        raise ModelMismatchError(
            f"{location}: holds {manifest.dimension}-long vectors, {embedder.model_path} makes "
            f"{embedder.dim}"
        )
    return store, manifest


def resolve(asked: str, count: int, dim: int, budget: int, where: MilvusLocation) -> Any:
    """The Milvus index for ``asked`` (``auto`` chooses as folder galleries do) and the choice."""
    if asked == "ondisk" or asked.startswith("ondisk:"):
        raise GalleryError(
            f"{where}: on-disk indexes are for folder galleries; Milvus keeps its own segments "
            f"(use IVF_SQ8 or HNSW, or DISKANN on a server, {named('index')})"
        )
    choice = resolve_index(asked, count, dim, budget)
    index = col.milvus_index(choice.index_type if choice else asked, count, where)
    return col.complete_pq(index, dim), choice


def new_record(embedder: Embeds, index: col.MilvusIndex, location: MilvusLocation) -> Manifest:
    return Manifest(
        gallery_id=uuid.uuid4().hex,
        generation=0,
        model_fingerprint=embedder.fingerprint,
        model_path=str(Path(embedder.model_path).resolve()),
        dimension=embedder.dim,
        metric="l2",
        index_type=index.name,
        faiss_factory=index.to_json(),
        index_file=location.collection,
        index_sha256="",
        index_bytes=0,
        items_fingerprint="",
        count=0,
        identities=0,
        created=now_iso(),
        items_file=location.uri if location.lite else location.text,
        format_version=GALLERY_FORMAT_VERSION,
        pair=_pair_record(embedder),
    )


def store_for_build(
    location: MilvusLocation, embedder: Embeds, asked: str | None, count: int, budget: int
) -> tuple[MilvusStore, Manifest, col.MilvusIndex, Any]:
    """The bound store and record (a new collection if none), the index to use, the choice."""
    store = MilvusStore(location)
    if store.exists():
        store, manifest = open_bound(location, embedder)
        if asked is None:
            return store, manifest, index_of(manifest), None
        index, choice = resolve(asked, count, embedder.dim, budget, location)
        return store, manifest, index, choice
    index, choice = resolve(asked or "FLAT", count, embedder.dim, budget, location)
    manifest = new_record(embedder, index, location)
    store.create(manifest, index)
    return store, manifest, index, choice


def publish(
    store: MilvusStore,
    manifest: Manifest,
    index: col.MilvusIndex,
    policy: Policy,
    gen: int,
    tally: IdentityTally,
) -> Manifest:
    """Measure recall when due and write the record of generation ``gen`` (the commit point)."""
    store.flush()
    count = store.count()
    same = index == index_of(manifest)
    knob = col.KNOBS.get(index.kind)
    fixed = policy.search_params
    if fixed and set(fixed) - {knob}:
        raise GalleryError(
            f"{store.location}: {index.name} has no search parameter "
            f"{', '.join(sorted(set(fixed) - {knob}))} (it tunes {knob or 'nothing'})"
        )
    previous = manifest.recall if same else None
    stale = previous is None or abs(count - previous.get("count", 0)) > _RECALL_STALE_AFTER * max(
        previous.get("count", 0), 1
    )
    params, recall = dict(fixed or (manifest.search_params if same else {})), previous
    if policy.always_measure or stale or fixed or policy.minimum is not None:
        try:
            params, recall = check_recall(
                store, index, fixed=dict(fixed) if fixed else None,
                target=policy.target, minimum=policy.minimum, queries=policy.queries,
                count=count, dimension=manifest.dimension,
            )  # fmt: skip
        except RecallTooLowError:
            if not same:  # searches go on through the index the record names
                store.rebuild_index(index_of(manifest))
            raise
    published = replace(
        manifest,
        generation=gen,
        created=now_iso(),
        index_type=index.name,
        faiss_factory=index.to_json(),
        search_params=params,
        recall=recall,
        count=count,
        identities=tally.after(),
    )
    store.write_record(published)
    reached("milvus.record_written")
    return published
