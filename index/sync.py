"""Which files an update must embed: compare files on disk with what the gallery holds or has staged.

A file whose size and mtime are unchanged since it was indexed is trusted (as git and rsync do);
any other file is hashed, and embedded only when its content hash is new. Files the gallery
holds under the scanned folder that are no longer there have vanished and are removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from siamese.index.item_writer import KnownFile

from siamese.io import sha256_file

_HASH_THREADS = 4


@dataclass(frozen=True)
class Candidate:
    """A file that may need embedding (new, or changed since it was indexed)."""

    path: str
    identity: str
    size: int
    mtime_ns: int
    known: KnownFile | None


@dataclass
class SyncPlan:
    """What an update does: candidates to hash and maybe embed; vanished items to drop."""

    candidates: list[Candidate] = field(default_factory=list)
    unchanged: int = 0
    resumed: int = 0
    vanished_published: list[int] = field(default_factory=list)
    vanished_staged: list[int] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def canonical_path(path: str | os.PathLike[str]) -> str:
    """Absolute path with the folder's symlinks resolved but not the file's (two links stay two items)."""
    absolute = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def plan_sync(
    files: Iterable[tuple[str, str]],
    known: dict[str, KnownFile],
    *,
    vanish_under: str | None = None,
) -> SyncPlan:
    """Plan an update of the gallery to ``files`` ((canonical path, identity) pairs).

    Args:
        files: what should be in the gallery after the update.
        known: what the gallery holds or has staged, by path.
        vanish_under: a folder: known files inside it that are not in ``files`` are removed.
    """
    plan = SyncPlan()
    wanted: set[str] = set()
    for path, identity in files:
        if path in wanted:
            continue
        wanted.add(path)
        try:
            info = os.stat(path)
        except OSError as exc:
            plan.failures.append((path, f"cannot read ({exc.strerror})"))
            continue
        entry = known.get(path)
        if entry and (entry.size, entry.mtime_ns, entry.identity) == (
            info.st_size,
            info.st_mtime_ns,
            identity,
        ):
            if entry.staged:
                plan.resumed += 1
            else:
                plan.unchanged += 1
            continue
        plan.candidates.append(Candidate(path, identity, info.st_size, info.st_mtime_ns, entry))
    if vanish_under is not None:
        prefix = vanish_under.rstrip(os.sep) + os.sep
        for path, entry in known.items():
            if path.startswith(prefix) and path not in wanted:
                (plan.vanished_staged if entry.staged else plan.vanished_published).append(entry.id)
    return plan


def chunks(candidates: Sequence[Candidate], size: int) -> Iterator[Sequence[Candidate]]:
    """Consecutive slices of at most ``size`` candidates."""
    for start in range(0, len(candidates), size):
        yield candidates[start : start + size]


def hash_files(
    candidates: Sequence[Candidate],
) -> tuple[list[tuple[Candidate, str]], list[tuple[str, str]]]:
    """Content hashes of candidates (in threads: hashing releases the GIL); unreadable ones as failures."""

    def digest(candidate: Candidate) -> str | OSError:
        try:
            return sha256_file(candidate.path)
        except OSError as exc:
            return exc

    hashed: list[tuple[Candidate, str]] = []
    failures: list[tuple[str, str]] = []
    with ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="siamese-hash") as pool:
        for candidate, result in zip(candidates, pool.map(digest, candidates)):
            if isinstance(result, OSError):
                failures.append((candidate.path, f"cannot read ({result.strerror or result})"))
            else:
                hashed.append((candidate, result))
    return hashed, failures
