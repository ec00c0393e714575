"""siamese: train Siamese embedding towers, export them to ONNX, search image galleries by identity.

The public API is imported lazily, so ``import siamese`` and the query path (Embedder, Gallery)
never pull in PyTorch; only training and export do.

    from siamese import Embedder, Gallery
    gallery = Gallery.open("gallery/")
    embedder = Embedder(gallery.model_path)
    result = gallery.search(embedder.embed_paths(["photo.jpg"]).embeddings, k=5)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Embedder": "siamese.engine",
    "EmbedResult": "siamese.engine",
    "ModelInfo": "siamese.contracts.model_card",
    "Gallery": "siamese.index",
    "InputSpec": "siamese.contracts.spec",
    "TrainConfig": "siamese.training",
    "train": "siamese.training",
    "load_run": "siamese.training",
    "export_onnx": "siamese.export",
}

# Built from _LAZY so the two cannot drift; its keys are all strings (ruff cannot see that).
__all__ = ["__version__", *_LAZY]  # noqa: PLE0604


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siamese' has no attribute {name!r}")
