"""Noticing generations (and thresholds) that another process published into a gallery.

A long-running reader (the HTTP service) keeps one generation open; `siamese index add` or
`index threshold` in another process publishes by rewriting the manifest atomically. Polling
costs one ``stat`` while nothing changed; only a rewritten manifest is read and compared.
"""

from __future__ import annotations

import os
from pathlib import Path

from siamese.index.published import GalleryReader
from siamese.index.store.manifest import MANIFEST_FILE, Manifest


class GenerationWatch:
    """Watches one gallery folder for a manifest that differs from the generation being served."""

    def __init__(self, gallery_dir: str | os.PathLike[str]) -> None:
        self.gallery_dir = Path(gallery_dir)
        self._seen = self._stamp()

    def _stamp(self) -> int:
        try:
            return (self.gallery_dir / MANIFEST_FILE).stat().st_mtime_ns
        except OSError:
            return 0

    def touched(self) -> bool:
        """The manifest was rewritten since it was last marked seen (one stat; nothing read)."""
        return self._stamp() != self._seen

    def differs(self, current: GalleryReader) -> bool:
        """Whether the published manifest differs from ``current``'s: a new generation or threshold.

        When it does not (rewritten with the same content), the rewrite is marked seen.

        Raises:
            GalleryError: the manifest cannot be read (missing, damaged).
        """
        stamp = self._stamp()
        changed = Manifest.read(self.gallery_dir) != current.manifest
        if not changed:
            self._seen = stamp
        return changed

    def mark_seen(self) -> None:
        """Record the manifest as seen (after opening the newest generation)."""
        self._seen = self._stamp()
