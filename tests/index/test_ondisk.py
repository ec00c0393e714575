"""On-disk galleries: an IVF index built in parts, merged by FAISS into one memory-mapped file.

10^5 generated vectors (dimension 32, clustered) built in 4 parts by local worker processes:
the merged index returns exactly what one index filled in one process with the same trained
quantizer returns; holds every item once; opens after its folder moves; a data file that differs
from its manifest record is refused by name (open and verify); adds and removes between merges
never return a removed item; a build killed at each durable step leaves the last generation
readable and the next run finishes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from siamese.core.errors import GalleryError, RecallTooLowError
from siamese.index import Gallery, GalleryWriter
from siamese.index.ondisk import build as ondisk
from siamese.index.ondisk import files
from siamese.index.search import faiss_index as fx
from siamese.index.search.index_choice import choose_index, ondisk_type, parse_memory
from siamese.index.store import crash_points
from siamese.index.store.manifest import Manifest
from siamese.index.updates.writer import RecallPolicy
from siamese.index.verify import verify_gallery

from .conftest import QUICK_RECALL, clustered_vectors, make_vector_gallery

COUNT, DIM, PART_ITEMS = 100_000, 32, 25_000
TYPE = "ondisk:IVF256_HNSW32,SQ8"
NPROBE = 8


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered_vectors(COUNT, DIM, clusters=400, seed=3)


@pytest.fixture(scope="module")
def built(vectors: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 10^5 gallery, built in 4 parts by worker processes (ids 1..COUNT in vector order)."""
    previous, ondisk.PART_ITEMS = ondisk.PART_ITEMS, PART_ITEMS
    try:
        return make_vector_gallery(
            tmp_path_factory.mktemp("ondisk") / "gallery",
            vectors,
            TYPE,
            search_params={"nprobe": NPROBE},
        )
    finally:
        ondisk.PART_ITEMS = previous


def _copy(gallery: Path, where: Path) -> Path:
    return Path(shutil.copytree(gallery, where, ignore=shutil.ignore_patterns(".lock")))


def test_built_in_parts_and_merged(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    (lists,) = manifest["parts"]
    assert lists["role"] == "lists" and lists["count"] == COUNT
    assert [part["count"] for part in lists["merged_from"]] == [PART_ITEMS] * 4
    assert all(len(part["sha256"]) == 64 for part in lists["merged_from"])
    assert manifest["recall"]["at10"] >= 0.9 and manifest["recall"]["queries"] == 300
    leftovers = sorted(p.name for p in built.iterdir() if p.name not in {".lock"})
    assert leftovers == [
        "index.000001.faiss",
        "items.sqlite",
        "lists.000001.ivfdata",
        "manifest.json",
    ]


def test_same_neighbours_as_one_process(built: Path, vectors: np.ndarray) -> None:
    """Filled in one process with the merged index's own trained quantizer: identical results."""
    manifest = json.loads((built / "manifest.json").read_text())
    single = ondisk.trained_empty(built / manifest["index_file"])
    single.add(vectors)  # ids 0..n-1: the gallery's are 1..n
    queries = clustered_vectors(500, DIM, clusters=400, seed=99)
    params = fx.search_parameters(single, {"nprobe": NPROBE})  # the gallery's quantizer search too
    expected_d, expected_i = single.search(queries, 10, params=params)
    with Gallery.open(built) as gallery:
        distances, ids = gallery.nearest(queries, 10)
    assert np.array_equal(ids, expected_i + 1)
    np.testing.assert_allclose(distances, np.sqrt(expected_d), rtol=1e-5, atol=1e-5)


def test_searches_start_no_prefetch_threads(built: Path) -> None:
    """FAISS's default starts 32 threads per search to touch the lists: 4× a single query's scan."""
    import faiss

    with Gallery.open(built) as gallery:
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(gallery.index).invlists)
        assert isinstance(lists, faiss.OnDiskInvertedLists) and lists.prefetch_nthread == 0


