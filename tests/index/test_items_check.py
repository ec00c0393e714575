"""The item rows' check on open is skipped only while the item database is unchanged since.

The record (items.checked.json) is a shortcut for opening large galleries fast: every way the
database can change (an edited row, a copy, a new generation) must bring the full check back.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from siamese.core.errors import GalleryError
from siamese.index import Gallery
from siamese.index.store import items_check
from siamese.index.store.item_store import ItemStore
from tests.index.test_integrity import flip_byte


@pytest.fixture()
def gallery(vector_gallery, clustered) -> Path:
    return vector_gallery("g", clustered(300, 8), "Flat")


@pytest.fixture()
def row_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count full row checks (the recount and the fingerprint over every row)."""
    calls: list[str] = []
    original = ItemStore.fingerprint

    def counted(self: ItemStore) -> str:
        calls.append(str(self.path))
        return original(self)

    monkeypatch.setattr(ItemStore, "fingerprint", counted)
    return calls


def _open_and_search(folder: Path) -> int:
    with Gallery.open(folder) as opened:
        return int(opened.nearest(np.ones((1, 8), np.float32), 3)[1][0, 0])


def test_an_unchanged_database_is_not_read_again(
    gallery: Path, row_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items_check, "RACY_SECONDS", 0.0)
    first = _open_and_search(gallery)
    record = json.loads((gallery / items_check.CHECKED_FILE).read_text())
    assert record["count"] == 300 and len(row_checks) == 1
    assert _open_and_search(gallery) == first and _open_and_search(gallery) == first
    assert len(row_checks) == 1  # the two later opens trusted the record


def test_a_row_edited_after_a_passed_check_is_refused(
    gallery: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items_check, "RACY_SECONDS", 0.0)
    _open_and_search(gallery)
    assert (gallery / items_check.CHECKED_FILE).is_file()
    time.sleep(0.05)  # past the file system's clock tick, as any later edit is
    flip_byte(gallery / "items.sqlite", "identity", 7, 0, 1)
    with pytest.raises(GalleryError, match="item rows .* do not match the items fingerprint"):
        Gallery.open(gallery)


def test_a_copied_gallery_is_checked_in_full(
    gallery: Path, tmp_path: Path, row_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items_check, "RACY_SECONDS", 0.0)
    _open_and_search(gallery)
    copy = tmp_path / "copy"
    shutil.copytree(gallery, copy)  # copies the record and the times, not the inode
    _open_and_search(copy)
    assert row_checks == [str(gallery / "items.sqlite"), str(copy / "items.sqlite")]


def test_a_new_generation_is_checked_in_full(
    gallery: Path, row_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items_check, "RACY_SECONDS", 0.0)
    _open_and_search(gallery)
    Gallery.remove(gallery, identities=["id1"])
    checks = len(row_checks)
    _open_and_search(gallery)
    assert len(row_checks) == checks + 1


def test_a_recent_change_leaves_no_record(
    gallery: Path, row_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check right after a write might share its clock tick: it records nothing."""
    monkeypatch.setattr(items_check, "RACY_SECONDS", 3600.0)
    _open_and_search(gallery)
    _open_and_search(gallery)
    assert not (gallery / items_check.CHECKED_FILE).exists() and len(row_checks) == 2


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"count": 300}'])
def test_a_damaged_record_only_means_a_full_check(
    gallery: Path, row_checks: list[str], monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    monkeypatch.setattr(items_check, "RACY_SECONDS", 0.0)
    (gallery / items_check.CHECKED_FILE).write_text(content)
    _open_and_search(gallery)
    assert len(row_checks) == 1
    assert json.loads((gallery / items_check.CHECKED_FILE).read_text())["count"] == 300
