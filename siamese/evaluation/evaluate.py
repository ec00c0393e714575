"""`siamese eval`: how well an exported model identifies and verifies identities on your data.

Embeds an ImageFolder split per identity into gallery and queries (or separate gallery and query
folders) with the engine, then reports identification (recall@k, mAP@R) and verification
(ROC-AUC, EER, TAR at fixed FAR and the distance threshold that achieves it). Torch-free.

Cross-domain (a pseudo-siamese pair): MODEL is the pair's query tower; queries come from
``--queries`` (images of the query domain) or ``--captions`` (texts), the gallery from
``--gallery`` embedded with the pair's gallery tower (``--gallery-model``, by default the partner
file the query tower names, beside it). The two towers must belong to the same pair.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from siamese.core.errors import DataError, SiameseError, named
from siamese.core.files import write_json_atomic
from siamese.core.metrics import (
    retrieval_metrics,
    roc_curve,
    sample_pair_distances,
    verification_metrics,
)
from siamese.data.image_folder import LabelledImage, scan_image_folder
from siamese.evaluation.config import EvalConfig

SPLITS = ("random", "first")


def split_per_identity(
    items: list[LabelledImage], per_identity: int, rule: str, seed: int
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """Gallery and queries: ``per_identity`` images of each identity enrol it, the rest query it.

    Identities with no image left over stay in the gallery as distractors.
    """
    if per_identity < 1:
        raise DataError(f"gallery images per identity must be at least 1, got {per_identity}")
    if rule not in SPLITS:
        raise DataError(f"{named('split')} must be one of {', '.join(SPLITS)}, got {rule!r}")
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[LabelledImage]] = {}
    for item in items:
        by_identity.setdefault(item.identity, []).append(item)
    gallery, queries = [], []
    for identity in sorted(by_identity):
        members = by_identity[identity]
        order = rng.permutation(len(members)) if rule == "random" else np.arange(len(members))
        chosen = [members[i] for i in order]
        gallery += chosen[:per_identity]
        queries += chosen[per_identity:]
    return gallery, queries


EmbedFunction = Callable[[list[str]], tuple[np.ndarray, list[str], list[tuple[str, str]]]]


def engine_embedding(embedder, progress: bool = False) -> EmbedFunction:
    """Adapt an Embedder to the shape :func:`measure` takes.

    That is paths → (embeddings, embedded paths, failures).
    """

    def embed(paths: list[str]) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
        result = embedder.embed_paths(paths, progress=progress)
        return result.embeddings, result.paths, result.failures

    return embed


def text_embedding(embedder, captions: list[Any]) -> EmbedFunction:
    """Adapt a TextEmbedder: the "paths" it is given are ``caption N`` keys into ``captions``."""

    def embed(keys: list[str]) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
        texts = [captions[int(key.split()[-1])].text for key in keys]
        return embedder.embed_texts(texts), keys, []

    return embed


def measure(
    embed: EmbedFunction,
    gallery_items: list[LabelledImage],
    query_items: list[LabelledImage],
    fars: tuple[float, ...] = (1e-2, 1e-3),
    seed: int = 0,
    embed_queries: EmbedFunction | None = None,
) -> dict[str, Any]:
    """Identification and verification of any embedding function on a gallery/query split.

    ``embed_queries``: the queries' own embedding (a pair's query tower); default ``embed``.

    Returns identification and verification dicts, counts, skipped files, and the raw same/different
    pair distances (numpy arrays, for plots).
    """

    def run(
        items: list[LabelledImage], embed: EmbedFunction
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        identity_of = {os.fspath(item.path): item.identity for item in items}
        vectors, paths, failures = embed(list(identity_of))
        return vectors, np.array([identity_of[p] for p in paths]), failures

    gallery, gallery_labels, gallery_failures = run(gallery_items, embed)
    queries, query_labels, query_failures = run(query_items, embed_queries or embed)
    same, different = sample_pair_distances(
        queries, query_labels, gallery, gallery_labels, seed=seed
    )
    return {
        "gallery_images": len(gallery),
        "query_images": len(queries),
        "identities": len(set(gallery_labels.tolist())),
        "identification": retrieval_metrics(
            queries, query_labels, gallery, gallery_labels, ks=(1, 5, 10)
        ),
        "verification": verification_metrics(same, different, fars=fars),
        "skipped": [{"path": p, "reason": r} for p, r in gallery_failures + query_failures],
        "same_distances": same,
        "different_distances": different,
    }


def eval_split(config: EvalConfig) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """The gallery and query images an eval config describes."""
    if config.captions:
        if not config.gallery_dir or config.data_dir or config.queries_dir:
            raise DataError(
                f"captions ({named('captions')}) are queries against gallery images "
                f"({named('gallery_dir')}): give no data folder ({named('data_dir')}) and no "
                f"query images ({named('queries_dir')})"
            )
        return scan_image_folder(config.gallery_dir, loose_files=True), []
    if config.data_dir and (config.gallery_dir or config.queries_dir):
        raise DataError(
            f"give either a data folder ({named('data_dir')}, split per identity) or gallery "
            f"images ({named('gallery_dir')}) with query images ({named('queries_dir')}), not both"
        )
    if config.data_dir:
        gallery, queries = split_per_identity(
            scan_image_folder(config.data_dir),
            config.gallery_per_identity,
            config.split,
            config.seed,
        )
    elif config.gallery_dir and config.queries_dir:
        gallery, queries = (
            scan_image_folder(config.gallery_dir, loose_files=True),
            scan_image_folder(config.queries_dir),
        )
    else:
        raise DataError(
            f"give a data folder ({named('data_dir')}), or both gallery images "
            f"({named('gallery_dir')}) and query images ({named('queries_dir')})"
        )
    if not queries:
        raise DataError(
            "no query images: no identity has more images than the gallery takes of each "
            f"({named('gallery_per_identity')}); lower it"
        )
    return gallery, queries


def evaluate(config: EvalConfig, *, progress: bool = False) -> dict[str, Any]:
    """Embed, measure, and (with ``out_dir``) write eval.json, roc.png and distances.png.

    Raises:
        DataError: missing folders, no queries, or an inconsistent choice of inputs.
        ModelError / DeviceUnavailableError: from the engine.
    """
    gallery_items, query_items = eval_split(config)
    embedder, query_embed, query_items = _embedders(config, query_items, progress)
    measured = measure(
        engine_embedding(embedder, progress),
        gallery_items,
        query_items,
        config.fars,
        config.seed,
        embed_queries=query_embed,
    )
    same, different = measured.pop("same_distances"), measured.pop("different_distances")
    verification = measured["verification"]
    report = {
        "model": str(config.model),
        "model_fingerprint": embedder.fingerprint,
        **({"query_model": str(config.model)} if query_embed is not None else {}),
        "data": config.data_dir or f"{config.gallery_dir} + {config.queries_dir}",
        "device": embedder.device,
        **measured,
        "settings": {k: v for k, v in config.__dict__.items() if k != "out_dir"},
    }
    if config.out_dir:
        out = Path(config.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        from siamese.evaluation.plots import plot_distance_histograms, plot_roc

        thresholds = {far: verification[f"threshold_at_far_{far:g}"] for far in config.fars}
        report["files"] = {
            "roc": str(plot_roc(roc_curve(same, different), out / "roc.png", fars=config.fars)),
            "distances": str(
                plot_distance_histograms(same, different, thresholds, out / "distances.png")
            ),
            "report": str(out / "eval.json"),
        }
        write_json_atomic(out / "eval.json", report)
    return report


def _embedders(
    config: EvalConfig, query_items: list[LabelledImage], progress: bool
) -> tuple[Any, EmbedFunction | None, list[LabelledImage]]:
    """The gallery embedder, the queries' own embedding (None: the same), and the query items.

    A pair's query tower (or ``gallery_model``) makes the evaluation cross-domain.

    Raises:
        DataError: the towers are not one pair, or captions given to an image tower.
    """
    from siamese.galleries import open_towers

    towers = open_towers(
        config.model, config.gallery_model, device=config.device, batch_size=config.batch_size
    )
    opened, gallery = towers.query, towers.gallery
    if gallery is None:
        if config.captions:
            raise DataError(f"{config.model}: not a text tower; captions need a text → image pair")
        return opened, None, query_items
    if opened.kind == "text":
        if not config.captions:
            raise DataError(
                f"{config.model}: a text tower; give its queries as captions ({named('captions')})"
            )
        from siamese.data.captions import read_captions

        captions = read_captions(config.captions)
        items = [LabelledImage(f"caption {i}", c.identity) for i, c in enumerate(captions)]  # type: ignore[arg-type]
        return gallery, text_embedding(opened, captions), items
    if config.captions:
        raise DataError(
            f"{config.model}: embeds images; captions ({named('captions')}) need a text tower"
        )
    return gallery, engine_embedding(opened, progress), query_items


def save_threshold_to(
    gallery_dir: str | os.PathLike[str], report: dict[str, Any], far: float
) -> dict[str, Any]:
    """Store the report's distance threshold at ``far`` in a gallery built with the evaluated model.

    The threshold is a per-pair false-accept rate: with N identities in the gallery, an unknown
    query is wrongly accepted with probability up to about N × ``far``; choose ``far`` accordingly.

    Raises:
        GalleryError: the gallery was built with another model, or is locked by a writer.
    """
    from siamese.index import Gallery

    distance = report["verification"][f"threshold_at_far_{far:g}"]
    if not distance > 0:
        raise SiameseError(
            f"the evaluation found no positive distance threshold at FAR {far:g} (too few "
            "different-identity pairs?); not stored"
        )
    source = f"siamese eval of {report['model']} on {report['data']}"
    stored = Gallery.set_threshold(
        gallery_dir, distance, far=far, source=source, model_fingerprint=report["model_fingerprint"]
    )
    return stored or {}