def test_every_item_once_and_verified(built: Path) -> None:
    with Gallery.open(built) as gallery:
        ids = np.sort(fx.index_ids(gallery.index))
    assert np.array_equal(ids, np.arange(1, COUNT + 1))
    report = verify_gallery(built, check_files=False)
    assert report.ok, report.problems
    assert (report.duplicate_ids, report.missing_ids, report.phantom_ids) == (0, 0, 0)
    assert any("every chunk" in check for check in report.checked)


def test_opens_after_the_folder_moves(built: Path, vectors: np.ndarray, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path / "first" / "gallery")
    with Gallery.open(copy) as gallery:
        before = gallery.nearest(vectors[:20], 5)[1]
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "renamed"
    os.rename(copy, moved)
    with Gallery.open(moved) as gallery:
        assert np.array_equal(gallery.nearest(vectors[:20], 5)[1], before)
    assert verify_gallery(moved, check_files=False).ok


@pytest.mark.parametrize("name", ["lists.000001.ivfdata", "index.000001.faiss"])
def test_a_damaged_file_is_refused_by_name(built: Path, tmp_path: Path, name: str) -> None:
    copy = _copy(built, tmp_path / "gallery")
    target = copy / name
    size = target.stat().st_size
    with open(target, "r+b") as handle:  # one byte in the middle
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(GalleryError, match=name.replace(".", r"\.")):
        Gallery.open(copy)
    report = verify_gallery(copy, check_files=False)
    assert not report.ok and name in report.problems[0]
    with pytest.raises(GalleryError, match=name.replace(".", r"\.")):
        GalleryWriter.open(copy)  # nothing is written over a damaged gallery


def test_a_truncated_or_missing_file_is_refused_by_name(built: Path, tmp_path: Path) -> None:
    copy = _copy(built, tmp_path / "gallery")
    lists = copy / "lists.000001.ivfdata"
    os.truncate(lists, lists.stat().st_size - 1)
    with pytest.raises(GalleryError, match=r"lists\.000001\.ivfdata: .* truncated"):
        Gallery.open(copy)
    lists.unlink()
    with pytest.raises(GalleryError, match=r"lists\.000001\.ivfdata: missing"):
        Gallery.open(copy)


def test_large_files_are_sampled_on_open_and_read_whole_by_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunked checksums: open reads the first and last chunk of a large file, verify every one."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(files, "OPEN_FULL_CHECK_BYTES", 8192)
    path = tmp_path / "lists.000001.ivfdata"
    path.write_bytes(np.random.default_rng(0).bytes(10 * 4096 + 100))
    part = files.record(path, files.ROLE_LISTS, 1)
    assert len(part.chunks) == 11 and files.checksum_file(path)[0] == part.sha256

    def flip(offset: int) -> None:
        data = bytearray(path.read_bytes())
        data[offset] ^= 1
        path.write_bytes(bytes(data))

    flip(5 * 4096)  # a middle chunk: only a full check sees it
    files.check_part(tmp_path, part, full=False)
    with pytest.raises(
        GalleryError, match=r"lists\.000001\.ivfdata: checksum of bytes 20480-24576"
    ):
        files.check_part(tmp_path, part, full=True)
    flip(5 * 4096)
    flip(10 * 4096 + 50)  # the last chunk: opening sees it
    with pytest.raises(GalleryError, match="lists file is damaged"):
        files.check_part(tmp_path, part, full=False)


def test_min_recall_still_refuses(vectors: np.ndarray, tmp_path: Path) -> None:
    with (
        pytest.raises(RecallTooLowError, match=r"below the minimum asked for \(min_recall"),
        GalleryWriter.create(
            tmp_path / "g",
            dimension=DIM,
            model_fingerprint="0" * 64,
            model_path="none.onnx",
            index_type="ondisk:IVF64,PQ4",
        ) as writer,
    ):
        writer.stage_embeddings(vectors[:5000], [f"v/{n}" for n in range(5000)], ["x"] * 5000)
        writer.publish(
            search_params={"nprobe": 1},
            recall=RecallPolicy(minimum=0.99, queries=200),
        )
    with Gallery.open(tmp_path / "g") as gallery:
        assert len(gallery) == 0  # generation 0: nothing was published
    assert not [p for p in (tmp_path / "g").iterdir() if p.suffix in {".ivfdata", ".tmp"}]


