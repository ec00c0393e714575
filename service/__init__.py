"""Service stage: the HTTP search service and its web page (FastAPI + uvicorn). Never imports torch.

Names are imported lazily, so ``siamese.service.config`` (whose defaults `siamese serve` shows)
loads without FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_app": "siamese.service.app",
    "ServiceConfig": "siamese.service.config",
    "ServiceState": "siamese.service.state",
}

__all__ = ["ServiceConfig", "ServiceState", "create_app"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siamese.service' has no attribute {name!r}")
