"""Gallery updates: build (create, or sync to a folder), add files, remove items.

Work is committed in chunks: each chunk of embedded files is staged durably in SQLite, and new
generations are published as the chunks accumulate (spaced so the total index rewriting stays
linear in the gallery size). A run killed at any point leaves the last published generation
intact, and the next run resumes from the staged chunks instead of embedding them again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamese.core.errors import DataError, GalleryError, named
from siamese.core.progress import progress_bar
from siamese.data.image_folder import scan_gallery_folder
from siamese.data.image_list import scan_image_list
from siamese.index.published import refuse_other_model
from siamese.index.search import faiss_index as fx
from siamese.index.search.index_choice import default_memory_budget, parse_memory, resolve_index
from siamese.index.search.recall import DEFAULT_TARGET
from siamese.index.store.gallery_files import REJECTED_FILE
from siamese.index.store.item_writer import NewItem
from siamese.index.store.manifest import MANIFEST_FILE
from siamese.index.updates.embeds import Embeds
from siamese.index.updates.reports import UpdateReport, write_rejected_report
from siamese.index.updates.sync import SyncPlan, canonical_path, chunks, hash_files, plan_sync
from siamese.index.updates.writer import GalleryWriter, RecallPolicy

#: Files embedded between two commits.
DEFAULT_COMMIT_EVERY = 1000
#: A new generation is published once the staged items reach this share of the gallery.
_PUBLISH_GROWTH = 4
#: The writer's default recall policy (frozen, so one instance serves every call).
_PUBLISH_AS_IS = RecallPolicy()


@dataclass
class _Ingested:
    embedded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)  # ids of changed files, still to withdraw


def _check_model(writer: GalleryWriter, embedder: Embeds) -> None:
    refuse_other_model(
        writer.gallery_dir, writer.manifest, embedder.fingerprint, str(embedder.model_path)
    )


def _pair_record(embedder: Embeds) -> dict[str, Any] | None:
    """The manifest's pair record for a pair's gallery tower; None for a single tower.

    ``pair`` is optional on an embedder (engine.Embedder has it; stand-ins need not).

    Raises:
        GalleryError: the model is a pair's query tower, which must not build galleries.
    """
    pair = getattr(embedder, "pair", None)
    if pair is None:
        return None
    model = Path(embedder.model_path).resolve()
    if pair.role != "gallery":
        raise GalleryError(
            f"{model}: the query tower of a pair; build the gallery with its gallery tower "
            f"({pair.partner_file})"
        )
    return {
        "fingerprint": pair.fingerprint,
        "query_model": str(model.parent / pair.partner_file),
        "query_kind": pair.partner_kind,
        "query_tower": pair.partner,
    }


def _ingest(
    writer: GalleryWriter,
    embedder: Embeds,
    plan: SyncPlan,
    *,
    commit_every: int,
    incremental: bool,
    progress: bool,
) -> _Ingested:
    """Hash, embed and stage the plan's candidates chunk by chunk, publishing as chunks pile up."""
    done = _Ingested(failures=list(plan.failures))
    pending = plan.resumed
    with progress_bar("embedding", len(plan.candidates), progress) as ticker:
        for chunk in chunks(plan.candidates, commit_every):
            hashed, failures = hash_files(chunk)
            done.failures += failures
            to_embed, touched, dropped_staged = {}, [], []
            for candidate, sha in hashed:
                known = candidate.known
                if known and (known.sha256, known.identity) == (sha, candidate.identity):
                    touched.append(
                        (known.id, candidate.size, candidate.mtime_ns)
                    )  # same content, new mtime
                    continue
                if known:
                    for item_id, staged in ((known.id, known.staged), *known.older):
                        (dropped_staged if staged else done.replaced).append(item_id)
                to_embed[candidate.path] = (candidate, sha)
            rows = []
            for batch in embedder.iter_embed_paths(list(to_embed)):
                done.failures += batch.failures
                for path, vector in zip(batch.paths, batch.embeddings):
                    candidate, sha = to_embed[path]
                    rows.append(
                        NewItem(
                            path,
                            candidate.identity,
                            sha,
                            candidate.size,
                            candidate.mtime_ns,
                            vector,
                        )
                    )
            writer.items.delete_staged(dropped_staged)
            writer.items.touch(touched)
            writer.items.stage(rows)
            done.embedded += len(rows)
            pending += len(rows)
            ticker.advance(len(chunk))
            if (
                incremental
                and pending >= max(commit_every, writer.manifest.count // _PUBLISH_GROWTH)
                and writer.can_publish_incrementally()
            ):
                writer.publish(removed=done.replaced, recall=RecallPolicy(measure=False))
                done.replaced, pending = [], 0
    return done


def _report(
    writer: GalleryWriter,
    before: int,
    started: float,
    plan: SyncPlan,
    done: _Ingested,
    removed: int,
    report_path: Path,
) -> UpdateReport:
    manifest = writer.manifest
    return UpdateReport.published(
        writer.gallery_dir,
        manifest,
        started,
        added=manifest.count - before + removed,
        removed=removed,
        embedded=done.embedded,
        resumed=plan.resumed,
        unchanged=plan.unchanged,
        failures=done.failures,
        report_path=report_path,
    )


def _update(
    writer: GalleryWriter,
    embedder: Embeds,
    plan: SyncPlan,
    *,
    command: str,
    source: str,
    index_type: str | None = None,
    search_params: dict[str, int] | None = None,
    recall: RecallPolicy = _PUBLISH_AS_IS,
    commit_every: int = DEFAULT_COMMIT_EVERY,
    report_path: Path | None = None,
    progress: bool = False,
) -> UpdateReport:
    """Apply a plan with an open writer: embed, stage, publish, report."""
    started, before = time.perf_counter(), writer.manifest.count
    if commit_every < 1:
        raise GalleryError(f"commit_every must be at least 1, got {commit_every}")
    writer.items.delete_staged(plan.vanished_staged)
    same_type = index_type is None or index_type == writer.manifest.index_type
    done = _ingest(
        writer, embedder, plan, commit_every=commit_every, incremental=same_type, progress=progress
    )
    removed = sorted(set(done.replaced) | set(plan.vanished_published))
    staged = writer.items.staged(writer.dimension)[0]
    changed = (
        len(staged)
        or removed
        or not same_type
        or search_params is not None
        or recall.minimum is not None
        or writer.needs_repair()
    )
    if changed or writer.manifest.generation == 0:
        writer.publish(
            removed=removed, index_type=index_type, search_params=search_params, recall=recall
        )
    report_path = report_path or writer.gallery_dir / REJECTED_FILE
    write_rejected_report(report_path, command, source, done.failures)
    return _report(writer, before, started, plan, done, writer.removed_count, report_path)


def build_gallery(
    image_dir: str | os.PathLike[str],
    embedder: Embeds,
    gallery_dir: str | os.PathLike[str],
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
    """Build ``gallery_dir`` from an ImageFolder (or loose files) or update an existing one from it.

    ``image_dir`` may also be a list file (.csv or .parquet with columns path and identity,
    relative paths against the list's folder): the gallery then holds exactly what it names.

    Re-running on a changed folder embeds only new or changed files (by content hash), removes
    items whose files vanished from the folder, and resumes the staged chunks of a killed run.

    Args:
        index: a FAISS index type ("Flat", "HNSW32", "IVF1024,PQ16"…), "auto", "ondisk" or an
            on-disk type ("ondisk:IVF4096_HNSW32,SQ8"); None keeps the gallery's (Flat for a new
            one). Another type is rebuilt from the stored embeddings, without embedding again.
        memory_budget: bytes the index may use, or a size such as "8G", for ``index="auto"``
            (default: half the RAM).
        min_recall: refuse (publish nothing) if recall@10 against exact search is below this.
        target_recall: the recall@10 the search parameter is tuned to (None: 0.95).
        search_params: fixed search parameters ({"nprobe": 16}, {"efSearch": 64}), not tuned.
        commit_every, recall_queries: files embedded between commits; recall's query count.
        report_path: where the JSON list of refused files goes (default:
            ``gallery_dir/rejected.json``).
        part_runner: where the parts of an on-disk merge run (ondisk.PartRunner; default:
            local processes).

    Raises:
        DataError: no images in ``image_dir``.
        GalleryError: ``gallery_dir`` is not a gallery, is locked by another writer, or is damaged.
        ModelMismatchError: the gallery was built with another model.
        RecallTooLowError: the index misses ``min_recall``.
    """
    if isinstance(memory_budget, str):
        memory_budget = parse_memory(memory_budget) if memory_budget else None
    root = canonical_path(Path(image_dir))
    listed = os.path.isfile(root)  # a CSV or Parquet list of path, identity
    scan = _scan_source(image_dir, root, listed)
    files = [(canonical_path(item.path), item.identity) for item in scan.images]
    choice = resolve_index(
        index, len(files), embedder.dim, memory_budget or default_memory_budget()
    )
    index_type = choice.index_type if choice else index
    writer, index_type = _writer_for_build(
        Path(gallery_dir), embedder, index_type, search_params, len(files), image_dir
    )
    writer.part_runner = part_runner
    with writer:
        # A list is the whole gallery: items it no longer names go, wherever their files are.
        vanish_under = os.sep if listed else root
        plan = plan_sync(files, writer.items.known_files(), vanish_under=vanish_under)
        plan.failures += scan.refused
        report = _update(
            writer,
            embedder,
            plan,
            command="build",
            source=root,
            index_type=index_type,
            search_params=search_params,
            recall=_build_recall(min_recall, target_recall, recall_queries),
            commit_every=commit_every,
            report_path=Path(report_path) if report_path else None,
            progress=progress,
        )
    if choice is not None:
        report.choice = {"asked": index, **_choice_record(choice)}
    return report


def _build_recall(
    min_recall: float | None, target_recall: float | None, queries: int
) -> RecallPolicy:
    """A build measures recall (and tunes to the target) on every approximate index."""
    target = DEFAULT_TARGET if target_recall is None else target_recall
    return RecallPolicy(True, target, min_recall, queries)


def _choice_record(choice: Any) -> dict[str, Any]:
    """What ``--index auto`` chose and why, for the report."""
    return {
        "index_type": choice.index_type,
        "expected_recall_at10": choice.expected_recall_at10,
        "estimated_bytes": choice.estimated_bytes,
        "reason": choice.reason,
    }


def _scan_source(image_dir: str | os.PathLike[str], root: Path, listed: bool) -> Any:
    """The images a build reads: a folder's, or those a list file names (refused ones apart)."""
    scan = scan_image_list(root) if listed else scan_gallery_folder(root)
    if not scan.images:
        raise DataError(
            f"{image_dir}: the list names no images"
            if listed
            else f"{image_dir}: no images found (expected one sub-folder per identity or image "
            "files)"
        )
    return scan


def _writer_for_build(
    gallery_dir: Path,
    embedder: Embeds,
    index_type: str | None,
    search_params: dict[str, int] | None,
    count: int,
    source: str | os.PathLike[str],
) -> tuple[GalleryWriter, str | None]:
    """The writer of an existing gallery (bound to this model), or of a new one; its index type."""
    if (gallery_dir / MANIFEST_FILE).exists():
        writer = GalleryWriter.open(gallery_dir)
        try:
            _check_model(writer, embedder)
        except BaseException:
            writer.close()
            raise
        return writer, index_type
    _refuse_foreign_folder(gallery_dir)
    index_type = index_type or fx.DEFAULT_INDEX
    needed = fx.min_training_vectors(fx.new_index(embedder.dim, index_type))
    if count < needed:
        raise GalleryError(
            f"index type {index_type} needs at least {needed} vectors to train, {source} "
            f"has {count} images; choose a smaller index or let one be chosen "
            f"({named('index')} auto)"
        )
    writer = GalleryWriter.create(
        gallery_dir,
        dimension=embedder.dim,
        model_fingerprint=embedder.fingerprint,
        model_path=str(embedder.model_path.resolve()),
        index_type=index_type,
        search_params=search_params,
        pair=_pair_record(embedder),
    )
    return writer, index_type


def _refuse_foreign_folder(gallery_dir: Path) -> None:
    if gallery_dir.exists() and not gallery_dir.is_dir():
        raise GalleryError(f"{gallery_dir}: exists and is a file; choose another gallery folder")
    if gallery_dir.is_dir() and any(not p.name.startswith(".") for p in gallery_dir.iterdir()):
        raise GalleryError(
            f"{gallery_dir}: folder holds other files and is not a gallery; choose an empty or new "
            f"gallery folder ({named('gallery_dir')})"
        )


def add_to_gallery(
    gallery_dir: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    embedder: Embeds,
    *,
    identity: str | None = None,
    commit_every: int = DEFAULT_COMMIT_EVERY,
    min_recall: float | None = None,
    report_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> UpdateReport:
    """Embed and add image files and folders to an existing gallery.

    Files already there and unchanged are skipped.

    A folder is read like `index build` reads one (sub-folder = identity, loose file = its own
    identity); a file's identity is its folder's name. ``identity`` overrides both.

    Raises:
        GalleryError: not a gallery, locked, or damaged.
        ModelMismatchError: the gallery was built with another model.
    """
    files: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            scan = scan_gallery_folder(path)
            files += [
                (canonical_path(item.path), identity or item.identity) for item in scan.images
            ]
            refused += scan.refused
        else:
            canonical = canonical_path(path)
            files.append((canonical, identity or Path(canonical).parent.name))
    if not files and not refused:
        raise DataError(f"no image files in {', '.join(map(str, paths))}")
    with GalleryWriter.open(gallery_dir) as writer:
        _check_model(writer, embedder)
        plan = plan_sync(files, writer.items.known_files())
        plan.failures += refused
        return _update(
            writer,
            embedder,
            plan,
            command="add",
            source=" ".join(map(str, paths)),
            commit_every=commit_every,
            recall=RecallPolicy(minimum=min_recall),
            report_path=Path(report_path) if report_path else None,
            progress=progress,
        )


def remove_from_gallery(
    gallery_dir: str | os.PathLike[str],
    *,
    identities: Sequence[str] = (),
    paths: Sequence[str | os.PathLike[str]] = (),
) -> UpdateReport:
    """Remove the items of ``identities`` and at ``paths`` (a folder removes every item under it).

    Raises:
        GalleryError: nothing matches, or the gallery is not a gallery, locked or damaged.
    """
    if not identities and not paths:
        raise GalleryError(
            f"name what to remove: identities ({named('identities')} NAME) or paths "
            f"({named('paths')} PATH)"
        )
    started = time.perf_counter()
    with GalleryWriter.open(gallery_dir) as writer:
        before = writer.manifest.count
        published, staged = writer.items.matching(
            identities=list(identities), paths=[canonical_path(p) for p in paths]
        )
        if not published and not staged:
            wanted = ", ".join(
                [f"identity {i!r}" for i in identities] + [f"path {str(p)!r}" for p in paths]
            )
            raise GalleryError(
                f"{gallery_dir}: no items match {wanted}; see `siamese index info {gallery_dir}`"
            )
        writer.items.delete_staged(staged)
        if published:
            writer.publish(removed=published)
        return _report(writer, before, started, SyncPlan(), _Ingested(), writer.removed_count, None)
