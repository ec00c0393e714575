"""Parquet exports of Milvus galleries, and Milvus galleries built from exports (Milvus Lite).

A folder gallery goes out to Parquet, into a Milvus Lite gallery and out again with the same rows
and vectors; a Milvus export builds back into a folder gallery that answers the same searches.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")

from siamese.cli import app
from siamese.core.errors import DataError, GalleryError, ModelMismatchError
from siamese.index import Gallery, GalleryWriter
from siamese.index.exchange import build_from_export, export_gallery, read_export
from siamese.index.location import parse_location
from siamese.index.milvus.store import MilvusStore
from siamese.index.store import crash_points
from siamese.index.updates.writer import RecallPolicy

from .conftest import clustered_vectors

DIM = 8
MODEL = "0" * 64


@dataclass(frozen=True)
class StandIn:
    """The model identity a build from an export needs (nothing is embedded)."""

    fingerprint: str = MODEL
    dim: int = DIM
    model_path: Path = Path("none.onnx")
    pair: None = None


def _folder_gallery(folder: Path, vectors: np.ndarray) -> Path:
    count = len(vectors)
    with GalleryWriter.create(
        folder, dimension=DIM, model_fingerprint=MODEL, model_path="none.onnx", index_type="Flat"
    ) as writer:
        writer.stage_embeddings(
            vectors,
            [f"photos/{n}.jpg" for n in range(count)],
            [f"acme-{n % 7}" if n % 3 else f"beta-{n % 5}" for n in range(count)],
            [hashlib.sha256(str(n).encode()).hexdigest() for n in range(count)],
        )
        writer.publish(recall=RecallPolicy(measure=False))
        writer.publish(removed=[2, 9], recall=RecallPolicy(measure=False))  # ids with gaps
    Gallery.set_threshold(folder, 1.25, source="test")
    return folder


def _rows(export: Path) -> tuple[list[tuple], np.ndarray]:
    """An export's (id, identity, path, sha256) rows and vectors, in id order."""
    table = pq.read_table(export).sort_by("id")
    columns = [table.column(c).to_pylist() for c in ("id", "identity", "path", "sha256")]
    return list(zip(*columns)), np.stack(table.column("vector").to_pylist()).astype(np.float32)


def test_folder_to_milvus_and_out_again_keeps_rows_and_vectors(tmp_path: Path) -> None:
    vectors = clustered_vectors(300, DIM, clusters=10, seed=4)
    source = _folder_gallery(tmp_path / "source", vectors)
    export_gallery(source, tmp_path / "first")
    lite = f"milvus-lite:{tmp_path / 'g.db'}/faces"
    built = build_from_export(tmp_path / "first", StandIn(), lite)
    assert built.count == 298 and built.generation == 1 and built.index_type == "FLAT"
    # Pages of the query iterator (2000) cut across files of 128 rows: the same rows either way.
    report = export_gallery(lite, tmp_path / "second", rows_per_file=128)
    assert report.count == 298 and len(report.files) == 3
    assert _rows(tmp_path / "first")[0] == _rows(tmp_path / "second")[0]
    assert np.array_equal(_rows(tmp_path / "first")[1], _rows(tmp_path / "second")[1])
    meta = read_export(tmp_path / "second").metadata
    assert meta["model_fingerprint"] == MODEL and meta["dimension"] == str(DIM)
    assert meta["backend"] == "milvus" and meta["index_type"] == "Flat"
    assert json.loads(meta["threshold"])["distance"] == 1.25
    assert meta["embedding_kind"] == "image" and meta["model_name"] == "none.onnx"
    verified = Gallery.verify(lite, check_files=False)  # kept ids are not path hashes: accepted
    assert verified.ok, verified.problems
    assert any("ids kept" in line for line in verified.checked)

    subset = export_gallery(lite, tmp_path / "beta", where='identity like "beta-%"')
    table = pq.read_table(tmp_path / "beta")
    assert (
        subset.count == len(table) == sum(1 for r in _rows(tmp_path / "first")[0] if "beta" in r[1])
    )
    assert {i.split("-")[0] for i in table.column("identity").to_pylist()} == {"beta"}
    assert read_export(tmp_path / "beta").metadata["where"] == 'identity like "beta-%"'


