"""Galleries in Milvus: the gallery API on a ``milvus-lite:`` file (and a server when one is set).

Every test runs against Milvus Lite, embedded, in a fresh file. Set ``SIAMESE_TEST_MILVUS_URI``
(e.g. ``milvus://localhost:19530``) to run each again against a Milvus server, in a collection
of its own that is dropped afterwards; without it that variant is skipped.

Vectors come from a fake embedder that reads them from the "image" files, so the data is exact
(clustered like identities) and a run takes seconds.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")

from siamese.core.errors import DataError, GalleryError, ModelMismatchError
from siamese.core.files import sha256_file
from siamese.index import Gallery
from siamese.index.location import MilvusLocation, parse_location
from siamese.index.milvus import collection
from siamese.index.milvus.store import MilvusStore
from siamese.index.search.filters import FilterError, parse_where
from siamese.index.store import crash_points

DIM = 16
#: A Milvus server to run every test against as well (``milvus://HOST:PORT``); unset: skipped.
SERVER_VARIABLE = "SIAMESE_TEST_MILVUS_URI"


@dataclass
class Batch:
    embeddings: np.ndarray
    paths: list[str]
    failures: list[tuple[str, str]]


class FileVectors:
    """An embedder whose "images" hold their vector's float32 bytes; b"bad…" files are refused."""

    dim = DIM

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.fingerprint = sha256_file(model_path)
        self.embedded: list[str] = []

    def iter_embed_paths(self, paths: list[str]) -> Iterator[Batch]:
        for start in range(0, len(paths), 4):
            batch = Batch(np.zeros((0, DIM), np.float32), [], [])
            rows = []
            for name in paths[start : start + 4]:
                data = Path(name).read_bytes()
                if data.startswith(b"bad"):
                    batch.failures.append((name, "not an image format Pillow can read"))
                    continue
                rows.append(np.frombuffer(data, np.float32))
                batch.paths.append(name)
                self.embedded.append(name)
            if rows:
                batch.embeddings = np.stack(rows)
            yield batch


def clustered(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, DIM)).astype(np.float32)
    return (centres[np.arange(count) % 10] + 0.3 * rng.normal(size=(count, DIM))).astype(np.float32)


def write_images(root: Path, vectors: np.ndarray, start: int = 0) -> list[Path]:
    """Image n of identity id<n % 10>, holding vector n."""
    paths = []
    for n, vector in enumerate(vectors, start=start):
        path = root / f"id{n % 10}" / f"{n}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(vector.astype(np.float32).tobytes())
        paths.append(path)
    return paths


