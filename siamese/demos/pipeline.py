"""`siamese demo`: the whole pipeline on generated identities, offline, in a few minutes on a CPU.

Generate identities → train a tower on some → export it → build a gallery of identities the tower
never saw → calibrate its "unknown" threshold on its own items → query with their other images and
with strangers' → compare top-1 identification with raw-pixel search, and count the strangers
answered "unknown" (what `siamese serve` on the demo's gallery shows for them too).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from siamese.core.files import demo_folder, write_json_atomic
from siamese.core.progress import Laps
from siamese.demos.synthetic import SyntheticSpec, generate_identities


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; defaults finish in a few minutes on 2 CPU cores."""

    out_dir: str | None = None
    train_identities: int = 200
    train_images_per_identity: int = 8
    unseen_identities: int = 30
    unseen_images_per_identity: int = 12
    gallery_per_identity: int = 3
    image_size: int = 64
    epochs: int = 15
    seed: int = 0
    k: int = 5
    #: People never enrolled, queried to show "unknown" answers (3 images each).
    strangers: int = 10
    #: The gallery's threshold is calibrated on its own items so that about this fraction of
    #: strangers would be taken for someone (siamese.index.audit.calibrate_threshold).
    stranger_accept_rate: float = 0.1


@dataclass
class DemoReport:
    """What the demo measured."""

    out_dir: str
    queries: int
    gallery_items: int
    tower_top1: float
    raw_pixel_top1: float
    embed_images_per_second: float
    seconds: dict[str, float]
    matches_png: str
    #: The gallery's "unknown" threshold, calibrated on its own items.
    threshold: float | None = None
    #: Queries of enrolled people answered with their identity (not "unknown", not someone else).
    known_answered: float | None = None
    #: Queries of strangers answered "unknown".
    strangers_unknown: float | None = None
    strangers_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _split_unseen(unseen_dir: Path, gallery_dir: Path, per_identity: int) -> list[tuple[str, str]]:
    """Copy the first images of each unseen identity into a gallery folder.

    Return (query, identity).
    """
    queries = []
    for folder in sorted(p for p in unseen_dir.iterdir() if p.is_dir()):
        images = sorted(folder.iterdir())
        (gallery_dir / folder.name).mkdir(parents=True, exist_ok=True)
        for image in images[:per_identity]:
            shutil.copy2(image, gallery_dir / folder.name / image.name)
        queries.extend((str(image), folder.name) for image in images[per_identity:])
    return queries


def raw_pixel_top1(gallery_dir: Path, queries: list[tuple[str, str]], spec) -> float:
    """Top-1 accuracy of exact L2 search on the preprocessed pixels themselves (the baseline)."""
    import faiss

    from siamese.contracts.spec import normalize_pixels
    from siamese.data.image_folder import scan_image_folder
    from siamese.data.images import load_pixels, to_tensor

    def features(path) -> np.ndarray:
        return normalize_pixels(to_tensor(load_pixels(path, spec)), spec).ravel()

    items = scan_image_folder(gallery_dir)
    gallery = np.stack([features(item.path) for item in items])
    probes = np.stack([features(path) for path, _ in queries])
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    _, nearest = index.search(probes, 1)
    hits = [items[n].identity == want for n, (_, want) in zip(nearest[:, 0], queries)]
    return float(np.mean(hits))


def _generate(config: DemoConfig, data: Path) -> list[tuple[str, str]]:
    """Training identities, and unseen ones split into a gallery and queries (returned)."""
    size = config.image_size + 8  # a little larger than the tower's input, so resizing is exercised
    train_spec = SyntheticSpec(
        identities=config.train_identities,
        images_per_identity=config.train_images_per_identity,
        size=size,
    )
    unseen_spec = SyntheticSpec(
        identities=config.unseen_identities,
        images_per_identity=config.unseen_images_per_identity,
        size=size,
    )
    generate_identities(data / "train", train_spec, seed=config.seed)
    # A different seed draws different patterns: these identities never appear in training.
    generate_identities(data / "unseen", unseen_spec, seed=config.seed + 10_000)
    return _split_unseen(data / "unseen", data / "gallery", config.gallery_per_identity)


