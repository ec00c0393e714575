"""Build, add to and remove from a Milvus gallery: the folder galleries' sync plan, upserted.

An update plans exactly as a folder gallery's does (:func:`~siamese.index.updates.sync.plan_sync`
against what the collection holds), then writes each chunk of embedded files as one upsert keyed
by the item id, the hash of the file's path. A run killed at any point leaves rows that are
right for their files; the next run finds them unchanged and embeds only the rest, and no file
is ever two rows. The gallery record (counts, generation, recall, search parameters) is written
last, once the rows are in (:mod:`~siamese.index.milvus.record`); rows newer than the record are
what a killed run left (``resumed``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamese.core.errors import (
    DataError,
    GalleryError,
    named,
)
from siamese.core.progress import progress_bar
from siamese.data.image_folder import scan_gallery_folder
from siamese.index.milvus import collection as col
from siamese.index.milvus.record import (
    Policy,
    default_report,
    index_of,
    milvus_location,
    open_bound,
    publish,
    store_for_build,
)
from siamese.index.milvus.store import IdentityTally, MilvusStore
from siamese.index.search.index_choice import default_memory_budget, parse_memory
from siamese.index.search.recall import DEFAULT_TARGET
from siamese.index.store.crash_points import reached
from siamese.index.store.item_writer import KnownFile
from siamese.index.store.manifest import Manifest
from siamese.index.updates.embeds import Embeds
from siamese.index.updates.operations import DEFAULT_COMMIT_EVERY, _scan_source
from siamese.index.updates.reports import UpdateReport, write_rejected_report
from siamese.index.updates.sync import SyncPlan, canonical_path, chunks, hash_files, plan_sync


@dataclass
class _Done:
    embedded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def build_gallery(
    image_dir: str | os.PathLike[str],
    embedder: Embeds,
    gallery_dir: Any,
    *,
    index: str | None = None,
    memory_budget: int | str | None = None,
    min_recall: float | None = None,
    target_recall: float | None = None,
    search_params: dict[str, int] | None = None,
    commit_every: int = DEFAULT_COMMIT_EVERY,
    recall_queries: int = 1000,
    report_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
    part_runner: Any = None,
) -> UpdateReport:
    """:func:`siamese.index.updates.operations.build_gallery` for a Milvus collection.

    ``part_runner`` is accepted for the same signature; Milvus builds its own index.
    """
    location = milvus_location(gallery_dir)
    if isinstance(memory_budget, str):
        memory_budget = parse_memory(memory_budget) if memory_budget else None
    root = canonical_path(Path(image_dir))
    listed = os.path.isfile(root)
    scan = _scan_source(image_dir, root, listed)
    files = [(canonical_path(item.path), item.identity) for item in scan.images]
    budget = memory_budget or default_memory_budget()
    store, manifest, chosen, choice = store_for_build(location, embedder, index, len(files), budget)
    known = store.known_files()
    plan = plan_sync(files, known, vanish_under=os.sep if listed else root)
    plan.failures += scan.refused
    policy = Policy(
        index, search_params, target_recall or DEFAULT_TARGET, min_recall, recall_queries, True
    )
    report = _apply(
        store, manifest, chosen, embedder, plan, policy, "build", root, commit_every,
        report_path, progress, col.IdAssigner(known),
    )  # fmt: skip
    if choice is not None:
        report.choice = {
            "asked": index,
            "index_type": chosen.name,
            "expected_recall_at10": choice.expected_recall_at10,
            "estimated_bytes": choice.estimated_bytes,
            "reason": choice.reason,
        }
    return report


def _listed(paths: Sequence[str | os.PathLike[str]], identity: str | None) -> tuple[list, list]:
    """(canonical path, identity) of the files and folders given to ``add``; refused files."""
    files: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            scan = scan_gallery_folder(path)
            files += [(canonical_path(i.path), identity or i.identity) for i in scan.images]
            refused += scan.refused
        else:
            canonical = canonical_path(path)
            files.append((canonical, identity or Path(canonical).parent.name))
    if not files and not refused:
        raise DataError(f"no image files in {', '.join(map(str, paths))}")
    return files, refused


def add_to_gallery(
    gallery_dir: Any,
    paths: Sequence[str | os.PathLike[str]],
    embedder: Embeds,
    *,
    identity: str | None = None,
    commit_every: int = DEFAULT_COMMIT_EVERY,
    min_recall: float | None = None,
    report_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> UpdateReport:
    """:func:`siamese.index.updates.operations.add_to_gallery` for a Milvus collection."""
    location = milvus_location(gallery_dir)
    files, refused = _listed(paths, identity)
    store, manifest = open_bound(location, embedder)
    known = store.known_files([path for path, _ in files])  # these rows only, not the gallery
    plan = plan_sync(files, known)
    plan.failures += refused
    source = " ".join(map(str, paths))
    policy = Policy(minimum=min_recall)
    return _apply(
        store, manifest, index_of(manifest), embedder, plan, policy, "add", source, commit_every,
        report_path, progress, col.IdAssigner(known, store.holders),
    )  # fmt: skip


def _apply(
    store: MilvusStore,
    manifest: Manifest,
    index: col.MilvusIndex,
    embedder: Embeds,
    plan: SyncPlan,
    policy: Policy,
    command: str,
    source: str,
    commit_every: int,
    report_path: str | os.PathLike[str] | None,
    progress: bool,
    ids: col.IdAssigner,
) -> UpdateReport:
    """Upsert the plan's files chunk by chunk, delete vanished items, then write the record."""
    started = time.perf_counter()
    if commit_every < 1:
        raise GalleryError(f"commit_every must be at least 1, got {commit_every}")
    generation = manifest.generation + 1
    resumed = min(plan.unchanged, store.count(f"generation >= {generation}"))
    plan.unchanged, plan.resumed = plan.unchanged - resumed, resumed
    tally = IdentityTally(store, manifest, _touched(plan, ids.known))
    if index != store.built_index(index_of(manifest)):
        store.rebuild_index(index)
        reached("milvus.index_rebuilt")
    store.delete(plan.vanished_published)
    reached("milvus.vanished_deleted")
    done = _ingest(store, embedder, plan, ids, generation, commit_every, progress)
    published = publish(store, manifest, index, policy, generation, tally)
    location = store.location
    report = Path(report_path) if report_path else default_report(location)
    write_rejected_report(report, command, source, done.failures)
    return UpdateReport.published(
        location,  # printed: a location, not a folder
        published,
        started,
        added=max(published.count - manifest.count + len(plan.vanished_published), 0),
        removed=len(plan.vanished_published),
        embedded=done.embedded,
        resumed=plan.resumed,
        unchanged=plan.unchanged,
        failures=done.failures,
        report_path=report,
    )


