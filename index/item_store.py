"""The gallery's item metadata in SQLite: id, path, identity, content hash, time added."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from siamese.errors import GalleryError
from siamese.index.results import Item

_SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    identity TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    added TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX items_identity ON items(identity);
"""
_MAX_SQL_PARAMS = 900


def write_items(path: Path, items: Iterable[Item]) -> None:
    """Create a new item database at ``path`` holding ``items`` (path must not exist)."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.executescript(_SCHEMA)
            connection.executemany(
                "INSERT INTO items (id, path, identity, sha256) VALUES (?, ?, ?, ?)",
                ((item.id, item.path, item.identity, item.sha256) for item in items),
            )
    finally:
        connection.close()


class ItemStore:
    """Read access to an item database (thread-safe for readers)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self._db.execute("SELECT id, path, identity, sha256 FROM items LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{path}: unreadable item database ({exc})") from exc

    def close(self) -> None:
        """Release the database connection."""
        self._db.close()

    def count(self) -> int:
        """Number of items."""
        return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def get(self, ids: Sequence[int]) -> dict[int, Item]:
        """Items by id (ids not present are absent from the result)."""
        found: dict[int, Item] = {}
        unique = list(dict.fromkeys(int(i) for i in ids))
        for start in range(0, len(unique), _MAX_SQL_PARAMS):
            chunk = unique[start : start + _MAX_SQL_PARAMS]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT id, path, identity, sha256 FROM items WHERE id IN ({marks})", chunk):
                found[row[0]] = Item(*row)
        return found

    def identity_counts(self) -> dict[str, int]:
        """Number of items per identity."""
        rows = self._db.execute("SELECT identity, COUNT(*) FROM items GROUP BY identity ORDER BY identity")
        return {identity: count for identity, count in rows}
