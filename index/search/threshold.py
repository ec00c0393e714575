"""The "unknown" threshold: beyond this L2 distance a query matches no gallery identity.

A gallery answers every query with its nearest identities, however far they are. An open-set
application (a visitor who is nobody in the gallery) needs a cut-off; `siamese eval` measures the
distance that keeps the false-accept rate of different-identity pairs at a target (e.g. 1e-3) and
stores it here. The threshold lives in the manifest, so it is published atomically with the
gallery, survives updates, and is checked against the model it was calibrated with.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from siamese.core.errors import GalleryError
from siamese.index.store.lock import WriterLock
from siamese.index.store.manifest import Manifest, now_iso


def threshold_record(
    distance: float, *, far: float | None = None, source: str = "set by hand"
) -> dict[str, Any]:
    """The manifest's ``threshold`` entry; refuses distances that cannot be a threshold."""
    if not math.isfinite(distance) or distance <= 0:
        raise GalleryError(f"a threshold must be a positive finite L2 distance, got {distance}")
    if far is not None and not 0 < far < 1:
        raise GalleryError(f"a false-accept rate must lie between 0 and 1, got {far}")
    return {"distance": float(distance), "far": far, "source": source, "set": now_iso()}


def set_threshold(
    gallery_dir: str | os.PathLike[str],
    distance: float | None,
    *,
    far: float | None = None,
    source: str = "set by hand",
    model_fingerprint: str | None = None,
) -> dict[str, Any] | None:
    """Store (or with ``distance=None`` clear) the gallery's threshold, under the writer lock.

    Returns the stored record (distance, far, source, set), or None when cleared.

    Args:
        model_fingerprint: the model the threshold was calibrated with; refused unless the
            gallery's.

    Raises:
        GalleryError: a bad distance, another model, or the gallery is locked by a writer.
    """
    gallery_dir = Path(gallery_dir)
    record = None if distance is None else threshold_record(distance, far=far, source=source)
    with WriterLock(gallery_dir):
        manifest = Manifest.read(gallery_dir)
        if model_fingerprint is not None and model_fingerprint != manifest.model_fingerprint:
            raise GalleryError(
                f"{gallery_dir}: the threshold was calibrated with model {model_fingerprint[:12]}, "
                f"the gallery holds embeddings of model {manifest.model_fingerprint[:12]}; "
                "distances of different models are not comparable"
            )
        updated = replace(manifest, threshold=record)  # same generation: only the cut-off changes
        updated.write(gallery_dir)
    return record