def test_index_choice() -> None:
    assert ondisk_type(10**7) == "ondisk:IVF8192_HNSW32,SQ8"
    assert ondisk_type(10**5) == "ondisk:IVF512_HNSW32,SQ8"
    assert ondisk_type(1000) == "ondisk:IVF16_HNSW32,SQ8"
    assert choose_index(10**7, 256, parse_memory("8G")).index_type.startswith("ondisk:")
    assert not choose_index(10**6, 256, parse_memory("8G")).index_type.startswith("ondisk:")
    with pytest.raises(GalleryError, match="an on-disk index is an inverted file"):
        fx.new_index(8, "ondisk:HNSW32")


# ------------------------------------------------------------------ updates between merges
SMALL, SMALL_DIM = 3000, 16


def _small_gallery(folder: Path, vectors: np.ndarray) -> Path:
    return make_vector_gallery(folder, vectors, "ondisk:IVF16,Flat", search_params={"nprobe": 16})


class OnDiskUpdates(RuleBasedStateMachine):
    """Adds, removes and merges in any order: the index holds exactly the live items, once each,
    a removed item is never returned, and every generation verifies and reopens."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="siamese-ondisk-"))
        self.pool = clustered_vectors(SMALL * 3, SMALL_DIM, clusters=30, seed=7)
        self.next = SMALL
        self.removed: set[int] = set()

    @initialize()
    def build(self) -> None:
        self.gallery = _small_gallery(self.root / "g", self.pool[:SMALL])
        self.live = set(range(1, SMALL + 1))

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(count=st.integers(1, 400))
    def add(self, count: int) -> None:
        count = min(count, len(self.pool) - self.next)
        if not count:
            return
        with GalleryWriter.open(self.gallery) as writer:
            start = self.next
            writer.stage_embeddings(
                self.pool[start : start + count],
                [f"new/{n}" for n in range(start, start + count)],
                ["new"] * count,
            )
            writer.publish(recall=QUICK_RECALL)
        first = max(self.live | self.removed) + 1
        self.live |= set(range(first, first + count))
        self.next += count

    @rule(data=st.data(), share=st.floats(0.0, 0.3))
    def remove(self, data: st.DataObject, share: float) -> None:
        ordered = sorted(self.live)
        picked = data.draw(
            st.lists(st.sampled_from(ordered), min_size=1, max_size=max(1, int(share * 400)))
        )
        with GalleryWriter.open(self.gallery) as writer:
            writer.publish(removed=picked)
        self.live -= set(picked)
        self.removed |= set(picked)

    @invariant()
    def holds_exactly_the_live_items(self) -> None:
        if not hasattr(self, "gallery"):
            return
        with Gallery.open(self.gallery) as gallery:
            ids = fx.index_ids(gallery.index)
            assert len(ids) == len(set(ids.tolist())) == len(self.live) == len(gallery)
            assert set(ids.tolist()) == self.live
            if self.removed:
                ordered = sorted(self.removed)[:50]
                found = gallery.nearest(self.pool[np.array(ordered) - 1], 20)[1]
                assert not set(found.ravel().tolist()) & self.removed
            parts = {part["role"] for part in gallery.manifest.parts or []}
            assert "lists" in parts
        report = verify_gallery(self.gallery, check_files=False)
        assert report.ok, report.problems


def test_adds_and_removes_between_merges() -> None:
    run_state_machine_as_test(
        OnDiskUpdates,
        settings=settings(
            max_examples=4,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_small_changes_stay_beside_the_lists_and_large_ones_merge(tmp_path: Path) -> None:
    pool = clustered_vectors(SMALL * 2, SMALL_DIM, clusters=30, seed=11)
    gallery = _small_gallery(tmp_path / "g", pool[:SMALL])
    with GalleryWriter.open(gallery) as writer:
        writer.stage_embeddings(
            pool[SMALL : SMALL + 100], [f"n/{n}" for n in range(100)], ["n"] * 100
        )
        writer.publish(removed=list(range(1, 51)))
    manifest = json.loads((gallery / "manifest.json").read_text())
    assert [p["role"] for p in manifest["parts"]] == ["lists", "delta", "removed"]
    assert manifest["parts"][0]["name"] == "lists.000001.ivfdata"  # not rewritten
    with Gallery.open(gallery) as opened:
        assert opened.nearest(pool[SMALL : SMALL + 1], 1)[1][0, 0] == SMALL + 1  # added, found
        found = opened.nearest(pool[:50], 10)[1]
        assert not set(found.ravel().tolist()) & set(range(1, 51))
    with GalleryWriter.open(gallery) as writer:  # past MERGE_SHARE: merged, removals applied
        count = int(ondisk.MERGE_SHARE * SMALL) + 10
        writer.stage_embeddings(
            pool[SMALL + 100 : SMALL + 100 + count], [f"m/{n}" for n in range(count)], ["m"] * count
        )
        writer.publish()
    manifest = json.loads((gallery / "manifest.json").read_text())
    assert [p["role"] for p in manifest["parts"]] == ["lists"]
    assert manifest["parts"][0]["name"] == "lists.000003.ivfdata"
    assert sorted(p.name for p in gallery.iterdir() if p.suffix in {".ivfdata", ".npy"}) == [
        "lists.000003.ivfdata"
    ]
    assert manifest["count"] == SMALL - 50 + 100 + count
    assert verify_gallery(gallery, check_files=False).ok


# ------------------------------------------------------------------ killed mid-build
class Killed(BaseException):
    """Raised at a crash point, as if the process died there."""


#: What each scenario changes: a full build and merge (a new on-disk type, SMALL more items), or
#: an update beside the merged lists (100 items added, 3 removed).
CHANGES = {
    "merge": ("ondisk:IVF32,Flat", SMALL, []),
    "update": (None, 100, [1, 2, 3]),
}


def _publish_killed_at(
    gallery: Path, pool: np.ndarray, change: str, kill_at: int | None
) -> list[str]:
    index_type, added, removed = CHANGES[change]
    seen: list[str] = []

    def hook(point: str) -> None:
        seen.append(point)
        if kill_at is not None and len(seen) == kill_at:
            raise Killed(point)

    crash_points.install(hook)
    try:
        with GalleryWriter.open(gallery) as writer:
            if not len(writer.items.staged_ids()) and writer.manifest.generation == 1:
                rows = pool[SMALL : SMALL + added]
                writer.stage_embeddings(rows, [f"k/{n}" for n in range(added)], ["k"] * added)
            writer.publish(index_type=index_type, removed=removed)
    finally:
        crash_points.install(None)
    return seen


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_killed_at_every_step(tmp_path: Path, change: str) -> None:
    """Killed at each durable step of a merge or an update: the last generation stays readable,
    the next run finishes, and no debris is left."""
    pool = clustered_vectors(SMALL * 2, SMALL_DIM, clusters=30, seed=5)
    base = _small_gallery(tmp_path / "base", pool[:SMALL])
    points = _publish_killed_at(_copy(base, tmp_path / "probe"), pool, change, None)
    expected = {
        "merge": {"ondisk-trained", "ondisk-parts-filled", "ondisk-merged", "published"},
        "update": {"ondisk-part-written", "published"},
    }[change]
    assert expected <= set(points), points
    index_type, added, removed = CHANGES[change]
    for kill_at in range(1, len(points) + 1):  # every durable step, the last included
        gallery = _copy(base, tmp_path / f"kill{kill_at}")
        with pytest.raises(Killed):
            _publish_killed_at(gallery, pool, change, kill_at)
        if points[kill_at - 1] != "published":  # killed before the manifest: the old generation
            with Gallery.open(gallery) as opened:
                assert opened.generation == 1 and len(opened) == SMALL
        _publish_killed_at(gallery, pool, change, None)  # the next run finishes
        with Gallery.open(gallery) as opened:
            assert len(opened) == SMALL + added - len(removed)
            assert opened.manifest.index_type == (index_type or "ondisk:IVF16,Flat")
            assert not set(opened.nearest(pool[:3], 10)[1].ravel().tolist()) & set(removed)
        names = {p.name for p in gallery.iterdir()}
        assert not [n for n in names if n.endswith(".tmp")], names
        assert len([n for n in names if n.endswith(".ivfdata")]) == 1
        assert verify_gallery(gallery, check_files=False).ok


# ------------------------------------------------------------------ through the CLI
def test_cli_build_query_add_remove_verify(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    """`--index ondisk:…` end to end in real processes: --json output stays parseable (FAISS
    prints to C stdout when it reads on-disk lists; that is silenced)."""
    gallery = tmp_path / "g"

    def run(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "siamese.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    built = run(
        "index", "build", unseen_dataset, "-m", tiny_model_path, "-o", gallery,
        "--index", "ondisk:IVF4,Flat", "--json",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["index_type"] == "ondisk:IVF4,Flat"
    probe = next((unseen_dataset / "id_001").iterdir())
    found = run("query", probe, "--gallery", gallery, "--json", "-k", "1")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["identities"][0]["distance"] < 1e-3
    removed = run("index", "remove", gallery, "--identity", "id_001", "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == 6
    found = run("query", probe, "--gallery", gallery, "--json", "-k", "3")
    names = [i["identity"] for i in json.loads(found.stdout)["results"][0]["identities"]]
    assert "id_001" not in names
    checked = run("index", "verify", gallery, "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"]


# ------------------------------------------------------------------ parts as Ray tasks
def test_parts_as_ray_tasks_match_local_processes(tmp_path: Path) -> None:
    """Parts handed to a Ray runner (a 2-CPU local cluster) build the same index as local
    processes; without a runner none goes to Ray, even with Ray initialised."""
    ray = pytest.importorskip("ray")
    pool = clustered_vectors(20_000, SMALL_DIM, clusters=30, seed=21)
    previous, ondisk.PART_ITEMS = ondisk.PART_ITEMS, 5_000
    started_here = not ray.is_initialized()
    handed: list[int] = []

    def ray_runner(function, jobs):
        handed.append(len(jobs))
        task = ray.remote(function)
        return ray.get([task.remote(*job) for job in jobs])

    try:
        if started_here:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        local = make_vector_gallery(tmp_path / "local", pool, "ondisk:IVF64,SQ8")
        remote = make_vector_gallery(
            tmp_path / "ray", pool, "ondisk:IVF64,SQ8", part_runner=ray_runner
        )
    finally:
        ondisk.PART_ITEMS = previous
        if started_here and ray.is_initialized():
            ray.shutdown()
    assert handed == [4]  # the remote build's four parts, and nothing of the local one
    sums = []
    for gallery in (local, remote):
        manifest = json.loads((gallery / "manifest.json").read_text())
        sums.append([part["sha256"] for part in manifest["parts"][0]["merged_from"]])
        assert len(sums[-1]) == 4
    assert sums[0] == sums[1]  # the same parts, byte for byte
    with Gallery.open(local) as first, Gallery.open(remote) as second:
        assert np.array_equal(first.nearest(pool[:100], 10)[1], second.nearest(pool[:100], 10)[1])


# ------------------------------------------------------------------ through the service
def test_service_serves_an_ondisk_gallery_unchanged(
    gallery_dir: Path, tiny_dataset: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    """The session gallery rebuilt as an on-disk index: query, add, remove over HTTP."""
    from fastapi.testclient import TestClient

    from siamese.service import ServiceConfig, ServiceState, create_app

    gallery = _copy(gallery_dir, tmp_path / "gallery")
    with GalleryWriter.open(gallery) as writer:
        writer.publish(index_type="ondisk:IVF4,Flat", search_params={"nprobe": 4})
    config = ServiceConfig(gallery_dir=gallery, device="cpu")
    with TestClient(create_app(ServiceState.open(config)), raise_server_exceptions=False) as client:
        probe = sorted((unseen_dataset / "id_002").iterdir())[1]
        upload = {"file": (probe.name, probe.read_bytes(), "image/png")}
        best = client.post("/v1/query?k=3", files=upload).json()["identities"][0]
        assert best["identity"] == "id_002" and best["distance"] < 1e-3
        newcomer = min((tiny_dataset / "id_005").iterdir())
        files = [("files", (newcomer.name, newcomer.read_bytes(), "image/png"))]
        added = client.post("/v1/items", files=files, data={"identity": "newcomer"}).json()
        assert added["count"] == 25
        upload = {"file": (newcomer.name, newcomer.read_bytes(), "image/png")}
        found = client.post("/v1/query", files=upload).json()
        assert found["identities"][0]["identity"] == "newcomer"
        gone = client.delete("/v1/items", params={"identity": "newcomer"})
        assert gone.status_code == 200 and gone.json()["count"] == 24
        after = client.post("/v1/query", files=upload).json()
        assert after["identities"][0]["identity"] != "newcomer"
    manifest = json.loads((gallery / "manifest.json").read_text())
    assert manifest["index_type"] == "ondisk:IVF4,Flat" and manifest["parts"][0]["role"] == "lists"
    assert verify_gallery(gallery, check_files=False).ok


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(1, 6 * 512 + 300),
    where=st.floats(0.0, 1.0, exclude_max=True),
    mask=st.integers(1, 255),
)
def test_any_changed_byte_is_found_by_a_full_check_and_by_open_where_it_samples(
    size: int, where: float, mask: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte changed anywhere: verify (every chunk) refuses it, naming the file; opening refuses
    it when the file is small or the byte lies in its first or last chunk, and otherwise passes."""
    monkeypatch.setattr(files, "CHUNK_BYTES", 512)
    monkeypatch.setattr(files, "OPEN_FULL_CHECK_BYTES", 1024)
    path = tmp_path / "part.000002.faiss"
    data = bytearray(np.random.default_rng(size).bytes(size))
    path.write_bytes(bytes(data))
    part = files.record(path, files.ROLE_DELTA, 1)
    files.check_part(tmp_path, part, full=True)
    files.check_part(tmp_path, part, full=False)
    offset = int(where * size)
    data[offset] ^= mask
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=r"part\.000002\.faiss: checksum of bytes"):
        files.check_part(tmp_path, part, full=True)
    chunk, last = offset // 512, (size - 1) // 512
    if size <= 1024 or chunk in (0, last):
        with pytest.raises(GalleryError, match=r"part\.000002\.faiss"):
            files.check_part(tmp_path, part, full=False)
    else:
        files.check_part(tmp_path, part, full=False)


