"""Part files of a distributed embedding job: named by their content, committed exactly once.

A job's path list is cut into parts of fixed size. A part's name is a digest of the model's
fingerprint and of each of its files' path, size and modification time, so the same files with
the same model always make the same name, and a file changed since a part was embedded makes
another name (its stale part is never read back). A finished part is written whole under a
temporary name and renamed into place (:func:`siamese.core.files.write_bytes_atomic`), so a part
file
either exists complete or not at all: a job killed at any point leaves committed parts that a
re-run reads back instead of embedding again, and no half-written part is ever taken for one.

The file is a NumPy ``.npz`` of plain arrays (no pickle, read with ``allow_pickle=False``): the
model fingerprint, the part's paths in order, the embedded paths and their vectors (row i is
embedded path i), and the files that could not be embedded with their reasons. An item's key is
its part's name and its position there. Identities and content hashes are not repeated here: the
gallery's update path hashes every file before embedding and stages path, identity, hash and
vector together in its own crash-safe store, so a part holds only what embedding produces.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from siamese.core.files import write_bytes_atomic

#: Files per part: enough to amortise a Ray task, small enough that a kill loses little.
DEFAULT_PART_SIZE = 512
_SUFFIX = ".npz"


@dataclass
class Part:
    """One part's outcome: vectors of the files that embedded, reasons for those that did not."""

    name: str
    paths: list[str]
    embedded: list[str]
    embeddings: NDArray[np.float32]
    failures: list[tuple[str, str]]


def _stamp(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file, or (-1, -1) when it cannot be looked at (its part says why)."""
    try:
        info = os.stat(path)
    except OSError:
        return -1, -1
    return info.st_size, info.st_mtime_ns


def part_name(fingerprint: str, paths: Sequence[str]) -> str:
    """The file name of the part holding ``paths`` embedded by the model of ``fingerprint``."""
    digest = hashlib.sha256(fingerprint.encode())
    for path in paths:
        size, mtime = _stamp(path)
        digest.update(json.dumps([path, size, mtime]).encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
    return f"part-{digest.hexdigest()[:40]}{_SUFFIX}"


def split(paths: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive slices of at most ``size`` paths."""
    if size < 1:
        raise ValueError(f"part size must be at least 1, got {size}")
    return [list(paths[start : start + size]) for start in range(0, len(paths), size)]


def encode_part(
    fingerprint: str,
    paths: Sequence[str],
    embedded: Sequence[str],
    embeddings: NDArray[np.float32],
    failures: Sequence[tuple[str, str]],
) -> bytes:
    """The bytes of a part file (what an actor sends back; the driver commits them)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        fingerprint=np.array(fingerprint),
        paths=np.array(list(paths), dtype=str),
        embedded=np.array(list(embedded), dtype=str),
        embeddings=np.asarray(embeddings, dtype=np.float32),
        failed=np.array([path for path, _ in failures], dtype=str),
        reasons=np.array([reason for _, reason in failures], dtype=str),
    )
    return buffer.getvalue()


def decode_part(name: str, data: bytes | Path, fingerprint: str, paths: Sequence[str]) -> Part:
    """Read a part back, checking it is the part of exactly ``paths`` for this model.

    Raises:
        ValueError: not a part file, another model's, or of other files (the caller embeds the
            part again).
    """
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with np.load(source, allow_pickle=False) as archive:
            stored = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{name}: not a readable part file ({exc})") from None
    expected = {"fingerprint", "paths", "embedded", "embeddings", "failed", "reasons"}
    if set(stored) != expected:
        raise ValueError(f"{name}: not a part file (arrays {sorted(stored)})")
    if str(stored["fingerprint"]) != fingerprint:
        raise ValueError(f"{name}: embedded by another model")
    if stored["paths"].tolist() != list(paths):
        raise ValueError(f"{name}: holds other files than its name says")
    embedded = stored["embedded"].tolist()
    failed = stored["failed"].tolist()
    vectors = stored["embeddings"]
    if vectors.dtype != np.float32 or vectors.ndim != 2 or len(vectors) != len(embedded):
        raise ValueError(f"{name}: {len(embedded)} files but vectors shaped {vectors.shape}")
    if sorted(embedded + failed) != sorted(paths):
        raise ValueError(f"{name}: embedded and refused files do not add up to its files")
    return Part(
        name,
        list(paths),
        embedded,
        vectors,
        list(zip(failed, stored["reasons"].tolist())),
    )


class PartStore:
    """The folder of a job's committed parts (created on first commit)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / name

    def load(self, name: str, fingerprint: str, paths: Sequence[str]) -> Part | None:
        """The committed part ``name``, or None when absent or unusable (it is then removed)."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            return decode_part(name, path, fingerprint, paths)
        except ValueError:
            path.unlink(missing_ok=True)  # damaged or foreign: embed this part again
            return None

    def commit(self, name: str, data: bytes) -> None:
        """Write a finished part once: temporary name, fsync, rename."""
        write_bytes_atomic(self.path(name), data)
