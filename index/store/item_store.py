"""The gallery's items in SQLite (WAL mode), read as of one generation.

One row per item: id (stable, never reused), path, identity, content hash, file size and mtime,
time added, the generation that published it (NULL while staged by a build still running) and
the one that removed it, and its embedding. A reader at generation G sees exactly the rows with
``added_gen <= G`` and not removed by G, whatever a writer is doing meanwhile; removed rows keep
their metadata, so a reader still holding an older generation can resolve its ids.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError
from siamese.index.search.results import Item

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    identity TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    added TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    added_gen INTEGER,
    removed_gen INTEGER,
    vector BLOB
);
CREATE INDEX items_path ON items(path);
CREATE INDEX items_identity ON items(identity);
CREATE INDEX items_added_gen ON items(added_gen);
CREATE INDEX items_removed_gen ON items(removed_gen);
"""
VISIBLE = "added_gen <= :gen AND (removed_gen IS NULL OR removed_gen > :gen)"
MAX_SQL_PARAMS = 900
_FINGERPRINT_MODULUS = 2**256


def select_by_ids(
    db: sqlite3.Connection,
    columns: str,
    ids: Iterable[int],
    condition: str = "",
    params: Sequence[object] = (),
) -> list[tuple]:
    """``SELECT columns FROM items WHERE id IN ids [AND condition]``, in chunks SQLite accepts."""
    unique = list(dict.fromkeys(int(i) for i in ids))
    rows: list[tuple] = []
    for start in range(0, len(unique), MAX_SQL_PARAMS):
        chunk = unique[start : start + MAX_SQL_PARAMS]
        where = f"id IN ({','.join('?' * len(chunk))})" + (f" AND {condition}" if condition else "")
        rows += db.execute(
            f"SELECT {columns} FROM items WHERE {where}", [*chunk, *params]
        ).fetchall()
    return rows


def item_hash(item_id: int, path: str, identity: str, sha256: str) -> int:
    """One item's contribution to the items fingerprint."""
    return int.from_bytes(
        hashlib.sha256(f"{item_id}\0{path}\0{identity}\0{sha256}".encode()).digest(), "big"
    )


def combine_fingerprint(
    base: str,
    added: Iterable[tuple[int, str, str, str]] = (),
    removed: Iterable[tuple[int, str, str, str]] = (),
) -> str:
    """Apply a change to an order-free fingerprint of items (sum of item hashes mod 2^256)."""
    total = int(base, 16) + _sum_of_hashes(added) - _sum_of_hashes(removed)
    return f"{total % _FINGERPRINT_MODULUS:064x}"


def _sum_of_hashes(rows: Iterable[tuple[int, str, str, str]]) -> int:
    """The sum of :func:`item_hash` over ``rows``, inlined: opening a gallery runs it.

    It takes 0.1 s per 100k rows.
    """
    sha256, from_bytes = hashlib.sha256, int.from_bytes
    return sum(
        from_bytes(sha256(f"{i}\0{p}\0{n}\0{h}".encode()).digest(), "big") for i, p, n, h in rows
    )


EMPTY_FINGERPRINT = f"{0:064x}"
#: The rows the items fingerprint covers: every item visible at generation ``:gen``.
FINGERPRINT_ROWS = f"SELECT id, path, identity, sha256 FROM items WHERE {VISIBLE}"


def refuse_edited_rows(path: Path, recomputed: str, recorded: str) -> None:
    """Raise GalleryError naming the item database unless its rows give the manifest's fingerprint.

    The fingerprint (an order-free sum of a sha256 per row over id, path, identity and content
    hash) is checked whenever a gallery is opened, for searching or writing, so a changed byte
    in an item row is refused like a damaged index, not served as right.
    """
    if recomputed != recorded:
        raise GalleryError(
            f"{path}: item rows (paths, identities, hashes) do not match the items fingerprint "
            "in manifest.json; the item database was edited or damaged"
        )


