"""Galleries of generated vectors (no model needed).

Clustered like identities, with exact ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from siamese.index import GalleryWriter
from siamese.index.updates.writer import RecallPolicy


def clustered_vectors(count: int, dim: int, *, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Vectors around ``clusters`` centres (identities).

    Like embeddings of several photos per person.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    return (
        centres[rng.integers(0, clusters, count)] + 0.35 * rng.normal(size=(count, dim))
    ).astype(np.float32)


# Recall measured on 300 queries keeps publishing quick; RecallPolicy is frozen, so one is shared.
QUICK_RECALL = RecallPolicy(queries=300)


def make_vector_gallery(
    folder: Path,
    vectors: np.ndarray,
    index_type: str = "Flat",
    *,
    search_params: dict[str, int] | None = None,
    recall: RecallPolicy = QUICK_RECALL,
    part_runner: Callable[..., list[Any]] | None = None,
) -> Path:
    """A gallery holding ``vectors`` as items "vec/<n>" of identity "id<n % 10>".

    Published in one generation (an on-disk index's parts through ``part_runner`` if given).
    """
    with GalleryWriter.create(
        folder,
        dimension=vectors.shape[1],
        model_fingerprint="0" * 64,
        model_path="none.onnx",
        index_type=index_type,
    ) as writer:
        writer.part_runner = part_runner
        writer.stage_embeddings(
            vectors,
            [f"vec/{n}" for n in range(len(vectors))],
            [f"id{n % 10}" for n in range(len(vectors))],
        )
        writer.publish(search_params=search_params, recall=recall)
    return folder


@pytest.fixture()
def vector_gallery(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_vector_gallery(name, vectors, index_type, ...) under this test's tmp_path."""
    return lambda name, *args, **kwargs: make_vector_gallery(tmp_path / name, *args, **kwargs)


@pytest.fixture()
def clustered() -> Callable[..., np.ndarray]:
    """Factory of clustered vectors."""
    return clustered_vectors
