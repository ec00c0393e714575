"""Galleries too large for one index in RAM: an IVF index built in parts and merged on disk.

Build (a merge): every live vector is streamed from the item database into a temporary file,
the IVF coarse quantizer (and codes) is trained on a sample, one index per part is filled in
parallel (local processes, or Ray tasks when Ray is initialised), and FAISS merges the parts'
lists into one memory-mapped file (``faiss.contrib.ondisk.merge_ondisk``). The header stores the
lists file by name only and is read with ``IO_FLAG_ONDISK_SAME_DIR``, so the folder can move.

Updates between merges: added items go to one small in-memory part searched beside the merged
lists (FAISS's ``HStackInvertedLists`` concatenates each list), and removed ids are filtered out
of every search (an ``IDSelectorNot``) until the next merge drops them. A merge happens once the
added and removed items reach :data:`MERGE_SHARE` of the merged lists.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk
from numpy.typing import NDArray

from siamese.core.errors import GalleryError, named
from siamese.core.files import atomic_path
from siamese.index.ondisk.files import (
    ROLE_DELTA,
    ROLE_LISTS,
    ROLE_REMOVED,
    PartFile,
    base_type,
    delta_file_name,
    fsync_file,
    lists_file_name,
    record,
    removed_file_name,
)
from siamese.index.ondisk.part import WORKER_SCRIPT, fill_part
from siamese.index.ondisk.read import (
    load_removed,
    open_index,
    parts_of,
    quiet_stdout,
    role,
    trained_empty,
)
from siamese.index.search import faiss_index as fx
from siamese.index.store.crash_points import reached
from siamese.index.store.gallery_files import index_file_name
from siamese.index.store.item_writer import ItemWriter
from siamese.index.store.manifest import Manifest

#: Items per part: each part is filled (quantizer assignment and encoding) by one worker.
PART_ITEMS = 1_000_000
#: Added plus removed items since the last merge, as a share of the merged lists, that trigger
#: the next merge (below it, a search scans the small added part beside the lists and skips
#: removed ids).
MERGE_SHARE = 0.2
#: Vectors read from SQLite, written, or added to an index at a time (bounded memory).
_STREAM_ROWS = 65_536
#: Training sample: points per IVF list, at least _MIN_TRAINING_SAMPLE in all, k-means iterations.
_TRAINING_POINTS_PER_LIST = 40
_MIN_TRAINING_SAMPLE = 20_000
_KMEANS_ITERATIONS = 10


# ----------------------------------------------------------------------------------- building
@dataclass
class Built:
    """What a publish of an on-disk generation wrote: its data files and the opened index."""

    index: faiss.Index
    header: str
    header_sha256: str
    header_bytes: int
    parts: list[PartFile]
    #: (ids, vectors) the merge was built from, for the recall check (None for an update).
    source: tuple[NDArray[np.int64], NDArray[np.float32]] | None = None
    temporary: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        """Delete the temporary vectors (after the recall check)."""
        self.source = None
        for path in self.temporary:
            path.unlink(missing_ok=True)


def _stream_live_vectors(
    items: ItemWriter, removed: NDArray[np.int64], dim: int, path: Path
) -> NDArray[np.int64]:
    """Write every live vector (published or staged, not removed) to ``path``; return the ids."""
    ids = []
    with open(path, "wb") as out:
        for chunk_ids, vectors in items.iter_live_vectors(dim, _STREAM_ROWS):
            keep = ~np.isin(chunk_ids, removed)
            out.write(np.ascontiguousarray(vectors[keep]).tobytes())
            ids.append(chunk_ids[keep])
        out.flush()
        os.fsync(out.fileno())
    return np.concatenate(ids) if ids else np.zeros(0, np.int64)


def _train(index_type: str, vectors: NDArray[np.float32]) -> faiss.Index:
    index = fx.new_index(vectors.shape[1], base_type(index_type))
    ivf = faiss.extract_index_ivf(index)
    wanted = max(_MIN_TRAINING_SAMPLE, _TRAINING_POINTS_PER_LIST * ivf.nlist)
    if len(vectors) < ivf.nlist:
        raise GalleryError(
            f"index type {index_type} needs at least {ivf.nlist} vectors to train, the gallery "
            f"has {len(vectors)}; choose a smaller index (or {named('index')} auto)"
        )
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(vectors), size=min(wanted, len(vectors)), replace=False))
    ivf.cp.niter = _KMEANS_ITERATIONS
    ivf.cp.max_points_per_centroid = _TRAINING_POINTS_PER_LIST * 4
    fx.train(index, np.asarray(vectors[sample]))
    return index


#: Runs ``function(*arguments)`` for each argument list elsewhere (a cluster's tasks) and returns
#: the results in order: how a caller hands the parts of an on-disk build to its own executor
#: (``siamese.engine.ray_pool.run_as_ray_tasks``); this package never imports one.
PartRunner = Callable[[Callable[..., dict[str, Any]], list[list[Any]]], list[dict[str, Any]]]


def _run_parts(jobs: list[list[Any]], runner: PartRunner | None = None) -> list[dict[str, Any]]:
    """Run part jobs: through ``runner`` when given, else one local process per part.

    Local parts run as separate Python processes (:data:`siamese.index.ondisk.part.COMMAND`),
    up to one per core: not a multiprocessing pool, whose spawned workers re-run an unguarded
    main script and whose forked ones can hang in OpenMP.
    """
    if runner is not None:
        return list(runner(fill_part, jobs))
    if len(jobs) == 1:
        return [fill_part(*jobs[0])]
    with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
        return list(pool.map(_run_process, jobs))


def _run_process(job: list[Any]) -> dict[str, Any]:
    command = [sys.executable, "-c", WORKER_SCRIPT, json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise GalleryError(f"{job[6]}: building this part failed ({reason})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def merge(
    gallery_dir: Path,
    items: ItemWriter,
    index_type: str,
    removed: NDArray[np.int64],
    generation: int,
    dim: int,
    *,
    trained: faiss.Index | None = None,
    runner: PartRunner | None = None,
) -> Built:
    """Build the generation from every live vector: train (unless given), fill parts, merge.

    Temporary files are hidden ``.tmp`` names that a writer opening the gallery removes.
    """
    tag = f"{generation:06d}"
    vectors_path = gallery_dir / f".vectors-{tag}.tmp"
    ids_path = gallery_dir / f".ids-{tag}.tmp"
    trained_path = gallery_dir / f".trained-{tag}.tmp"
    temporary = [vectors_path, ids_path, trained_path]
    clock, seconds = time.perf_counter(), {}

    def lap(phase: str) -> None:
        nonlocal clock
        seconds[phase] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    try:
        ids = _stream_live_vectors(items, removed, dim, vectors_path)
        with open(ids_path, "wb") as handle:
            np.save(handle, ids, allow_pickle=False)
        vectors = np.memmap(vectors_path, dtype=np.float32, mode="r", shape=(len(ids), dim))
        lap("stream")
        if trained is None:
            trained = _train(index_type, vectors)
        faiss.write_index(trained, str(trained_path))
        reached("ondisk-trained")
        lap("train")
        bounds = list(range(0, len(ids), PART_ITEMS)) + [len(ids)]
        spans = list(itertools.pairwise(bounds)) or [(0, 0)]
        threads = max(1, (os.cpu_count() or 1) // len(spans))
        jobs = []
        for n, (start, stop) in enumerate(spans):
            out = gallery_dir / f".part-{tag}-{n:04d}.tmp"
            temporary.append(out)
            jobs.append(
                [str(trained_path), str(vectors_path), str(ids_path), dim, start, stop, str(out),
                 threads]
            )  # fmt: skip
        built_parts = _run_parts(jobs, runner)
        reached("ondisk-parts-filled")
        lap("fill")
        lists_path = gallery_dir / lists_file_name(generation)
        merged = faiss.read_index(str(trained_path))
        with quiet_stdout():  # FAISS reports resizing the lists file on stdout
            merge_ondisk(merged, [job[6] for job in jobs], str(lists_path))
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(merged).invlists).filename = (
            lists_path.name  # the name alone: read back beside the header, wherever the folder is
        )
        header = index_file_name(generation)
        header_sha256, header_bytes = fx.write_index(merged, gallery_dir / header)
        del merged  # unmaps the lists file
        fsync_file(lists_path)
        lap("merge")
        lists = record(lists_path, ROLE_LISTS, len(ids), merged_from=built_parts, seconds=seconds)
        reached("ondisk-merged")
        for path in temporary[3:]:
            path.unlink(missing_ok=True)
        manifest_view = _view(header, [lists])
        index = open_index(gallery_dir, manifest_view)
        return Built(
            index, header, header_sha256, header_bytes, [lists], (ids, vectors), temporary[:3]
        )
    except BaseException:
        for path in temporary:
            path.unlink(missing_ok=True)
        raise


def _view(header: str, parts: list[PartFile]) -> Manifest:
    """A stand-in manifest naming only the files :func:`open_index` reads."""
    return Manifest(
        gallery_id="",
        generation=0,
        model_fingerprint="",
        model_path="",
        dimension=0,
        metric=fx.METRIC,
        index_type="",
        faiss_factory="",
        index_file=header,
        index_sha256="",
        index_bytes=0,
        items_fingerprint="",
        count=0,
        identities=0,
        created="",
        parts=[part.to_dict() for part in parts],
    )


def update(
    gallery_dir: Path,
    manifest: Manifest,
    removed: NDArray[np.int64],
    staged_ids: NDArray[np.int64],
    load_staged: Callable[[], tuple[NDArray[np.int64], NDArray[np.float32]]],
    generation: int,
) -> Built | None:
    """The next generation without a merge: the added part rewritten, removed ids recorded.

    Returns None when the changes since the last merge reach :data:`MERGE_SHARE` of it: merge.
    """
    parts = parts_of(manifest)
    lists = role(parts, ROLE_LISTS)
    if lists is None:
        return None
    delta, gone = role(parts, ROLE_DELTA), role(parts, ROLE_REMOVED)
    header = gallery_dir / manifest.index_file
    added = (
        fx.read_index(gallery_dir / delta.name, name=gallery_dir / delta.name)
        if delta
        else trained_empty(header)
    )
    in_added = fx.index_ids(added)
    from_added = removed[np.isin(removed, in_added)]
    previous = load_removed(gallery_dir / gone.name) if gone else np.zeros(0, np.int64)
    tombstones = np.union1d(previous, removed[~np.isin(removed, in_added)]).astype(np.int64)
    added_count = len(in_added) - len(from_added) + len(staged_ids)
    if added_count + len(tombstones) > MERGE_SHARE * max(lists.count, 1):
        return None
    staged_ids, staged_vectors = load_staged()
    if len(from_added):
        fx.remove_ids(added, from_added)
    fx.add_vectors(added, staged_vectors, staged_ids)
    new_parts = [lists]
    if added.ntotal:
        path = gallery_dir / delta_file_name(generation)
        fx.write_index(added, path)
        new_parts.append(record(path, ROLE_DELTA, added.ntotal))
    if len(tombstones):
        path = gallery_dir / removed_file_name(generation)
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.save(handle, tombstones, allow_pickle=False)
        new_parts.append(record(path, ROLE_REMOVED, len(tombstones)))
    reached("ondisk-part-written")
    view = _view(manifest.index_file, new_parts)
    return Built(
        open_index(gallery_dir, view),
        manifest.index_file,
        manifest.index_sha256,
        manifest.index_bytes,
        new_parts,
    )


def reusable_quantizer(gallery_dir: Path, manifest: Manifest, index_type: str, live: int) -> Any:
    """The trained empty index of the last merge when a new merge may keep it, else None.

    Kept while the type is the same and the gallery has not doubled since it was trained.
    """
    lists = role(parts_of(manifest), ROLE_LISTS)
    if manifest.index_type != index_type or lists is None or live > 2 * lists.count:
        return None
    return trained_empty(gallery_dir / manifest.index_file)
