"""What updates between merges cost an on-disk gallery's searches (why it merges at a fifth).

    siamese bench ondisk_updates [-O size=1e5] [-O share=0.1] [-O nprobe=32]

One on-disk gallery of ``size`` vectors (the gallery_scale mixture, dimension 256) is searched
(single queries, one FAISS thread, the best of 3 rounds of 300 queries) merged; with ``share`` of
its size added as the part searched beside the merged lists; with as many ids removed too (skipped
by every search); and merged again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from _harness import BenchSettings
from gallery_scale import Mixture

from siamese.index import Gallery, GalleryWriter, RecallPolicy
from siamese.index.ondisk import build as ondisk

_NO_RECALL = RecallPolicy(measure=False)


def _single_query_ms(folder: Path, queries: np.ndarray) -> tuple[float, list[str]]:
    faiss.omp_set_num_threads(1)
    with Gallery.open(folder) as gallery:
        for row in queries[:30]:
            gallery.nearest(row[None], 10)
        rounds = []
        for _ in range(3):
            started = time.perf_counter()
            for row in queries:
                gallery.nearest(row[None], 10)
            rounds.append((time.perf_counter() - started) / len(queries) * 1000)
        return round(min(rounds), 3), [part["role"] for part in gallery.manifest.parts]


#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = ("size", "share", "nprobe")


def run(settings: BenchSettings) -> dict[str, Any]:
    """Single-query latency merged, with an added part, with removed ids, merged again."""
    size = settings.option("size", 20_000 if settings.quick else 100_000, lambda s: int(float(s)))
    share = settings.option("share", 0.1, float)
    nprobe = settings.option("nprobe", 32, int)
    extra = int(size * share)
    mixture = Mixture(size + extra, 256)
    vectors = np.concatenate([chunk for _, chunk in mixture.chunks()])
    queries = mixture.queries(300)
    folder = settings.work_dir / "ondisk-updates"
    shutil.rmtree(folder, ignore_errors=True)

    def stage(writer: GalleryWriter, rows: range) -> None:
        writer.stage_embeddings(vectors[rows.start : rows.stop], [f"v/{i}" for i in rows],
                                ["c"] * len(rows))  # fmt: skip

    rows = {}
    with GalleryWriter.create(
        folder,
        dimension=256,
        model_fingerprint="0" * 64,
        model_path="generated",
        index_type=f"ondisk:IVF{512 if size <= 200_000 else 2048}_HNSW32,SQ8",
    ) as writer:
        stage(writer, range(size))
        writer.publish(search_params={"nprobe": nprobe}, recall=_NO_RECALL)
    rows["merged"] = _single_query_ms(folder, queries)
    with GalleryWriter.open(folder) as writer:
        stage(writer, range(size, size + extra))
        writer.publish(recall=_NO_RECALL)
    rows["with_added_part"] = _single_query_ms(folder, queries)
    with GalleryWriter.open(folder) as writer:
        writer.publish(removed=list(range(1, extra + 1)), recall=_NO_RECALL)
    rows["with_added_part_and_removed_ids"] = _single_query_ms(folder, queries)
    previous, ondisk.MERGE_SHARE = ondisk.MERGE_SHARE, 0.0  # the next publish merges
    try:
        with GalleryWriter.open(folder) as writer:
            writer.publish(removed=[extra + 1], recall=_NO_RECALL)
    finally:
        ondisk.MERGE_SHARE = previous
    rows["merged_again"] = _single_query_ms(folder, queries)
    shutil.rmtree(folder, ignore_errors=True)
    base = rows["merged"][0]
    return {
        "size": size,
        "share": share,
        "nprobe": nprobe,
        "single_query_ms": {name: value for name, (value, _) in rows.items()},
        "parts": {name: roles for name, (_, roles) in rows.items()},
        "relative_to_merged": {name: round(value / base, 3) for name, (value, _) in rows.items()},
    }