@pytest.fixture(params=["lite", "server"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh gallery location: a Milvus Lite file, or a new collection on the test server."""
    if request.param == "lite":
        yield f"milvus-lite:{tmp_path / 'gallery.db'}"
        return
    server = os.environ.get(SERVER_VARIABLE)
    if not server:
        pytest.skip(f"set {SERVER_VARIABLE}=milvus://HOST:PORT to test against a Milvus server")
    text = f"{server.rstrip('/')}/siamese_test_{uuid.uuid4().hex[:12]}"
    yield text
    store = MilvusStore(parse_location(text))  # type: ignore[arg-type]
    store.client.drop_collection(store.name)


@pytest.fixture()
def embedder(tmp_path: Path) -> FileVectors:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"fake model")
    return FileVectors(model)


def rows_by_path(location: str) -> Counter[str]:
    store = MilvusStore(parse_location(location))  # type: ignore[arg-type]
    return Counter(row["path"] for page in store.rows(["path"]) for row in page)


# ------------------------------------------------------------------- locations
def test_locations_parse_to_server_lite_or_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIAMESE_MILVUS_TOKEN", "root:s3cr3t")
    server = parse_location(Path("milvus://db.example:19531/faces"))  # a Path collapses "//"
    assert server == MilvusLocation("milvus://db.example:19531/faces", "http://db.example:19531",
                                    "faces", False)  # fmt: skip
    assert server.token == "root:s3cr3t" and "s3cr3t" not in repr(server)
    assert parse_location("milvus://db/faces").uri == "http://db:19530"
    lite = parse_location("milvus-lite:some/dir/g.db")
    assert isinstance(lite, MilvusLocation) and lite.lite and lite.collection == "gallery"
    assert Path(lite.uri).is_absolute() and lite.uri.endswith("some/dir/g.db")
    assert parse_location("milvus-lite:/x/g.db/people").collection == "people"
    assert parse_location("galleries/faces") == Path("galleries/faces")
    for bad in ("milvus://host/bad-name", "milvus-lite:nodb", "milvus://host/1x"):
        with pytest.raises(GalleryError, match="Milvus|collection"):
            parse_location(bad)


@given(
    st.one_of(
        st.text(max_size=40),
        st.builds(
            "".join,
            st.tuples(
                st.sampled_from(["milvus:", "milvus://", "milvuss://", "milvus-lite:", "milvus:/"]),
                st.text(max_size=40),
            ),
        ),
    )
)
def test_any_location_text_is_a_folder_a_collection_or_one_line_error(text: str) -> None:
    try:
        parsed = parse_location(text)
    except GalleryError as exc:
        assert "\n" not in str(exc).strip() and text.startswith(("milvus", "milvuss"))
        return
    if isinstance(parsed, MilvusLocation):
        assert parsed.collection and str(parsed).startswith("milvus")
        assert parsed.lite == str(parsed).startswith("milvus-lite:")
    else:
        assert parsed == Path(text)


# ------------------------------------------------------------ the gallery API
def test_build_search_add_remove_info_verify(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    vectors = clustered(40)
    write_images(tmp_path / "images", vectors)
    report = Gallery.build(tmp_path / "images", embedder, location, commit_every=16)
    assert (report.count, report.identities, report.embedded) == (40, 10, 40)
    assert report.index_type == "FLAT" and report.recall["exact"]

    with Gallery.open(location, model_fingerprint=embedder.fingerprint) as gallery:
        result = gallery.search(vectors[7], k=3)[0]
        assert result.matches[0].path.endswith("/id7/7.png")
        assert result.matches[0].distance == pytest.approx(0.0, abs=1e-3)
        assert result.identities[0].identity == "id7"
        exact = np.linalg.norm(vectors - vectors[7], axis=1)
        distances, ids = gallery.nearest(vectors[7], k=5)
        assert np.allclose(distances[0], np.sort(exact)[:5], atol=1e-4)  # L2, not squared
        assert gallery.count("id3") == 4 and len(gallery.items_of("id3", 1, 2)) == 2
        only = gallery.search(vectors[7], k=3, where='identity in ["id2"]')[0]
        assert {m.identity for m in only.matches} == {"id2"}
        liked = gallery.search(vectors[7], k=9, where=parse_where("path like '%/id3/%'"))[0]
        assert {m.identity for m in liked.matches} == {"id3"} and len(liked.matches) == 4
        assert gallery.search(vectors[7], k=3, where="id < 0 and id > 0")[0].matches == []
        with pytest.raises(FilterError):
            gallery.search(vectors[7], where="colour == 'red'")
        assert gallery.item(ids[0][0]).path == result.matches[0].path

    extra = write_images(tmp_path / "more", clustered(2, seed=9), start=40)
    added = Gallery.add(location, extra, embedder)
    assert (added.count, added.embedded, added.generation) == (42, 2, 2)
    again = Gallery.add(location, extra, embedder)
    assert (again.count, again.embedded, again.unchanged) == (42, 0, 2)
    newcomer = write_images(tmp_path / "new", clustered(1, seed=4), start=0)[0]
    joined = Gallery.add(location, [newcomer], embedder, identity="newcomer")
    assert (joined.count, joined.identities) == (43, 11)  # counted from the touched rows
    removed = Gallery.remove(location, identities=["id0", "newcomer"])
    assert removed.removed == 6 and removed.count == 37  # 4 built + 1 added of id0, newcomer
    assert removed.identities == 9 == len(Gallery.describe(location)["identity_counts"])
    with pytest.raises(GalleryError, match="no items match"):
        Gallery.remove(location, identities=["nobody"])

    Gallery.set_threshold(location, 0.75)
    facts = Gallery.facts(location)
    assert facts["threshold"]["distance"] == 0.75 and facts["count"] == 37
    info = Gallery.describe(location)
    assert info["milvus"]["rows"] == 37 and "id0" not in info["identity_counts"]
    assert Gallery.query_model(location, role="gallery") == embedder.model_path.resolve()
    verified = Gallery.verify(location, check_files=True)
    assert verified.ok, verified.problems


FILTERS = [
    'identity in ["id2", "id5"]',
    "path like '%/id3/%' or id < 0",
    'not (identity == "id1") and identity != "id7"',
    "identity like 'id%' and not identity in ['id0', 'id9']",
    "id < 0",
]


@pytest.mark.parametrize("where", FILTERS)
def test_a_filter_answers_the_same_on_milvus_and_on_a_folder(
    where: str, location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    """The same data, the same filter: Milvus's expression and the folder's FAISS id selector
    return the same matches at the same distances."""
    vectors = clustered(60, seed=3)
    write_images(tmp_path / "images", vectors)
    Gallery.build(tmp_path / "images", embedder, location)
    Gallery.build(tmp_path / "images", embedder, tmp_path / "folder")
    queries = clustered(4, seed=11)
    answers = []
    for gallery_at in (location, tmp_path / "folder"):
        with Gallery.open(gallery_at, model_fingerprint=embedder.fingerprint) as gallery:
            results = gallery.search(queries, k=6, where=where)
            answers.append([[(m.path, round(m.distance, 4)) for m in r.matches] for r in results])
    assert answers[0] == answers[1]


def test_rebuild_embeds_only_what_changed(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    paths = write_images(images, clustered(20))
    Gallery.build(images, embedder, location)
    embedder.embedded.clear()
    paths[3].write_bytes(clustered(1, seed=5)[0].tobytes())  # changed content
    paths[4].unlink()  # vanished
    (images / "id9" / "bad.png").write_bytes(b"bad bytes")  # refused, reported
    report = Gallery.build(images, embedder, location)
    assert (report.embedded, report.removed, report.count) == (1, 1, 19)
    assert [p for p, _ in report.failures] == [str((images / "id9" / "bad.png").resolve())]
    assert embedder.embedded == [str(paths[3].resolve())]
    assert max(rows_by_path(location).values()) == 1
    with Gallery.open(location) as gallery:
        assert gallery.search(clustered(1, seed=5)[0], k=1)[0].matches[0].distance < 1e-3


def test_another_model_is_refused_naming_both(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    write_images(tmp_path / "images", clustered(10))
    Gallery.build(tmp_path / "images", embedder, location)
    other_model = tmp_path / "other.onnx"
    other_model.write_bytes(b"another model")
    other = FileVectors(other_model)
    short = embedder.fingerprint[:16], other.fingerprint[:16]
    for attempt in (
        lambda: Gallery.build(tmp_path / "images", other, location),
        lambda: Gallery.add(location, [tmp_path / "images"], other),
        lambda: Gallery.open(location, model_fingerprint=other.fingerprint),
    ):
        with pytest.raises(ModelMismatchError) as caught:
            attempt()
        assert short[0] in str(caught.value) and short[1] in str(caught.value)


def test_missing_gallery_and_empty_folder_are_one_line_errors(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    with pytest.raises(GalleryError, match="no such gallery"):
        Gallery.open(location)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        Gallery.build(tmp_path / "empty", embedder, location)
    report = Gallery.verify(location)
    assert not report.ok and "no such gallery" in report.problems[0]
    with pytest.raises(GalleryError, match="audit reads folder galleries"):
        Gallery.audit(location)


# --------------------------------------------------------------- crash safety
class KillAt:
    """Raise at the ``n``-th time the writer reaches ``point`` (a simulated kill)."""

    def __init__(self, point: str, n: int) -> None:
        self.point, self.n = point, n

    def __call__(self, point: str) -> None:
        if point == self.point:
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt(f"killed at {point}")


@pytest.mark.parametrize(
    ("point", "n"),
    [
        ("milvus.vanished_deleted", 1),
        ("milvus.chunk_upserted", 1),
        ("milvus.chunk_upserted", 3),
        ("milvus.record_written", 1),
    ],
)
def test_killed_build_resumes_with_no_duplicates(
    location: str, embedder: FileVectors, tmp_path: Path, point: str, n: int
) -> None:
    images = tmp_path / "images"
    write_images(images, clustered(30))
    previous = crash_points.install(KillAt(point, n))
    try:
        with pytest.raises(KeyboardInterrupt):
            Gallery.build(images, embedder, location, commit_every=8)
    finally:
        crash_points.install(previous)
    written = len(embedder.embedded)
    embedder.embedded.clear()
    report = Gallery.build(images, embedder, location, commit_every=8)
    rows = rows_by_path(location)
    assert len(rows) == 30 and set(rows.values()) == {1}
    ids = [item.id for item in Gallery.open(location).all_items()]
    assert len(set(ids)) == 30 and max(ids) < 2**53  # exact in JSON readers (the page)
    assert len(embedder.embedded) == 30 - min(written, 8 * n if "chunk" in point else 30)
    assert report.resumed + report.unchanged + report.embedded == 30
    assert Gallery.verify(location).ok


def test_paths_sharing_an_id_each_get_their_own(
    location: str, embedder: FileVectors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "ID_BITS", 7)  # 128 ids for 24 files: collisions likely
    write_images(tmp_path / "images", clustered(12))
    Gallery.build(tmp_path / "images", embedder, location, commit_every=5)
    rows = rows_by_path(location)
    assert len(rows) == 12 and set(rows.values()) == {1}
    embedder.embedded.clear()
    again = Gallery.build(tmp_path / "images", embedder, location)
    assert (again.embedded, again.unchanged, again.count) == (0, 12, 12)
    more = write_images(tmp_path / "more", clustered(12, seed=3), start=12)
    added = Gallery.add(location, more, embedder)  # reads these paths' rows, asks who holds ids
    assert (added.embedded, added.count) == (12, 24) and len(rows_by_path(location)) == 24
    assert Gallery.add(location, more, embedder).embedded == 0
    assert Gallery.verify(location, check_files=True).ok


def test_id_assigner_gives_colliding_paths_the_next_free_candidate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from siamese.index.store.item_writer import KnownFile

    monkeypatch.setattr(collection, "ID_BITS", 2)  # 4 ids: "a" to "d" must collide
    assign = collection.IdAssigner({})
    ids = {path: assign(path) for path in "abcd"}
    assert sorted(ids.values()) == [0, 1, 2, 3] and assign("b") == ids["b"]
    assert any(ids[p] != collection.item_id(p) for p in ids)
    assert all(collection.is_own_id(p, i) for p, i in ids.items())
    with pytest.raises(GalleryError, match="candidate ids are all held"):
        assign("e")
    held = {p: KnownFile(i, "x", "0" * 64, 1, 1, False) for p, i in ids.items()}
    assert collection.IdAssigner(held)("c") == ids["c"]  # a held file keeps its id


def test_unfinished_update_is_reported_by_verify(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    write_images(tmp_path / "images", clustered(12))
    Gallery.build(tmp_path / "images", embedder, location)
    previous = crash_points.install(KillAt("milvus.chunk_upserted", 1))
    try:
        with pytest.raises(KeyboardInterrupt):
            Gallery.add(location, write_images(tmp_path / "more", clustered(3), 12), embedder)
    finally:
        crash_points.install(previous)
    report = Gallery.verify(location, check_files=False)
    assert not report.ok and "did not finish" in report.problems[0]
    Gallery.add(location, [tmp_path / "more"], embedder)
    assert Gallery.verify(location, check_files=False).ok


# ----------------------------------------------------------------- index types
def test_index_types_map_onto_milvus_with_recall_against_exact(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    vectors = clustered(400)
    write_images(tmp_path / "images", vectors)
    images = tmp_path / "images"
    hnsw = Gallery.build(images, embedder, location, index="HNSW16", recall_queries=100)
    assert hnsw.index_type == "HNSW(M=16)" and set(hnsw.search_params) == {"efSearch"}
    assert hnsw.recall["queries"] == 100 and hnsw.recall["at10"] >= 0.95
    embedder.embedded.clear()
    ivf = Gallery.build(images, embedder, location, index="IVF_FLAT", recall_queries=100)
    assert embedder.embedded == [] and ivf.count == 400  # the rows stay; only the index changes
    assert ivf.index_type.startswith("IVF_FLAT(nlist=") and set(ivf.search_params) == {"nprobe"}
    assert ivf.recall["at10"] >= 0.95 and ivf.recall["params"] == ivf.search_params
    with Gallery.open(location) as gallery:
        assert gallery.info()["milvus"]["index_type"] == "IVF_FLAT"
        queries = vectors[:20] + 0.05
        _, found = gallery.nearest(queries, k=1, params={"nprobe": 64})
        exact = np.argmin(((queries[:, None] - vectors[None]) ** 2).sum(-1), axis=1)
        assert [Path(gallery.item(int(i)).path).stem for i in found[:, 0]] == [
            str(n) for n in exact
        ]
    sq8 = Gallery.build(images, embedder, location, index="IVF16,SQ8", recall_queries=100)
    assert sq8.index_type == "IVF_SQ8(nlist=16)" and sq8.recall["exact"] is False
    fixed = Gallery.build(
        images, embedder, location, index="IVF16,SQ8", search_params={"nprobe": 1}
    )
    assert fixed.search_params == {"nprobe": 1} and fixed.recall["params"] == {"nprobe": 1}
    assert fixed.recall["at10"] <= sq8.recall["at10"]  # one list of 16 finds no more
    if parse_location(location).lite:  # type: ignore[union-attr]
        assert fixed.recall["at10"] < sq8.recall["at10"]  # sealed segments use the index
    if not parse_location(location).lite:  # type: ignore[union-attr]
        pq = Gallery.build(images, embedder, location, index="IVF_PQ")
        assert pq.index_type.startswith("IVF_PQ(") and "m=8" in pq.index_type
    with pytest.raises(GalleryError, match="no search parameter efSearch"):
        Gallery.open(location, search_params={"efSearch": 32})
    auto = Gallery.build(images, embedder, location, index="auto")
    assert auto.choice["asked"] == "auto" and auto.index_type == "FLAT"  # 400 vectors: exact
    assert Gallery.verify(location, check_files=False).ok


def test_index_types_milvus_cannot_build_are_refused(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    write_images(tmp_path / "images", clustered(40))
    for asked, fragment in (
        ("ondisk", "folder galleries"),
        ("IVF64_HNSW32,SQ8", "no Milvus counterpart"),
        ("LSH", "no Milvus counterpart"),
    ):
        with pytest.raises(GalleryError, match=fragment):
            Gallery.build(tmp_path / "images", embedder, location, index=asked)
    if parse_location(location).lite:  # type: ignore[union-attr]
        for server_only in ("DISKANN", "IVF_PQ", "IVF64,PQ8"):
            with pytest.raises(GalleryError, match="needs a Milvus server"):
                Gallery.build(tmp_path / "images", embedder, location, index=server_only)


def test_recall_below_the_minimum_is_refused_and_the_record_kept(
    location: str, embedder: FileVectors, tmp_path: Path
) -> None:
    from siamese.core.errors import RecallTooLowError

    if not parse_location(location).lite:  # type: ignore[union-attr]
        pytest.skip("a server leaves segments under 1024 rows unindexed: recall is exact")
    write_images(tmp_path / "images", clustered(300))
    Gallery.build(tmp_path / "images", embedder, location)
    with pytest.raises(RecallTooLowError, match="recall@10"):
        Gallery.build(
            tmp_path / "images", embedder, location, index="IVF64,Flat",
            search_params={"nprobe": 1}, min_recall=0.999, recall_queries=100,
        )  # fmt: skip
    assert Gallery.facts(location)["index_type"] == "FLAT"
    assert Gallery.describe(location)["milvus"]["index_type"] == "FLAT"
    assert Gallery.verify(location, check_files=False).ok