def _row(
    item: int, path: str, identity: str, sha: str, size: int, mtime_ns: int, vector: Any, gen: int
) -> dict[str, Any]:
    return {
        "id": item,
        "vector": [float(x) for x in vector],
        "path": path,
        "identity": identity,
        "sha256": sha,
        "size": int(size),
        "mtime_ns": int(mtime_ns),
        "generation": gen,
    }


def _ingest(
    store: MilvusStore,
    embedder: Embeds,
    plan: SyncPlan,
    ids: col.IdAssigner,
    generation: int,
    commit_every: int,
    progress: bool,
) -> _Done:
    """Hash and embed the candidates chunk by chunk; each chunk is one upsert (then a crash point).

    A file whose content changed replaces its row (same id); if it can no longer be embedded,
    its old row goes, as in a folder gallery.
    """
    done = _Done(failures=list(plan.failures))
    with progress_bar("embedding", len(plan.candidates), progress) as ticker:
        for chunk in chunks(plan.candidates, commit_every):
            hashed, failures = hash_files(chunk)
            done.failures += failures
            rows, touched, replaced, to_embed = [], {}, set(), {}
            for candidate, sha in hashed:
                known, name = candidate.known, candidate.path
                if reason := col.too_long(name, candidate.identity):
                    done.failures.append((name, reason))
                elif known and (known.sha256, known.identity) == (sha, candidate.identity):
                    touched[known.id] = (candidate, sha)  # same content, new mtime
                else:
                    replaced |= {known.id} if known else set()
                    to_embed[name] = (candidate, sha)
            for item, vector in store.vectors(list(touched)).items():
                c, sha = touched[item]
                rows.append(
                    _row(item, c.path, c.identity, sha, c.size, c.mtime_ns, vector, generation)
                )
            ids.prefetch(list(to_embed))
            for batch in embedder.iter_embed_paths(list(to_embed)):
                done.failures += batch.failures
                for name, vector in zip(batch.paths, batch.embeddings):
                    c, sha = to_embed[name]
                    item = ids(name)
                    rows.append(
                        _row(item, name, c.identity, sha, c.size, c.mtime_ns, vector, generation)
                    )
            store.upsert(rows)
            store.delete(sorted(replaced - {row["id"] for row in rows}))
            reached("milvus.chunk_upserted")
            done.embedded += len(rows) - len(touched)
            ticker.advance(len(chunk))
    return done


def _touched(plan: SyncPlan, known: Mapping[str, KnownFile]) -> set[str]:
    """The identities an update may add or empty: its files', before and after, and vanished."""
    touched = {c.identity for c in plan.candidates}
    touched |= {c.known.identity for c in plan.candidates if c.known}
    vanished = set(plan.vanished_published)
    return touched | {entry.identity for entry in known.values() if entry.id in vanished}


def remove_from_gallery(
    gallery_dir: Any,
    *,
    identities: Sequence[str] = (),
    paths: Sequence[str | os.PathLike[str]] = (),
) -> UpdateReport:
    """:func:`siamese.index.updates.operations.remove_from_gallery` for a Milvus collection."""
    location = milvus_location(gallery_dir)
    if not identities and not paths:
        raise GalleryError(
            f"name what to remove: identities ({named('identities')} NAME) or paths "
            f"({named('paths')} PATH)"
        )
    started = time.perf_counter()
    store = MilvusStore(location)
    manifest = store.record()
    wanted = set(identities)
    exact = {canonical_path(p) for p in paths}
    folders = tuple(p.rstrip(os.sep) + os.sep for p in exact)
    doomed = {
        known.id: known.identity
        for path, known in store.known_files().items()
        if known.identity in wanted or path in exact or path.startswith(folders)
    }
    if not doomed:
        asked = [f"identity {i!r}" for i in identities] + [f"path {str(p)!r}" for p in paths]
        raise GalleryError(
            f"{location}: no items match {', '.join(asked)}; see `siamese index info {location}`"
        )
    tally = IdentityTally(store, manifest, set(doomed.values()))
    store.delete(list(doomed))
    reached("milvus.vanished_deleted")
    gen = manifest.generation + 1
    published = publish(store, manifest, index_of(manifest), Policy(), gen, tally)
    return UpdateReport.published(
        location,
        published,
        started,
        removed=len(doomed),
    )
