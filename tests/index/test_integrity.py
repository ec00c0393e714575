"""Damaged galleries are detected and never silently replaced.

Damage is found by checksum, before FAISS reads a byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import GalleryError
from siamese.index import Gallery
from siamese.index.store.manifest import Manifest


@pytest.fixture()
def gallery(vector_gallery, clustered) -> Path:
    return vector_gallery("g", clustered(500, 8), "Flat")


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "message"),
    [("truncate", "truncated or damaged"), ("flip", "checksum does not match manifest.json")],
)
def test_damaged_index_file_is_named_and_left_alone(gallery: Path, how: str, message: str) -> None:
    index_file = gallery / Manifest.read(gallery).index_file
    damage(index_file, how)
    damaged = index_file.read_bytes()
    with pytest.raises(GalleryError, match=message) as info:
        Gallery.open(gallery)
    assert str(index_file) in str(info.value)
    with pytest.raises(GalleryError, match=message):
        Gallery.remove(
            gallery, identities=["id1"]
        )  # a writer refuses too, before changing anything
    assert index_file.read_bytes() == damaged and Manifest.read(gallery).count == 500
    report = Gallery.verify(gallery)
    assert not report.ok and message in report.problems[0]


def test_edited_or_damaged_manifest_is_refused(gallery: Path) -> None:
    path = gallery / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "count": 499}))
    with pytest.raises(GalleryError, match="manifest.json: checksum does not match its content"):
        Gallery.open(gallery)
    path.write_text("{ not json")
    with pytest.raises(GalleryError, match="damaged manifest"):
        Gallery.open(gallery)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(GalleryError, match="damaged manifest"):
        Gallery.open(gallery)


def test_manifest_of_another_gallery_is_refused(gallery: Path, vector_gallery, clustered) -> None:
    other = vector_gallery("other", clustered(500, 8, seed=1), "Flat")
    manifest = Manifest.read(other)
    shutil.copy(other / "manifest.json", gallery / "manifest.json")
    shutil.copy(other / manifest.index_file, gallery / manifest.index_file)
    with pytest.raises(GalleryError, match="belongs to another gallery"):
        Gallery.open(gallery)


def test_damaged_item_database_is_named(gallery: Path) -> None:
    (gallery / "items.sqlite").write_bytes(b"SQLite format 3\0" + b"\x00" * 100)
    with pytest.raises(GalleryError, match="items.sqlite: unreadable item database"):
        Gallery.open(gallery)


def test_verify_reports_changed_item_rows(gallery: Path) -> None:
    import sqlite3

    with sqlite3.connect(gallery / "items.sqlite") as db:
        db.execute("UPDATE items SET identity = 'mallory' WHERE id = 3")
    report = Gallery.verify(gallery, check_files=False)
    assert not report.ok and any("items fingerprint" in p for p in report.problems)


def test_second_writer_fails_fast(gallery: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "from siamese.index.store.lock import WriterLock; import time; "
                f"WriterLock({str(gallery)!r}).acquire(); print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["index", "remove", str(gallery), "--identity", "id1"])
        assert result.exit_code == 1 and time.perf_counter() - started < 5
        assert (
            "gallery is locked by another writer (pid" in result.stderr
            and len(result.stderr.strip().splitlines()) == 1
        )
        with Gallery.open(gallery) as opened:  # readers never wait for a writer
            assert len(opened) == 500 and opened.info()["writer_active"]
    finally:
        holder.kill()
        holder.wait()
    assert (
        Gallery.remove(gallery, identities=["id1"]).removed == 50
    )  # the kernel released the killed holder's lock


def flip_byte(items: Path, column: str, item_id: int, position: int, bit: int) -> None:
    """Change one bit of one byte of an item row's ``column``.

    Stored back as text like siamese stores it.
    """
    import sqlite3

    with sqlite3.connect(items) as db:
        (value,) = db.execute(
            f"SELECT CAST({column} AS BLOB) FROM items WHERE id = ?", (item_id,)
        ).fetchone()
        data = bytearray(value)
        data[position % len(data)] ^= 1 << bit
        db.execute(
            f"UPDATE items SET {column} = CAST(? AS TEXT) WHERE id = ?", (bytes(data), item_id)
        )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    column=st.sampled_from(["path", "identity"]),
    item_id=st.integers(1, 500),
    position=st.integers(0, 64),
    bit=st.integers(0, 7),
)
def test_a_changed_byte_in_an_item_row_is_refused_on_open(
    gallery: Path,
    tmp_path_factory: pytest.TempPathFactory,
    column: str,
    item_id: int,
    position: int,
    bit: int,
) -> None:
    copy = tmp_path_factory.mktemp("tampered") / "g"
    shutil.copytree(gallery, copy)
    flip_byte(copy / "items.sqlite", column, item_id, position, bit)
    with pytest.raises(GalleryError, match="items.sqlite: ") as info:
        Gallery.open(copy)
    assert str(copy / "items.sqlite") in str(info.value)
    with pytest.raises(GalleryError, match="items.sqlite: "):
        Gallery.remove(copy, identities=["id1"])  # a writer refuses too, and changes nothing
    report = Gallery.verify(copy, check_files=False)
    assert not report.ok and str(copy / "items.sqlite") in report.problems[0]


def test_query_refuses_a_gallery_with_an_edited_row(
    gallery_dir: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "g"
    shutil.copytree(gallery_dir, copy)
    photo = next(unseen_dataset.rglob("*.png"))
    assert CliRunner().invoke(app, ["query", str(photo), "--gallery", str(copy)]).exit_code == 0
    flip_byte(copy / "items.sqlite", "path", 2, 5, 0)
    result = CliRunner().invoke(app, ["query", str(photo), "--gallery", str(copy), "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{copy / 'items.sqlite'}: item rows" in result.stderr.replace("\n", "")