@pytest.mark.parametrize("content", ["pickle", "floats", "2-d"])
def test_a_forged_removed_ids_file_is_refused_not_unpickled(tmp_path: Path, content: str) -> None:
    """Even with a manifest re-signed to match, the removed-ids file is read without pickle."""
    pool = clustered_vectors(SMALL, SMALL_DIM, clusters=30, seed=13)
    gallery = _small_gallery(tmp_path / "g", pool)
    with GalleryWriter.open(gallery) as writer:
        writer.publish(removed=[1, 2, 3])
    manifest = Manifest.read(gallery)
    name = next(p["name"] for p in manifest.parts if p["role"] == "removed")
    forged = {
        "pickle": np.array([{"not": "ids"}], dtype=object),
        "floats": np.array([1.0, 2.0]),
        "2-d": np.zeros((2, 2), np.int64),
    }[content]
    with open(gallery / name, "wb") as handle:
        np.save(handle, forged, allow_pickle=True)
    parts = [
        files.record(gallery / name, files.ROLE_REMOVED, 3).to_dict() if p["name"] == name else p
        for p in manifest.parts
    ]
    dataclasses.replace(manifest, parts=parts).write(gallery)
    with pytest.raises(GalleryError, match=f"{name}: "):
        Gallery.open(gallery)
