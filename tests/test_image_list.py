"""Gallery image lists (CSV and Parquet): paths against the list's folder, refused rows, odd input.

A list is the whole gallery: a build from it holds exactly the images it names, and a later build
from a shorter list removes the others. Any text in a CSV list gives a scan or one DataError
naming the list, never another exception.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siamese.core.errors import DataError
from siamese.data.image_list import scan_image_list
from siamese.engine import Embedder
from siamese.index import Gallery


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_relative_paths_resolve_against_the_list_folder(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    listing = _write_csv(
        tmp_path / "lists" / "g.csv",
        [
            ["identity", "path", "extra"],
            ["alice", "../img/a.jpg", "x"],
            ["bob", "/abs/b.png", ""],
            ["", "c.png", ""],
            ["carol", "", ""],
            ["dave", "notes.txt", ""],
        ],
    )
    scan = scan_image_list(listing)
    assert [(str(i.path), i.identity) for i in scan.images] == [
        (str(tmp_path / "lists" / ".." / "img" / "a.jpg"), "alice"),
        ("/abs/b.png", "bob"),
    ]
    reasons = dict(scan.refused)
    assert reasons[str(tmp_path / "lists" / "c.png")] == "line 4 of the list has no identity"
    assert reasons[f"{listing}:5"] == "line 5 of the list has no path"
    assert "not named like an image" in reasons[str(tmp_path / "lists" / "notes.txt")]


def test_parquet_lists_read_like_csv(tmp_path: Path) -> None:
    table = pa.table({"path": ["x/a.jpg", None], "identity": ["alice", "bob"]})
    pq.write_table(table, tmp_path / "g.parquet")
    scan = scan_image_list(tmp_path / "g.parquet")
    assert [(str(i.path), i.identity) for i in scan.images] == [
        (str(tmp_path / "x" / "a.jpg"), "alice")
    ]
    assert scan.refused == [(f"{tmp_path / 'g.parquet'}:2", "row 2 of the list has no path")]


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("no-header.csv", b"a.jpg,alice\n", "columns path and identity"),
        ("latin.csv", "path,identity\n\xe9.jpg,x\n".encode("latin-1"), "not UTF-8"),
        ("fake.parquet", b"not parquet at all", "not a readable Parquet list"),
        ("list.txt", b"path,identity\n", ".csv or .parquet"),
    ],
)
def test_bad_lists_are_one_line_errors(tmp_path: Path, name: str, content: bytes, words: str):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=words) as raised:
        scan_image_list(tmp_path / name)
    assert str(raised.value).startswith(str(tmp_path / name)) and "\n" not in str(raised.value)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_any_csv_bytes_give_a_scan_or_a_data_error(tmp_path: Path, data: bytes) -> None:
    listing = tmp_path / "fuzz.csv"
    listing.write_bytes(b"path,identity\n" + data)
    try:
        scan = scan_image_list(listing)
    except DataError as exc:
        assert str(exc).startswith(str(listing))
        return
    for image in scan.images:
        assert image.identity and image.path.is_absolute()


def test_a_gallery_built_from_a_list_holds_exactly_what_it_names(
    unseen_dataset: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    images = sorted(unseen_dataset.rglob("*.*"))
    rows = [["path", "identity"]] + [[str(p), p.parent.name] for p in images]
    listing = _write_csv(tmp_path / "all.csv", rows)
    embedder = Embedder(tiny_model_path)
    built = Gallery.build(listing, embedder, tmp_path / "gallery")
    assert built.count == len(images)
    _write_csv(listing, rows[:5])  # the list now names 4 images: the others go
    again = Gallery.build(listing, embedder, tmp_path / "gallery")
    assert (again.count, again.removed, again.embedded) == (4, len(images) - 4, 0)
    with Gallery.open(tmp_path / "gallery") as opened:
        assert sorted(i.path for i in opened.all_items()) == sorted(str(p) for p in images[:4])
