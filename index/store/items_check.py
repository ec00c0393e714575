"""The item rows' check on open: recomputed over every row, unless the database is unchanged since.

Opening a gallery checks its item rows against the manifest: the row count and the items
fingerprint (:func:`~siamese.index.store.item_store.refuse_edited_rows`), so an edited row is
refused,
not served as right. Both read every row: 0.1 s per 100k rows plus the scan of the table, close
to a minute at 10^7 items, which every `siamese serve` or `siamese query` start would wait for.

So, as git does for its index, a successful check records what the file system says of the
item database and its WAL file (device, inode, size, modification and change times in
nanoseconds) beside the generation, count and fingerprint it checked, in ``items.checked.json``.
A later open of the same generation skips the recount and the recomputation only when all of
it is unchanged. Any write through SQLite or an editor changes the change time, which no call
a user can make sets back (setting the times sets it to now), so an edited row still gets the
full check and is refused. A check whose files changed less than :data:`RACY_SECONDS` before it
started records nothing: a write in the same clock tick could leave the times equal (git's
"racy" entries). `siamese index verify` always recomputes. The record is only ever a shortcut:
unreadable, stale or unwritable (a read-only gallery), it is ignored and the full check runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from siamese.core.errors import GalleryError
from siamese.index.store.item_store import ItemStore, refuse_edited_rows
from siamese.index.store.manifest import Manifest

CHECKED_FILE = "items.checked.json"
#: Files changed more recently than this when a check starts leave no record (clock ticks are
#: coarser than the nanoseconds the times are given in).
RACY_SECONDS = 2.0


def check_item_rows(
    gallery_dir: Path, manifest: Manifest, items: ItemStore, index_count: int
) -> None:
    """Raise GalleryError unless the rows visible at the manifest's generation are its rows.

    Checked: the row count against the manifest and the index, and the items fingerprint; skipped
    when ``items.checked.json`` shows the database unchanged since those checks last passed.
    """
    items_path = gallery_dir / manifest.items_file
    if manifest.count != index_count:
        raise GalleryError(
            f"{items_path}: manifest says {manifest.count} items at generation "
            f"{manifest.generation}, index {index_count}"
        )
    expected = _expected_record(manifest)
    before = _file_states(items_path)
    if before is not None and _read_record(gallery_dir) == {**expected, "files": before}:
        return
    count = items.count()
    if count != manifest.count:
        raise GalleryError(
            f"{items_path}: holds {count} items at generation {manifest.generation}, "
            f"manifest says {manifest.count}, index {index_count}"
        )
    refuse_edited_rows(items_path, items.fingerprint(), manifest.items_fingerprint)
    if before is not None and _settled(before):
        _write_record(gallery_dir, {**expected, "files": before})


def _expected_record(manifest: Manifest) -> dict[str, Any]:
    return {
        "gallery_id": manifest.gallery_id,
        "generation": manifest.generation,
        "count": manifest.count,
        "items_fingerprint": manifest.items_fingerprint,
    }


def _file_states(items_path: Path) -> dict[str, list[int]] | None:
    """Device, inode, size, mtime and ctime (ns) of the database and its WAL; None if unreadable."""
    states = {}
    for path in (items_path, items_path.with_name(items_path.name + "-wal")):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            if path == items_path:
                return None
            continue  # no WAL: the database file holds everything
        except OSError:
            return None
        if path != items_path and stat.st_size == 0:
            continue  # an empty WAL holds nothing (SQLite creates and deletes it as it likes)
        states[path.name] = [
            stat.st_dev,
            stat.st_ino,
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ctime_ns,
        ]
    return states


def _settled(states: dict[str, list[int]]) -> bool:
    """True when no file of ``states`` changed within RACY_SECONDS of now."""
    newest = max(max(state[3], state[4]) for state in states.values())
    return time.time_ns() - newest >= RACY_SECONDS * 1e9


def _read_record(gallery_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((gallery_dir / CHECKED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(gallery_dir: Path, record: dict[str, Any]) -> None:
    """Write the record atomically; a gallery that cannot be written is simply checked in full."""
    temporary = gallery_dir / f".{CHECKED_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(json.dumps(record, sort_keys=True))
        os.replace(temporary, gallery_dir / CHECKED_FILE)
    except OSError:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