def test_milvus_export_builds_a_folder_gallery_answering_the_same(tmp_path: Path) -> None:
    vectors = clustered_vectors(120, DIM, clusters=6, seed=5)
    export_gallery(_folder_gallery(tmp_path / "source", vectors), tmp_path / "first")
    lite = f"milvus-lite:{tmp_path / 'g.db'}"
    build_from_export(tmp_path / "first", StandIn(), lite, index="HNSW16")
    export_gallery(lite, tmp_path / "out")
    assert read_export(tmp_path / "out").metadata["index_type"] == "HNSW16"
    rebuilt = build_from_export(tmp_path / "out", StandIn(), tmp_path / "folder", index="Flat")
    assert rebuilt.count == 118
    queries = vectors[::10] + 0.05
    milvus = Gallery.open(lite, search_params={"efSearch": 256})
    with milvus, Gallery.open(tmp_path / "folder") as folder:
        assert folder.threshold == milvus.threshold == 1.25
        for got, want in zip(folder.search(queries, 5), milvus.search(queries, 5)):
            assert [m.id for m in got.matches] == [m.id for m in want.matches]
            assert got.answer == want.answer
            assert np.allclose(
                [m.distance for m in got.matches], [m.distance for m in want.matches], atol=1e-4
            )


def test_refusals_are_one_line(tmp_path: Path) -> None:
    export_gallery(_folder_gallery(tmp_path / "source", clustered_vectors(30, DIM)), tmp_path / "e")
    lite = f"milvus-lite:{tmp_path / 'g.db'}"
    with pytest.raises(ModelMismatchError) as caught:
        build_from_export(tmp_path / "e", StandIn(fingerprint="f" * 64), lite)
    assert "0" * 16 in str(caught.value) and "f" * 16 in str(caught.value)
    build_from_export(tmp_path / "e", StandIn(), lite)
    with pytest.raises(GalleryError, match="already a gallery"):
        build_from_export(tmp_path / "e", StandIn(), lite)
    with pytest.raises(GalleryError, match="needs a Milvus server"):
        build_from_export(tmp_path / "e", StandIn(), f"{lite}/pq", index="IVF4,PQ4")
    with pytest.raises(DataError, match="not an empty folder"):
        export_gallery(lite, tmp_path / "e")


class KillAt:
    """Raise KeyboardInterrupt the n-th time a crash point is reached (a killed process)."""

    def __init__(self, point: str, n: int) -> None:
        self.point, self.n = point, n

    def __call__(self, name: str) -> None:
        if name == self.point:
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt


def test_killed_import_run_again_finishes_with_no_duplicates(tmp_path: Path) -> None:
    export_gallery(_folder_gallery(tmp_path / "source", clustered_vectors(40, DIM)), tmp_path / "e")
    lite = f"milvus-lite:{tmp_path / 'g.db'}"
    previous = crash_points.install(KillAt("milvus.chunk_upserted", 1))
    try:
        with pytest.raises(KeyboardInterrupt):
            build_from_export(tmp_path / "e", StandIn(), lite)
    finally:
        crash_points.install(previous)
    with pytest.raises(GalleryError, match="did not finish"):  # never a half gallery exported
        export_gallery(lite, tmp_path / "half")
    assert build_from_export(tmp_path / "e", StandIn(), lite).count == 38
    store = MilvusStore(parse_location(lite))  # type: ignore[arg-type]
    ids = [row["id"] for page in store.rows(["id"]) for row in page]
    assert len(ids) == len(set(ids)) == 38


def test_cli_exports_a_milvus_gallery_and_builds_one_from_an_export(
    gallery_dir: Path, tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    def invoke(*args: object):
        return CliRunner().invoke(app, [str(a) for a in args])

    assert invoke("index", "export", gallery_dir, "--parquet", tmp_path / "e").exit_code == 0
    lite = f"milvus-lite:{tmp_path / 'g.db'}"
    built = invoke(
        "index", "build", tmp_path / "e", "-m", tiny_model_path, "--gallery", lite, "--json"
    )
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["count"] == 24 and json.loads(built.stdout)["embedded"] == 0
    out = invoke(
        "index", "export", lite, "--parquet", tmp_path / "out", "--where", 'identity == "id_001"'
    )
    assert out.exit_code == 0, out.output
    assert "where identity ==" in out.stdout
    query = sorted((unseen_dataset / "id_001").iterdir())[2]
    answers = [
        json.loads(invoke("query", query, "--gallery", g, "--json", "-k", 4).stdout)["results"]
        for g in (gallery_dir, lite)
    ]
    assert [m["path"] for m in answers[0][0]["matches"]] == [
        m["path"] for m in answers[1][0]["matches"]
    ]
    assert answers[0][0]["answer"] == answers[1][0]["answer"] == "id_001"
