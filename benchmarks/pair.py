"""Pseudo-siamese pair benchmark: cross-domain retrieval on identities unseen in training.

Generated two-domain data (siamese.demos.synthetic.generate_pair_identities: photos, sketches and
captions of scenes); towers train on ``identities`` identities and are measured on ``unseen``
others (another seed). Gallery: the unseen identities' photos. Queries: their sketches and their
captions. Figures: recall@1, recall@5 and mAP@R (siamese.core.metrics.retrieval_metrics) for

- sketch → photo: the pair (grey sketch tower, RGB photo tower), the shared-weight Siamese tower
  trained on the same pairs (``--share-weights``), raw pixels (grey, the photo's size), PCA of
  raw pixels fitted on the training photos and sketches, and chance (random vectors);
- text → photo: the text → photo pair, and chance (raw pixels do not apply);

plus each side's embedding throughput through the exported ONNX files (engine), and a text
query end to end (tokenise, embed, search a Flat gallery of ``gallery_size`` vectors through
``Gallery.search``) as p50/p95 latency.

Options (-O key=value): identities=150 unseen=40 epochs=10 photo=64 sketch=48 pca=64
gallery_size=100000 queries=200 steps=0 (0: about one pass over the photos per epoch,
at least 20) seed=0. --quick: 16 identities, 8 unseen, 1 epoch, 20k gallery.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import BenchSettings, latency_stats

from siamese.core.metrics import retrieval_metrics
from siamese.demos.pair import PairDemoConfig, generate_pair_data, pair_train_config

_DEFAULTS = {
    "identities": 150,
    "unseen": 40,
    "epochs": 10,
    "photo": 64,
    "sketch": 48,
    "pca": 64,
    "gallery_size": 100_000,
    "queries": 200,
    "steps": 0,
    "seed": 0,
}
_QUICK = {"identities": 16, "unseen": 8, "epochs": 1, "gallery_size": 20_000, "queries": 30}


def _retrieval(queries: np.ndarray, q_labels: list[str], gallery: np.ndarray, g_labels: list[str]):
    found = retrieval_metrics(queries, np.array(q_labels), gallery, np.array(g_labels), ks=(1, 5))
    return {k: round(float(found[k]), 4) for k in ("recall_at_1", "recall_at_5", "map_at_r")}


def _pixels(paths: list[Path], size: int) -> np.ndarray:
    """Grey pixels at ``size`` px, flattened, centred and L2-normalised (the raw baseline)."""
    from PIL import Image

    rows = []
    for path in paths:
        with Image.open(path) as image:
            grey = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            rows.append(np.asarray(grey, dtype=np.float32).ravel() / 255.0)
    data = np.stack(rows)
    data -= data.mean(axis=1, keepdims=True)
    return data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-6)


def _images(folder: Path) -> tuple[list[Path], list[str]]:
    from siamese.data.image_folder import scan_image_folder

    items = scan_image_folder(folder)
    return [i.path for i in items], [i.identity for i in items]


def _embed(model: Path, paths: list[Path]) -> tuple[np.ndarray, float]:
    """Embeddings through the engine, and images per second (the second of two passes)."""
    from siamese.engine import Embedder

    with Embedder(model, device="cpu") as embedder:
        embedder.embed_paths(paths)
        started = time.perf_counter()
        vectors = embedder.embed_paths(paths).embeddings
        return vectors, len(paths) / (time.perf_counter() - started)


#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = tuple(_DEFAULTS)


def run(settings: BenchSettings) -> dict[str, Any]:
    from siamese.data.captions import read_captions
    from siamese.engine import TextEmbedder
    from siamese.export import export_onnx
    from siamese.export.pair_export import export_pair
    from siamese.index import Gallery, GalleryWriter
    from siamese.training import train

    values = {**_DEFAULTS, **(_QUICK if settings.quick else {})}
    values.update({k: int(v) for k, v in settings.options.items() if k in _DEFAULTS})
    work = Path(settings.work_dir) / "pair"
    shutil.rmtree(work, ignore_errors=True)
    config = PairDemoConfig(
        out_dir=str(work),
        train_identities=values["identities"],
        unseen_identities=values["unseen"],
        photo_size=values["photo"],
        sketch_size=values["sketch"],
        epochs=values["epochs"],
        steps_per_epoch=values["steps"] or None,
        seed=values["seed"],
    )
    train_data, unseen = generate_pair_data(config, work / "data")
    photo_paths, photo_ids = _images(unseen.photos)
    sketch_paths, sketch_ids = _images(unseen.sketches)
    rng = np.random.default_rng(values["seed"])
    result: dict[str, Any] = {"settings": values, "sketch_to_photo": {}, "text_to_photo": {}}
    seconds: dict[str, float] = {}

    # sketch → photo: the pair, and the shared-weight tower on the same pairs
    for name, changes in (("pair", {}), ("shared", {"share_weights": True, "query_channels": 3})):
        started = time.perf_counter()
        run_dir = work / f"run-sketch-{name}"
        if name == "shared":  # one tower, one input spec: the photos' (sketches read as RGB)
            changes = {**changes, "query_image_size": None}
        train(pair_train_config(config, train_data, run_dir, "sketch", **changes))
        seconds[f"train_{name}"] = round(time.perf_counter() - started, 1)
        if name == "pair":
            report = export_pair(run_dir, work / "sketch.onnx")
            query_model, gallery_model = report.query.path, report.gallery.path
        else:
            query_model = gallery_model = export_onnx(run_dir, work / "shared.onnx").path
        gallery, gallery_rate = _embed(gallery_model, photo_paths)
        queries, query_rate = _embed(query_model, sketch_paths)
        result["sketch_to_photo"][name] = _retrieval(queries, sketch_ids, gallery, photo_ids)
        result["sketch_to_photo"][name]["throughput_per_s"] = {
            "query_side": round(query_rate, 1),
            "gallery_side": round(gallery_rate, 1),
        }
    size = values["photo"]
    raw_g, raw_q = _pixels(photo_paths, size), _pixels(sketch_paths, size)
    result["sketch_to_photo"]["raw_pixels"] = _retrieval(raw_q, sketch_ids, raw_g, photo_ids)
    fit_paths = _images(train_data.photos)[0] + _images(train_data.sketches)[0]
    fit = _pixels(fit_paths, size)
    mean = fit.mean(axis=0)
    basis = np.linalg.svd(fit - mean, full_matrices=False)[2][: values["pca"]].T

    def project(x: np.ndarray) -> np.ndarray:
        y = (x - mean) @ basis
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-6)

    result["sketch_to_photo"]["pca"] = _retrieval(
        project(raw_q), sketch_ids, project(raw_g), photo_ids
    )
    chance = rng.normal(size=(len(sketch_paths) + len(photo_paths), 32)).astype(np.float32)
    result["sketch_to_photo"]["chance"] = _retrieval(
        chance[: len(sketch_paths)], sketch_ids, chance[len(sketch_paths) :], photo_ids
    )

    # text → photo
    started = time.perf_counter()
    run_dir = work / "run-text"
    train(pair_train_config(config, train_data, run_dir, "text"))
    seconds["train_text"] = round(time.perf_counter() - started, 1)
    report = export_pair(run_dir, work / "text.onnx")
    captions = read_captions(unseen.captions)
    texts, text_ids = [c.text for c in captions], [c.identity for c in captions]
    gallery, gallery_rate = _embed(report.gallery.path, photo_paths)
    text_embedder = TextEmbedder(report.query.path, device="cpu")
    text_embedder.embed_texts(texts)
    started = time.perf_counter()
    text_vectors = text_embedder.embed_texts(texts)
    text_rate = len(texts) / (time.perf_counter() - started)
    result["text_to_photo"]["pair"] = {
        **_retrieval(text_vectors, text_ids, gallery, photo_ids),
        "throughput_per_s": {
            "query_side": round(text_rate, 1),
            "gallery_side": round(gallery_rate, 1),
        },
    }
    chance = rng.normal(size=(len(texts) + len(photo_paths), 32)).astype(np.float32)
    result["text_to_photo"]["chance"] = _retrieval(
        chance[: len(texts)], text_ids, chance[len(texts) :], photo_ids
    )

    # a text query end to end on a large gallery: tokenise, embed, search (Flat, one thread)
    dim, count = text_embedder.dim, values["gallery_size"]
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    big = work / "gallery-100k"
    with GalleryWriter.create(
        big, dimension=dim, model_fingerprint="0" * 64, model_path="generated"
    ) as writer:
        for start in range(0, count, 50_000):
            chunk = range(start, min(start + 50_000, count))
            writer.stage_embeddings(
                vectors[chunk.start : chunk.stop],
                [f"vec/{i}" for i in chunk],
                [f"id{i % 1000}" for i in chunk],
            )
        writer.publish()
    latencies = []
    with Gallery.open(big) as opened:
        for text in (texts * (values["queries"] // max(1, len(texts)) + 1))[: values["queries"]]:
            started = time.perf_counter()
            opened.search(text_embedder.embed_texts([text]), k=5, threads=1)
            latencies.append(time.perf_counter() - started)
    result["text_query_end_to_end"] = {"gallery_size": count, **latency_stats(latencies)}
    result["seconds"] = seconds
    return result
