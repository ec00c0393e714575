"""The validation figures a run records are those of its kept tower on its held-out identities.

Recomputed from outside the trainer: the exported best tower (model_path) embeds the held-out
images through the engine, and siamese.core.metrics (itself checked against scikit-learn and
pytorch-metric-learning in tests/test_reference_metrics.py) scores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siamese.data.image_folder import scan_image_folder
from siamese.engine import Embedder
from siamese.training.validation import validation_metrics


def test_best_epoch_figures_are_the_kept_towers(
    trained_run: Path, model_path: Path, tiny_dataset: Path
) -> None:
    config = json.loads((trained_run / "config.json").read_text())
    history = json.loads((trained_run / "history.json").read_text())
    held_out = set(config["data"]["val_identities"])
    items = [item for item in scan_image_folder(tiny_dataset) if item.identity in held_out]
    assert len(items) == 6 * len(held_out) and len(held_out) == 2  # 25% of 8 identities
    embeddings = Embedder(model_path).embed_paths([item.path for item in items]).embeddings
    labels = np.array([item.identity for item in items])
    expected = validation_metrics(embeddings, labels, seed=config["train"]["seed"])
    (best,) = [row for row in history["epochs"] if row["epoch"] == history["best_epoch"]]
    for key, value in expected.items():
        assert best[f"val_{key}"] == pytest.approx(value, abs=1e-6), key
