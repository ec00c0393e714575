"""Evaluation, an application: measure a model on labelled images (`siamese eval`) and draw plots.

The retrieval metrics themselves are foundation (siamese.core.metrics): training validates with
them. Names are imported lazily, so ``siamese.evaluation.config`` (what the command line is
built from) loads without NumPy's and FAISS's start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"EvalConfig": "siamese.evaluation.config", "evaluate": "siamese.evaluation.evaluate"}

__all__ = ["EvalConfig", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siamese.evaluation' has no attribute {name!r}")
