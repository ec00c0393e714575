"""Writing the item database: staging embedded files in durable chunks, publishing, rolling back.

Only the writer holding the gallery lock uses this. Every method is one SQLite transaction,
committed with ``synchronous=FULL`` in WAL mode, so a kill -9 loses at most the chunk being
written. Staged rows (``added_gen`` NULL) are invisible to readers until a publish marks them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError
from siamese.index.store.crash_points import reached
from siamese.index.store.item_store import (
    EMPTY_FINGERPRINT,
    FINGERPRINT_ROWS,
    SCHEMA,
    combine_fingerprint,
    select_by_ids,
)


@dataclass(frozen=True)
class NewItem:
    """A file embedded and ready to stage."""

    path: str
    identity: str
    sha256: str
    size: int
    mtime_ns: int
    vector: NDArray[np.float32]
    #: The item's id: None for the next free one; given when a gallery is rebuilt from an export,
    #: so its items keep the ids searches and other stores know them by.
    id: int | None = None


@dataclass(frozen=True)
class KnownFile:
    """A file the gallery holds (published) or has staged, as the last build saw it."""

    id: int
    identity: str
    sha256: str
    size: int
    mtime_ns: int
    staged: bool
    #: Other live rows of the same path, older than this one: (id, staged). A published one is what
    #: a staged replacement replaces; several published ones are the damage an older siamese could
    #: leave.
    older: tuple[tuple[int, bool], ...] = ()


class ItemWriter:
    """Read-write access to items.sqlite for the gallery's single writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("SELECT id FROM items LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{path}: unreadable item database ({exc})") from exc

    @classmethod
    def create(cls, path: Path, gallery_id: str, dimension: int) -> ItemWriter:
        """A new, empty item database at ``path``."""
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(f"BEGIN; {SCHEMA}; COMMIT;")
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("gallery_id", gallery_id), ("dimension", str(dimension))],
            )
        finally:
            db.close()
        return cls(path)

    def close(self) -> None:
        """Fold the WAL into the database and release it."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()

    def _transaction(
        self, statements: Iterable[tuple[str, Sequence[object]]], point: str | None = None
    ) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self._db.execute(sql, params)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if point is not None:
            reached(point)

    def meta(self, key: str) -> str | None:
        """A value of the meta table."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def fingerprint(self, generation: int) -> str:
        """The items fingerprint of ``generation`` recomputed from its rows."""
        try:
            rows = self._db.execute(FINGERPRINT_ROWS, {"gen": generation}).fetchall()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path}: unreadable item database ({exc})") from exc
        return combine_fingerprint(EMPTY_FINGERPRINT, rows)

    def roll_back_after(self, generation: int) -> None:
        """Undo the marks of a publish that never reached its manifest.

        Its items go back to staged.
        """
        self._transaction(
            [
                ("UPDATE items SET added_gen = NULL WHERE added_gen > ?", (generation,)),
                ("UPDATE items SET removed_gen = NULL WHERE removed_gen > ?", (generation,)),
            ]
        )

    def drop_removed_vectors(self, generation: int) -> None:
        """Free embeddings of items removed by ``generation`` or earlier (their metadata stays)."""
        self._transaction(
            [
                (
                    "UPDATE items SET vector = NULL WHERE removed_gen <= ? AND vector IS NOT NULL",
                    (generation,),
                )
            ]
        )

    def known_files(self) -> dict[str, KnownFile]:
        """Every file the gallery holds or has staged, by path: its newest live row.

        The row names the older live rows of its path (:attr:`KnownFile.older`).

        A path has two live rows while a replacement is staged (the published row goes when the
        staged one is published); the plan needs both ids, so a file that vanished meanwhile loses
        both, not only the newest.
        """
        rows = self._db.execute(
            "SELECT path, id, identity, sha256, size, mtime_ns, added_gen IS NULL FROM items "
            "WHERE removed_gen IS NULL ORDER BY id"
        )
        known: dict[str, KnownFile] = {}
        for path, item_id, identity, sha, size, mtime, staged in rows:
            before = known.get(path)
            older = (*before.older, (before.id, before.staged)) if before else ()
            known[path] = KnownFile(item_id, identity, sha, size, mtime, bool(staged), older)
        return known

    def superseded(self) -> list[int]:
        """Published live rows that a newer live row of the same path replaces.

        The newer row is staged or, after damage, published.

        One path is one item: publishing a staged replacement must withdraw the row it replaces,
        whichever run staged it. Every publish withdraws these, so a gallery left with two rows
        for a path (by an interrupted run of an older siamese) is repaired by the next update.
        """
        rows = self._db.execute(
            "SELECT old.id FROM items AS old "
            "WHERE old.removed_gen IS NULL AND old.added_gen IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM items AS new WHERE new.path = old.path "
            "AND new.removed_gen IS NULL AND new.id > old.id)"
        )
        return sorted(row[0] for row in rows)

    def stage(self, items: Sequence[NewItem]) -> None:
        """Durably record embedded files as staged (one transaction: all of them or none).

        A path staged again replaces its earlier staged row (never published, so no reader knows
        it): a path has at most one staged row, and at publish at most one live row.
        """
        if not items:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "DELETE FROM items WHERE path = ? AND added_gen IS NULL AND removed_gen IS NULL",
                ((i.path,) for i in items),
            )
            self._db.executemany(
                "INSERT INTO items (id, path, identity, sha256, size, mtime_ns, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        i.id,
                        i.path,
                        i.identity,
                        i.sha256,
                        i.size,
                        i.mtime_ns,
                        np.ascontiguousarray(i.vector, dtype=np.float32).tobytes(),
                    )
                    for i in items
                ),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        reached("staged")

    def touch(self, updates: Sequence[tuple[int, int, int]]) -> None:
        """Record new (size, mtime_ns) of files whose content hash did not change.

        ``updates`` holds (id, size, mtime_ns) tuples.
        """
        if updates:
            self._transaction(
                [
                    ("UPDATE items SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime, item_id))
                    for item_id, size, mtime in updates
                ],
                "touched",
            )

    def delete_staged(self, ids: Sequence[int]) -> None:
        """Forget staged rows (never published, so no reader can know them)."""
        self._transaction(
            [("DELETE FROM items WHERE id = ? AND added_gen IS NULL", (int(i),)) for i in ids],
            "staged-deleted" if ids else None,
        )

    def staged(self, dim: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Ids and embeddings of every staged row, by id."""
        return self._vectors("added_gen IS NULL AND removed_gen IS NULL", dim)

    def published_vectors(self, dim: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Ids and embeddings of every published, not removed row, by id."""
        return self._vectors("added_gen IS NOT NULL AND removed_gen IS NULL", dim)

    def _vectors(self, where: str, dim: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        count = self._db.execute(f"SELECT COUNT(*) FROM items WHERE {where}").fetchone()[0]
        ids, vectors = np.zeros(count, np.int64), np.zeros((count, dim), np.float32)
        cursor = self._db.execute(f"SELECT id, vector FROM items WHERE {where} ORDER BY id")
        for n, (item_id, blob) in enumerate(cursor):
            ids[n], vectors[n] = item_id, np.frombuffer(blob, dtype=np.float32)
        return ids, vectors

    def staged_ids(self) -> NDArray[np.int64]:
        """Ids of every staged row, ascending (without loading their embeddings)."""
        rows = self._db.execute(
            "SELECT id FROM items WHERE added_gen IS NULL AND removed_gen IS NULL ORDER BY id"
        ).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def iter_live_vectors(
        self, dim: int, rows: int
    ) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """(ids, embeddings) of every published or staged, not removed row, by id.

        ``rows`` at a time: a gallery larger than memory streams through.
        """
        cursor = self._db.execute(
            "SELECT id, vector FROM items WHERE removed_gen IS NULL ORDER BY id"
        )
        while batch := cursor.fetchmany(rows):
            ids = np.fromiter((row[0] for row in batch), dtype=np.int64, count=len(batch))
            vectors = np.frombuffer(b"".join(row[1] for row in batch), dtype=np.float32)
            yield ids, vectors.reshape(len(batch), dim)

    def published_among(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` that are published and not removed (what a publish can withdraw)."""
        live = "added_gen IS NOT NULL AND removed_gen IS NULL"
        return [row[0] for row in select_by_ids(self._db, "id", ids, live)]

    def rows(self, ids: Sequence[int]) -> list[tuple[int, str, str, str]]:
        """(id, path, identity, sha256) of ``ids`` (for the items fingerprint)."""
        return select_by_ids(self._db, "id, path, identity, sha256", ids)

    def matching(
        self, *, identities: Sequence[str] = (), paths: Sequence[str] = ()
    ) -> tuple[list[int], list[int]]:
        """(published ids, staged ids) of the items of ``identities`` and at ``paths``.

        A path that is a folder matches every item under it.
        """
        identities = [value for value in identities if _storable(value)]  # others match nothing
        queries = [("identity = ?", (value,)) for value in identities]
        for value in filter(_storable, paths):
            folder = value.rstrip(os.sep) + os.sep
            queries.append(("(path = ? OR substr(path, 1, ?) = ?)", (value, len(folder), folder)))
        published: set[int] = set()
        staged: set[int] = set()
        for condition, params in queries:
            for item_id, is_staged in self._db.execute(
                f"SELECT id, added_gen IS NULL FROM items "
                f"WHERE {condition} AND removed_gen IS NULL",
                params,
            ):
                (staged if is_staged else published).add(item_id)
        return sorted(published), sorted(staged)

    def publish(self, generation: int, removed: Sequence[int]) -> tuple[int, int]:
        """Mark every staged row as added and ``removed`` as removed by ``generation``.

        Returns the gallery's item and identity counts then.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS picked (id INTEGER PRIMARY KEY)")
            self._db.execute("DELETE FROM picked")
            self._db.executemany(
                "INSERT OR IGNORE INTO picked (id) VALUES (?)", ((int(i),) for i in removed)
            )
            self._db.execute(
                "UPDATE items SET removed_gen = ? "
                "WHERE id IN (SELECT id FROM picked) AND removed_gen IS NULL",
                (generation,),
            )
            self._db.execute(
                "UPDATE items SET added_gen = ? WHERE added_gen IS NULL AND removed_gen IS NULL",
                (generation,),
            )
            visible = "added_gen IS NOT NULL AND removed_gen IS NULL"
            count, identities = self._db.execute(
                f"SELECT COUNT(*), COUNT(DISTINCT identity) FROM items WHERE {visible}"
            ).fetchone()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        reached("items-marked")
        return int(count), int(identities)


def _storable(text: str) -> bool:
    """Whether ``text`` is valid UTF-8, as each stored path and identity is (others are refused)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
