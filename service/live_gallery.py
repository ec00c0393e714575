"""The gallery generation the service searches, swapped atomically after each write.

Readers lease the current :class:`GalleryReader` for the length of one search; a write publishes a
new generation on disk, opens it, and swaps it in. Searches already running finish on the old
generation (whose items stay readable in SQLite), which is closed when its last reader leaves.
So a reader sees the gallery before or after an update, never a mix, and never waits for a write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from siamese.index import GalleryReader


class LiveGallery:
    """Holds the current generation and counts the readers of each one still in use."""

    def __init__(self, gallery: GalleryReader) -> None:
        self._current = gallery
        self._readers: dict[GalleryReader, int] = {}
        self._retired: set[GalleryReader] = set()
        self._lock = threading.Lock()

    @property
    def current(self) -> GalleryReader:
        """The generation new readers get (for quick facts; hold :meth:`read` across a search)."""
        return self._current

    @contextmanager
    def read(self) -> Iterator[GalleryReader]:
        """Lease the current generation; it stays open until the lease ends, even if swapped out."""
        with self._lock:
            gallery = self._current
            self._readers[gallery] = self._readers.get(gallery, 0) + 1
        try:
            yield gallery
        finally:
            with self._lock:
                self._readers[gallery] -= 1
                last = self._readers[gallery] == 0
                if last:
                    del self._readers[gallery]
                close = last and gallery in self._retired
                if close:
                    self._retired.discard(gallery)
            if close:
                gallery.close()

    def swap(self, gallery: GalleryReader) -> None:
        """Make ``gallery`` current; close the previous one now, or when its last reader leaves."""
        with self._lock:
            old, self._current = self._current, gallery
            idle = old is not gallery and old not in self._readers
            if not idle and old is not gallery:
                self._retired.add(old)
        if idle:
            old.close()

    def close(self) -> None:
        """Close the current generation (at shutdown, after the last request)."""
        with self._lock:
            retired = list(self._retired)
            self._retired.clear()
        for gallery in [self._current, *retired]:
            gallery.close()
