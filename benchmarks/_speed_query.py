"""Single-query latency against a large exact gallery.

Read a JPEG, embed, search, return identities.

The gallery is built through the public ``Gallery.build``: its real part is the photo scenes'
first views embedded by the model, and the rest (up to the requested size, 100k by default) is
filler: links to one small image whose embeddings are random unit vectors, supplied by a
stand-in embedder, so a 100k-item exact index exists without decoding 100k pictures. An exact
(flat) search costs the same whatever the vectors hold.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _harness import latency_stats

from siamese.core.errors import GalleryError
from siamese.engine import Embedder, EmbedResult

_FILLER_PER_IDENTITY = 10


class _StandInEmbedder:
    """A `siamese.index.Embeds` for Gallery.build.

    Real embeddings for real files, random ones for filler.
    """

    def __init__(self, real: Embedder, known: dict[str, np.ndarray], seed: int = 0) -> None:
        self.dim, self.fingerprint, self.model_path = real.dim, real.fingerprint, real.model_path
        self.known = known
        self.rng = np.random.default_rng(seed)

    def iter_embed_paths(self, paths: Iterable[str]) -> Iterator[EmbedResult]:
        names = list(paths)
        for start in range(0, len(names), 4096):
            chunk = names[start : start + 4096]
            vectors = self.rng.standard_normal((len(chunk), self.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for row, name in enumerate(chunk):
                if name in self.known:
                    vectors[row] = self.known[name]
            yield EmbedResult(vectors, chunk, [])


def build_gallery(
    root: Path, embedder: Embedder, real: list[Path], filler_target: Path, size: int
) -> Path:
    """A gallery of ``size`` items (real photos plus filler), reused while model and size match."""
    from siamese.index import Gallery

    gallery_dir, images_dir = root / f"gallery-{size}", root / f"gallery-{size}-images"
    if gallery_dir.exists():
        try:
            facts = Gallery.facts(gallery_dir)
        except GalleryError:
            facts = {}  # an unfinished or damaged one: built afresh
        if facts.get("count") == size and facts.get("model_fingerprint") == embedder.fingerprint:
            return gallery_dir
        shutil.rmtree(
            gallery_dir
        )  # another model's or size's gallery: a gallery refuses a second model
    if not images_dir.is_dir():
        for path in real:
            link = images_dir / path.parent.name / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
        for index in range(max(0, size - len(real))):
            link = (
                images_dir
                / f"filler_{index // _FILLER_PER_IDENTITY:06d}"
                / f"{index % _FILLER_PER_IDENTITY}.jpg"
            )
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(filler_target.resolve())
    result = embedder.embed_paths(real)
    known = {
        os.fspath(images_dir / Path(p).parent.name / Path(p).name): v
        for p, v in zip(result.paths, result.embeddings)
    }
    Gallery.build(images_dir, _StandInEmbedder(embedder, known), gallery_dir)
    return gallery_dir


def query_latency(
    gallery_dir: Path, model: Path, queries: list[Path], k: int = 5
) -> dict[str, Any]:
    """Per-query wall time of embed + search + identity lookup.

    Measured after the engine and gallery are open.
    """
    from siamese.index import Gallery

    started = time.perf_counter()
    embedder = Embedder(model)
    gallery = Gallery.open(gallery_dir, model_fingerprint=embedder.fingerprint)
    open_ms = (time.perf_counter() - started) * 1000
    totals, embeds, searches, hits = [], [], [], 0
    with gallery:
        for path in queries[:3]:  # warm the caches the first real query would otherwise pay for
            gallery.search(embedder.embed_paths([path]).embeddings, k=k)
        for path in queries:
            t0 = time.perf_counter()
            embedded = embedder.embed_paths([path])
            t1 = time.perf_counter()
            (result,) = gallery.search(embedded.embeddings, k=k)
            identities = [match.identity for match in result.identities]
            t2 = time.perf_counter()
            totals.append(t2 - t0)
            embeds.append(t1 - t0)
            searches.append(t2 - t1)
            hits += identities[0] == path.parent.name
        size, factory = len(gallery), gallery.info()["faiss_factory"]
    return {
        "gallery_items": size,
        "faiss_factory": factory,
        "end_to_end": latency_stats(totals),
        "embed_p50_ms": round(statistics.median(embeds) * 1000, 3),
        "search_p50_ms": round(statistics.median(searches) * 1000, 3),
        "engine_and_gallery_open_ms": round(open_ms, 1),
        "top1_same_scene": round(hits / len(queries), 3),
    }


def cold_query_ms(gallery_dir: Path, query: Path, runs: int = 3) -> dict[str, Any]:
    """Wall time of a fresh `siamese query --json` process.

    Imports, model and gallery opening, one query.
    """
    command = [
        sys.executable,
        "-c",
        "from siamese.cli import app; app()",
        "query",
        str(query),
        "--gallery",
        str(gallery_dir),
        "--json",
    ]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            return {
                "error": done.stderr.strip().splitlines()[-1]
                if done.stderr.strip()
                else f"exit {done.returncode}"
            }
    return {"process_ms_median": round(statistics.median(times) * 1000, 1), "runs": runs}
