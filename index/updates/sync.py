"""Which files an update must embed: compare the disk with what the gallery holds or has staged.

A file whose size and mtime are unchanged since it was indexed is trusted (as git and rsync do);
any other file is hashed, and embedded only when its content hash is new. Files the gallery
holds under the scanned folder that are no longer there have vanished and are removed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from siamese.core.files import sha256_handle
from siamese.index.store.item_writer import KnownFile

_HASH_THREADS = 4
#: Errors meaning a listed name leads to no file (a dangling link, a link loop, deleted meanwhile).
_GONE = {errno.ENOENT, errno.ELOOP, errno.ENOTDIR}


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
    """Absolute path, the folder's symlinks resolved, not the file's (two links stay two items)."""
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
    seen: set[str] = set()
    for path, identity in files:
        if path in seen:
            continue
        seen.add(path)
        refusal = unstorable_name(path, identity)
        try:
            info = os.stat(path)
        except OSError as exc:
            plan.failures.append((path, refusal or stat_failure(path, exc)))
            if exc.errno not in _GONE:
                wanted.add(path)  # perhaps unreadable for now: its item stays
            continue
        refusal = refusal or not_regular(info.st_mode)
        if refusal:  # no image file any more (a pipe now, say): its item goes like a vanished one
            plan.failures.append((path, refusal))
            continue
        wanted.add(path)
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
                for item_id, staged in ((entry.id, entry.staged), *entry.older):
                    (plan.vanished_staged if staged else plan.vanished_published).append(item_id)
    return plan


def unstorable_name(path: str, identity: str) -> str | None:
    """Why a file cannot become an item because of its name: not UTF-8 (SQLite stores text)."""
    for what, value in (("file name", path), ("identity (folder name)", identity)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{what} is not valid UTF-8; rename it"
    return None


def not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` (links resolved) is no image file; None for a regular file.

    Only regular files are read: reading a pipe could block forever.
    """
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"not a regular file ({kind}); only regular image files are read"


def stat_failure(path: str, exc: OSError) -> str:
    """A reason for a file that cannot even be looked at, naming link loops and dangling links."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of links)"
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return "dangling symbolic link (its target does not exist)"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return f"cannot read ({exc.strerror or exc})"


def sha256_regular_file(path: str) -> str:
    """Content hash of a regular file, refusing anything else without blocking on it.

    The file is opened non-blocking (opening a named pipe would wait for a writer forever) and
    checked on the open descriptor, so a file swapped for a pipe after planning is refused too.

    Raises:
        OSError: unreadable, or not a regular file (its strerror says which).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        refusal = not_regular(os.fstat(fd).st_mode)
        if refusal:
            raise OSError(errno.EINVAL, refusal)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return sha256_handle(handle)
    finally:
        os.close(fd)


def chunks(candidates: Sequence[Candidate], size: int) -> Iterator[Sequence[Candidate]]:
    """Consecutive slices of at most ``size`` candidates."""
    for start in range(0, len(candidates), size):
        yield candidates[start : start + size]


def hash_files(
    candidates: Sequence[Candidate],
) -> tuple[list[tuple[Candidate, str]], list[tuple[str, str]]]:
    """Content hashes of candidates, unreadable ones as failures.

    Hashed in threads: hashing releases the GIL.
    """

    def digest(candidate: Candidate) -> str | OSError:
        try:
            return sha256_regular_file(candidate.path)
        except OSError as exc:
            return exc

    hashed: list[tuple[Candidate, str]] = []
    failures: list[tuple[str, str]] = []
    with ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="siamese-hash") as pool:
        for candidate, result in zip(candidates, pool.map(digest, candidates)):
            if isinstance(result, OSError):
                failures.append((candidate.path, hash_failure(candidate.path, result)))
            else:
                hashed.append((candidate, result))
    return hashed, failures


def hash_failure(path: str, exc: OSError) -> str:
    """The reason for a file that could not be hashed."""
    if exc.errno == errno.EINVAL and exc.strerror and exc.strerror.startswith("not a regular"):
        return exc.strerror
    return stat_failure(path, exc)
