"""Training stage: learn a Siamese tower on an ImageFolder with metric-learning losses.

Names are imported lazily, so ``siamese.training.config`` (what the command line is built from)
loads without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "siamese.training.config",
    "TOWERS": "siamese.training.config",
    "LoadedRun": "siamese.training.run_dir",
    "load_run": "siamese.training.run_dir",
    "EmbeddingTower": "siamese.training.towers",
    "ClassicTower": "siamese.training.towers",
    "SeedTower": "siamese.training.towers",
    "create_tower": "siamese.training.towers",
    "TrainResult": "siamese.training.trainer",
    "train": "siamese.training.trainer",
}

__all__ = [
    "TOWERS",
    "ClassicTower",
    "EmbeddingTower",
    "LoadedRun",
    "SeedTower",
    "TrainConfig",
    "TrainResult",
    "create_tower",
    "load_run",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siamese.training' has no attribute {name!r}")