def _plot_some(
    paths: list[str], results: list[Any], want: dict[str, str], png: Path, k: int
) -> Path:
    """Six queries beside their matches, spread over the query list (strangers last)."""
    from siamese.evaluation.plots import plot_query_results

    known = [i for i, path in enumerate(paths) if path in want]
    strangers = [i for i, path in enumerate(paths) if path not in want][:2]
    rows = 6 - len(strangers)
    shown = known[:: max(1, len(known) // rows)][:rows] + strangers
    return plot_query_results(
        [paths[i] for i in shown],
        [results[i] for i in shown],
        png,
        expected=[want.get(paths[i]) for i in shown],
        k=k,
    )


def _strangers(config: DemoConfig, data: Path) -> list[str]:
    """Images of people who are in neither the training set nor the gallery (none if 0)."""
    if not config.strangers:
        return []
    spec = SyntheticSpec(
        identities=config.strangers, images_per_identity=3, size=config.image_size + 8
    )
    generate_identities(data / "strangers", spec, seed=config.seed + 20_000)
    return sorted(str(p) for p in (data / "strangers").rglob("*") if p.is_file())


def _search(
    embedder: Any, gallery_dir: Path, queries: list[tuple[str, str]], strangers: list[str], k: int
) -> tuple[Any, list[Any], float]:
    """Embed the queries and the strangers' images, search the gallery: (embedded, results, s)."""
    from siamese.index import Gallery

    started = time.perf_counter()
    embedded = embedder.embed_paths([path for path, _ in queries] + strangers)
    seconds = time.perf_counter() - started
    with Gallery.open(gallery_dir, model_fingerprint=embedder.fingerprint) as gallery:
        return embedded, gallery.search(embedded.embeddings, k=k), seconds


def _calibrate(config: DemoConfig, gallery_dir: Path, log: Callable[[str], None]) -> float:
    """Store the gallery's "unknown" threshold, calibrated on its own items (no queries needed)."""
    from siamese.index.audit import calibrate_threshold

    rate = config.stranger_accept_rate
    threshold = float(calibrate_threshold(gallery_dir, stranger_accept_rate=rate)["distance"])
    log(
        f'calibrated the gallery\'s "unknown" threshold on its own items: {threshold:.4f} '
        f"(about {rate:.0%} of strangers would be taken for someone)"
    )
    return threshold


def _scores(
    results: list[Any], paths: list[str], want: dict[str, str], strangers: int, log: Callable
) -> tuple[float, float | None, float | None]:
    """Top-1 of the enrolled people's queries (closed set: the nearest identity, threshold or
    not), those answered with their identity, and the strangers' answered "unknown"."""
    top1 = [r.identities[0].identity == want[p] for p, r in zip(paths, results) if p in want]
    known = [r.answer == want[p] for p, r in zip(paths, results) if p in want]
    unknown = [r.unknown for p, r in zip(paths, results) if p not in want]
    answered = float(np.mean(known)) if known else None
    refused = float(np.mean(unknown)) if unknown else None
    log(
        f"open set: {answered or 0:.0%} of enrolled people's queries answered with their "
        f"identity, {refused or 0:.0%} of {strangers} images of strangers answered unknown"
    )
    return float(np.mean(top1)), answered, refused


def run_demo(
    config: DemoConfig = DemoConfig(), *, progress: bool = True, log: Callable[[str], None] = print
) -> DemoReport:
    """Run the whole pipeline and return its figures.

    Artefacts go to ``config.out_dir`` (or a temp dir).
    """
    from siamese.engine import Embedder
    from siamese.export import export_onnx
    from siamese.index import Gallery
    from siamese.training import TrainConfig, train

    out = demo_folder(config.out_dir, "siamese-demo-")
    lap = Laps()
    seconds = lap.seconds
    data = out / "data"
    queries = _generate(config, data)
    lap("generate")
    log(
        f"generated {config.train_identities} training identities and {config.unseen_identities} "
        f"unseen ones in {data}"
    )

    result = train(
        TrainConfig(
            data_dir=str(data / "train"),
            out_dir=str(out / "run"),
            image_size=config.image_size,
            epochs=config.epochs,
            seed=config.seed,
        ),
        progress=progress,
    )
    lap("train")
    log(
        f"trained the conv tower: kept epoch {result.best_epoch}, validation {result.best_metric} "
        f"{result.best_value:.3f} ({seconds['train']:.0f}s)"
    )

    report = export_onnx(out / "run", out / "model.onnx", progress=progress)
    lap("export")
    log(f"exported {report.path}: {report.parity.summary()}")

    embedder = Embedder(report.path)
    built = Gallery.build(data / "gallery", embedder, out / "gallery", progress=progress)
    lap("index")
    log(
        f"indexed {built.count} images of {built.identities} unseen identities into "
        f"{out / 'gallery'} ({embedder.device})"
    )
    threshold = _calibrate(config, out / "gallery", log)
    strangers = _strangers(config, data)
    embedded, results, embed_seconds = _search(
        embedder, out / "gallery", queries, strangers, config.k
    )
    want = dict(queries)
    tower_top1, known_answered, strangers_unknown = _scores(
        results, embedded.paths, want, len(strangers), log
    )
    pixel_top1 = raw_pixel_top1(data / "gallery", queries, embedder.spec)
    lap("query")

    png = _plot_some(embedded.paths, results, want, out / "matches.png", config.k)
    demo = DemoReport(
        out_dir=str(out),
        queries=len(queries),
        gallery_items=built.count,
        tower_top1=tower_top1,
        raw_pixel_top1=pixel_top1,
        embed_images_per_second=round(len(embedded.paths) / embed_seconds, 1),
        seconds={**seconds, "total": round(sum(seconds.values()), 2)},
        matches_png=str(png),
        threshold=threshold,
        known_answered=known_answered,
        strangers_unknown=strangers_unknown,
        strangers_dir=str(data / "strangers") if strangers else None,
    )
    write_json_atomic(out / "demo.json", demo.to_dict())
    return demo
