"""`siamese demo --pair`: pseudo-siamese pairs end to end on generated data, offline.

Generate identities in two domains (photos, sketches) with captions → train a sketch → photo
pair and a text → photo pair on some identities → export both pairs → build a gallery of photos
of identities no tower saw with each pair's gallery tower → query it with those identities'
sketches (through the sketch tower) and captions (through the text tower) → report top-1 and
top-5 identification against chance. The helpers here are also what ``siamese bench pair``
(benchmarks/pair.py) builds on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from siamese.core.files import demo_folder, write_json_atomic
from siamese.core.progress import Laps
from siamese.demos.synthetic import PairPaths, PairSpec, generate_pair_identities


@dataclass(frozen=True)
class PairDemoConfig:
    """Sizes of the pair demo; defaults take some minutes on 2 idle CPU cores (measured: 8.8 min
    with 3 epochs at 64/48 px on a machine loaded 4× over)."""

    out_dir: str | None = None
    train_identities: int = 120
    unseen_identities: int = 30
    photos_per_identity: int = 4
    sketches_per_identity: int = 3
    captions_per_identity: int = 3
    photo_size: int = 48
    sketch_size: int = 40
    epochs: int = 5
    steps_per_epoch: int | None = None
    seed: int = 0
    k: int = 5


@dataclass
class PairDemoReport:
    """What the pair demo measured on identities unseen in training."""

    out_dir: str
    identities: int
    sketch_queries: int
    text_queries: int
    sketch_top1: float
    sketch_top5: float
    text_top1: float
    text_top5: float
    chance_top1: float
    seconds: dict[str, float]
    matches_png: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def generate_pair_data(config: PairDemoConfig, root: Path) -> tuple[PairPaths, PairPaths]:
    """Training identities and unseen ones (another seed: scenes no tower trains on)."""
    spec = PairSpec(
        identities=config.train_identities,
        photos_per_identity=config.photos_per_identity,
        sketches_per_identity=config.sketches_per_identity,
        captions_per_identity=config.captions_per_identity,
        photo_size=config.photo_size,
        sketch_size=config.sketch_size,
    )
    train = generate_pair_identities(root / "train", spec, seed=config.seed)
    unseen_spec = PairSpec(**{**asdict(spec), "identities": config.unseen_identities})
    unseen = generate_pair_identities(root / "unseen", unseen_spec, seed=config.seed + 10_000)
    return train, unseen


def pair_train_config(
    config: PairDemoConfig, data: PairPaths, out: Path, query: str, **changes: Any
) -> Any:
    """The TrainConfig of a ``query`` ("sketch" or "text") → photo pair on ``data``."""
    from siamese.training import TrainConfig

    side: dict[str, Any] = (
        {"captions": str(data.captions)}
        if query == "text"
        else {
            "query_data": str(data.sketches),
            "query_channels": 1,
            "query_image_size": config.sketch_size,
        }
    )
    return TrainConfig(
        data_dir=str(data.photos),
        out_dir=str(out),
        channels=3,
        image_size=config.photo_size,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        seed=config.seed,
        identities_per_batch=16,
        images_per_identity=2,
        val_fraction=0.15,
        **{**side, **changes},
    )


def top_k_hits(results: list[Any], wanted: list[str], k: int) -> float:
    """Share of queries whose identity is among the first ``k`` identities found."""
    hits = [want in [m.identity for m in r.identities[:k]] for r, want in zip(results, wanted)]
    return float(np.mean(hits)) if hits else 0.0


def _embed_queries(embedder: Any, unseen: Any) -> tuple[Any, list[str], list[str], Any]:
    """(query tower, query texts or paths, their identities, their embeddings) of one pair."""
    from siamese.data.captions import read_captions
    from siamese.data.image_folder import scan_image_folder

    if embedder.kind == "text":
        captions = read_captions(unseen.captions)
        texts = [c.text for c in captions]
        return embedder, texts, [c.identity for c in captions], embedder.embed_texts(texts)
    items = scan_image_folder(unseen.sketches)
    embedded = embedder.embed_paths([item.path for item in items])
    wanted = [Path(p).parent.name for p in embedded.paths]
    return embedder, embedded.paths, wanted, embedded.embeddings


def run_pair_demo(
    config: PairDemoConfig = PairDemoConfig(),
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> PairDemoReport:
    """Run both pairs end to end and return their figures (artefacts in ``config.out_dir``)."""
    from siamese.evaluation.plots import plot_query_results
    from siamese.export.pair_export import export_pair
    from siamese.galleries import open_towers
    from siamese.index import Gallery
    from siamese.training import train

    out = demo_folder(config.out_dir, "siamese-pair-")
    lap = Laps()
    seconds = lap.seconds
    train_data, unseen = generate_pair_data(config, out / "data")
    lap("generate")
    log(
        f"generated {config.train_identities} training identities and {config.unseen_identities} "
        f"unseen ones (photos, sketches, captions) in {out / 'data'}"
    )
    figures: dict[str, tuple[float, float, int]] = {}
    shown: tuple[list[str], list[Any], list[str]] = ([], [], [])
    for query in ("sketch", "text"):
        run_dir = out / f"run-{query}"
        shutil.rmtree(run_dir, ignore_errors=True)
        result = train(pair_train_config(config, train_data, run_dir, query), progress=progress)
        lap(f"train {query}")
        log(
            f"trained the {query} → photo pair: kept epoch {result.best_epoch}, validation "
            f"{result.best_metric} {result.best_value:.3f}"
        )
        report = export_pair(run_dir, out / f"{query}.onnx", progress=progress)
        lap(f"export {query}")
        log(f"exported {report.query.path.name} and {report.gallery.path.name}")
        gallery_dir = out / f"gallery-{query}"
        shutil.rmtree(gallery_dir, ignore_errors=True)
        towers = open_towers(report.query.path)  # the query tower and its pair's gallery tower
        assert towers.gallery is not None
        with towers.gallery as tower:
            Gallery.build(unseen.photos, tower, gallery_dir, progress=progress)
        embedder, texts, wanted, vectors = _embed_queries(towers.query, unseen)
        with Gallery.open(
            gallery_dir, model_fingerprint=embedder.fingerprint, model_pair=embedder.pair
        ) as gallery:
            results = gallery.search(vectors, k=config.k)
        figures[query] = (
            top_k_hits(results, wanted, 1),
            top_k_hits(results, wanted, 5),
            len(texts),
        )
        if query == "text":
            picks = list(range(0, len(texts), max(1, len(texts) // 5)))[:5]
            shown = (
                [texts[i] for i in picks],
                [results[i] for i in picks],
                [wanted[i] for i in picks],
            )
        lap(f"query {query}")
        log(f"{query} → photo on unseen identities: top-1 {figures[query][0]:.1%}")
    png = plot_query_results(
        shown[0], shown[1], out / "matches.png", expected=shown[2], k=config.k, texts=True
    )
    demo = PairDemoReport(
        out_dir=str(out),
        identities=config.unseen_identities,
        sketch_queries=figures["sketch"][2],
        text_queries=figures["text"][2],
        sketch_top1=figures["sketch"][0],
        sketch_top5=figures["sketch"][1],
        text_top1=figures["text"][0],
        text_top5=figures["text"][1],
        chance_top1=1.0 / config.unseen_identities,
        seconds={**seconds, "total": round(sum(seconds.values()), 2)},
        matches_png=str(png),
    )
    write_json_atomic(out / "demo.json", demo.to_dict())
    return demo
