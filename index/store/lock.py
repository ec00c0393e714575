"""The gallery's writer lock: one writer at a time, a second one fails fast; readers never lock.

An advisory ``flock`` on ``<gallery>/.lock``: the kernel drops it when the writer exits, however it
exits (kill -9 included), so a crashed build never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import final

from siamese.core.errors import GalleryLockedError

LOCK_FILE = ".lock"


@final  # not meant for subclassing, so __enter__ returns exactly a WriterLock
class WriterLock:
    """Held while a process writes a gallery; :meth:`acquire` raises at once if another holds it."""

    def __init__(self, gallery_dir: Path) -> None:
        self.path = Path(gallery_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock and record who holds it.

        Raises:
            GalleryLockedError: another writer holds it (named by pid and command).
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise GalleryLockedError(
                f"{self.path.parent}: gallery is locked by another writer ({holder}); wait for it "
                "to finish and try again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"pid {os.getpid()}: {' '.join(os.path.basename(a) for a in sys.argv[:3])}".encode(),
            0,
        )
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(gallery_dir: Path) -> bool:
    """Whether a writer is working on the gallery right now."""
    path = Path(gallery_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