class ItemStore:
    """Read access to the items visible at one generation (thread-safe for readers)."""

    def __init__(self, path: Path, generation: int) -> None:
        self.path = path
        self.generation = generation
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self._db.execute(
                "SELECT id, path, identity, sha256, added_gen, removed_gen FROM items LIMIT 1"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{path}: unreadable item database ({exc})") from exc

    def close(self) -> None:
        """Release the database connection."""
        self._db.close()

    def _query(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path}: unreadable item database ({exc})") from exc

    def meta(self, key: str) -> str | None:
        """A value of the meta table (gallery_id, dimension)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def count(self, identity: str | None = None) -> int:
        """Number of items (of one identity, when given)."""
        if identity is None:
            sql, params = f"SELECT COUNT(*) FROM items WHERE {VISIBLE}", {"gen": self.generation}
        else:
            sql = f"SELECT COUNT(*) FROM items WHERE {VISIBLE} AND identity = :identity"
            params = {"gen": self.generation, "identity": identity}
        return int(self._query(sql, params)[0][0])

    def get(self, ids: Sequence[int]) -> dict[int, Item]:
        """Items by id (ids not present at this generation are absent from the result)."""
        visible = "added_gen <= ? AND (removed_gen IS NULL OR removed_gen > ?)"
        try:
            rows = select_by_ids(
                self._db,
                "id, path, identity, sha256",
                ids,
                visible,
                (self.generation, self.generation),
            )
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path}: unreadable item database ({exc})") from exc
        return {row[0]: Item(*row) for row in rows}

    def by_paths(self, paths: Sequence[str]) -> list[Item]:
        """Items at these paths (in id order; paths not in this generation are absent)."""
        return self._where_in("path", paths)

    def all_items(self) -> list[Item]:
        """Every item, by id."""
        return [
            Item(*row)
            for row in self._query(
                f"SELECT id, path, identity, sha256 FROM items WHERE {VISIBLE} ORDER BY id",
                {"gen": self.generation},
            )
        ]

    def of_identity(self, identity: str, offset: int = 0, limit: int | None = None) -> list[Item]:
        """One identity's items, by id; ``offset`` and ``limit`` page them.

        An index on identity finds them.
        """
        rows = self._query(
            f"SELECT id, path, identity, sha256 FROM items WHERE {VISIBLE} AND identity = :identity"
            " ORDER BY id LIMIT :limit OFFSET :offset",
            {
                "gen": self.generation,
                "identity": identity,
                "limit": -1 if limit is None else limit,
                "offset": offset,
            },
        )
        return [Item(*row) for row in rows]

    def by_sha256(self, hashes: Sequence[str]) -> list[Item]:
        """Items whose content hash is in ``hashes``, in id order: the same image under any path."""
        return self._where_in("sha256", hashes)

    def _where_in(self, column: str, values: Sequence[str]) -> list[Item]:
        """This generation's items whose ``column`` is one of ``values``, in id order.

        SQLite caps the parameters of one statement, so long lists are asked for in chunks.
        """
        rows: list[tuple] = []
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), MAX_SQL_PARAMS):
            names = {
                f"v{i}": value for i, value in enumerate(unique[start : start + MAX_SQL_PARAMS])
            }
            marks = ",".join(":" + name for name in names)
            rows += self._query(
                "SELECT id, path, identity, sha256 FROM items "
                f"WHERE {VISIBLE} AND {column} IN ({marks})",
                {"gen": self.generation, **names},
            )
        return sorted((Item(*row) for row in rows), key=lambda item: item.id)

    def ids(self) -> NDArray[np.int64]:
        """Every item id, ascending."""
        rows = self._query(
            f"SELECT id FROM items WHERE {VISIBLE} ORDER BY id", {"gen": self.generation}
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def ids_where(self, condition: str, params: dict[str, object]) -> NDArray[np.int64]:
        """The ids, ascending, of the items meeting an SQL ``condition`` over the item columns.

        ``condition`` comes from a parsed search filter (``Where.sql()``), never from user text
        directly; its values are bound as named parameters.
        """
        rows = self._query(
            f"SELECT id FROM items WHERE {VISIBLE} AND ({condition}) ORDER BY id",
            {**params, "gen": self.generation},
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def identity_counts(self) -> dict[str, int]:
        """Number of items per identity."""
        rows = self._query(
            f"SELECT identity, COUNT(*) FROM items WHERE {VISIBLE} "
            "GROUP BY identity ORDER BY identity",
            {"gen": self.generation},
        )
        return {identity: count for identity, count in rows}

    def staged_count(self) -> int:
        """Items embedded by an unfinished build, not yet published (invisible to searches)."""
        return int(self._query("SELECT COUNT(*) FROM items WHERE added_gen IS NULL")[0][0])

    def fingerprint(self) -> str:
        """The items fingerprint recomputed from every row (what the manifest must record)."""
        return combine_fingerprint(
            EMPTY_FINGERPRINT, self._query(FINGERPRINT_ROWS, {"gen": self.generation})
        )

    def vectors(self, ids: NDArray[np.int64], dim: int) -> NDArray[np.float32]:
        """The stored embeddings of ``ids``, in that order."""
        out = np.zeros((len(ids), dim), np.float32)
        position = {int(i): n for n, i in enumerate(ids)}
        for item_id, blob in select_by_ids(self._db, "id, vector", ids, "vector IS NOT NULL"):
            out[position[item_id]] = np.frombuffer(blob, dtype=np.float32)
        return out

    def integrity_problems(self) -> list[str]:
        """SQLite's own page-level check ("ok" is reported as no problem)."""
        rows = self._query("PRAGMA integrity_check")
        return [] if [r[0] for r in rows] == ["ok"] else [f"{self.path}: {r[0]}" for r in rows]
