"""Parquet export and building back: plain columns other tools read, the same searches after."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import DataError, GalleryError, ModelMismatchError
from siamese.index import Gallery, GalleryWriter
from siamese.index.exchange import build_from_export, export_gallery, read_export
from siamese.index.published import GalleryReader
from siamese.index.updates.writer import RecallPolicy

from .conftest import clustered_vectors

DIM = 8


@dataclass(frozen=True)
class StandIn:
    """The model identity a build needs (no model runs: the export's vectors are used)."""

    fingerprint: str = "0" * 64
    dim: int = DIM
    model_path: Path = Path("none.onnx")


def _vector_gallery(folder: Path, vectors: np.ndarray, index_type: str, params=None) -> Path:
    count = len(vectors)
    with GalleryWriter.create(
        folder,
        dimension=vectors.shape[1],
        model_fingerprint="0" * 64,
        model_path="none.onnx",
        index_type=index_type,
        search_params=params,
    ) as writer:
        writer.stage_embeddings(
            vectors,
            [f"photos/{n}.jpg" for n in range(count)],
            [f"acme-{n % 7}" if n % 3 else f"beta-{n % 5}" for n in range(count)],
            [hashlib.sha256(str(n).encode()).hexdigest() for n in range(count)],
        )
        writer.publish(search_params=params, recall=RecallPolicy(measure=False))
        writer.publish(removed=[2, 9], recall=RecallPolicy(measure=False))  # ids keep their gaps
    return folder


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


# ------------------------------------------------------------------------------ every index type
@pytest.mark.parametrize(
    ("index_type", "params"),
    [
        ("Flat", None),
        ("HNSW16", {"efSearch": 64}),
        ("IVF4,PQ4", {"nprobe": 2}),  # compressed: the export still carries the exact vectors
        ("ondisk:IVF4,Flat", {"nprobe": 4}),
    ],
)
def test_export_and_build_back_search_the_same(
    tmp_path: Path, index_type: str, params: dict | None
) -> None:
    vectors = clustered_vectors(300, DIM, clusters=10, seed=3)
    source = _vector_gallery(tmp_path / "source", vectors, index_type, params)
    Gallery.set_threshold(source, 1.25, source="test")
    report = export_gallery(source, tmp_path / "export", rows_per_file=128)
    assert report.count == 298 and report.files == [f"part-0000{n}.parquet" for n in range(3)]
    rebuilt = build_from_export(tmp_path / "export", StandIn(), tmp_path / "rebuilt")
    assert rebuilt.count == 298 and rebuilt.index_type == index_type
    queries = vectors[:20] + 0.05
    with GalleryReader.open(source) as before, GalleryReader.open(tmp_path / "rebuilt") as after:
        assert after.search_params == before.search_params
        assert after.threshold == before.threshold == 1.25
        assert after.all_items() == before.all_items()  # ids, paths, identities, hashes
        assert np.array_equal(
            after.items.vectors(after.items.ids(), DIM), vectors[after.items.ids() - 1]
        )
        if index_type in ("Flat", "ondisk:IVF4,Flat"):  # deterministic: the same answers exactly
            assert [r.to_dict() for r in after.search(queries, 5)] == [
                r.to_dict() for r in before.search(queries, 5)
            ]
            filtered = after.search(queries, 3, where='identity like "beta-%"')
            assert filtered == before.search(queries, 3, where='identity like "beta-%"')


def test_another_tool_reads_plain_columns(tmp_path: Path) -> None:
    vectors = clustered_vectors(40, DIM, seed=1)
    source = _vector_gallery(tmp_path / "source", vectors, "Flat")
    export_gallery(source, tmp_path / "export", rows_per_file=16)
    table = pq.read_table(tmp_path / "export")  # the folder as one dataset, as any Arrow tool
    assert table.column_names == ["id", "identity", "path", "sha256", "vector"]
    assert table.schema.field("vector").type == pa.list_(pa.float32(), DIM)
    assert table.schema.field("id").type == pa.int64()
    frame = table.to_pandas().sort_values("id")
    assert len(frame) == 38 and 2 not in set(frame["id"]) and 9 not in set(frame["id"])
    stacked = np.stack(frame["vector"].to_list())
    assert np.array_equal(stacked, vectors[frame["id"].to_numpy() - 1])
    one = pq.read_table(tmp_path / "export" / "part-00001.parquet")
    meta = {k.decode(): v.decode() for k, v in one.schema.metadata.items()}
    assert meta["siamese.model_fingerprint"] == "0" * 64
    assert meta["siamese.model_name"] == "none.onnx"
    assert meta["siamese.dimension"] == str(DIM)
    assert meta["siamese.embedding_kind"] == "image"
    assert meta["siamese.count"] == "38" and meta["siamese.files"] == "3"
    assert meta["siamese.part"] == "1" and len(one) == 16


def test_export_a_filtered_subset(tmp_path: Path) -> None:
    source = _vector_gallery(tmp_path / "source", clustered_vectors(60, DIM), "Flat")
    report = export_gallery(source, tmp_path / "export", where='identity in ["beta-0", "beta-1"]')
    table = pq.read_table(tmp_path / "export")
    assert set(table.column("identity").to_pylist()) == {"beta-0", "beta-1"}
    assert report.count == len(table) and report.where == 'identity in ["beta-0", "beta-1"]'
    assert read_export(tmp_path / "export").metadata["where"] == report.where


# ------------------------------------------------------------------------------ refusals
def test_another_models_export_is_refused_naming_both(tmp_path: Path) -> None:
    source = _vector_gallery(tmp_path / "source", clustered_vectors(30, DIM), "Flat")
    export_gallery(source, tmp_path / "export")
    with pytest.raises(ModelMismatchError) as caught:
        build_from_export(tmp_path / "export", StandIn(fingerprint="f" * 64), tmp_path / "new")
    assert "0" * 16 in str(caught.value) and "f" * 16 in str(caught.value)
    assert not (tmp_path / "new").exists()
    with pytest.raises(GalleryError, match="already a gallery"):
        build_from_export(tmp_path / "export", StandIn(), source)
    with pytest.raises(DataError, match="not an empty folder"):
        export_gallery(source, tmp_path / "export")


def _rewrite(file: Path, table: pa.Table) -> None:
    pq.write_table(table, file)


def test_damaged_exports_are_refused_in_one_line(tmp_path: Path) -> None:
    source = _vector_gallery(tmp_path / "source", clustered_vectors(30, DIM), "Flat")
    export_gallery(source, tmp_path / "export", rows_per_file=10)
    part = tmp_path / "export" / "part-00000.parquet"
    table = pq.read_table(part)
    cases = {
        "column vector should be": table.drop_columns(["vector"]),
        "appears more than once": table.set_column(
            0, "id", pa.array([table.column("id")[1].as_py()] * len(table), pa.int64())
        ),
        "not a siamese export": table.replace_schema_metadata({}),
    }
    for expected, damaged in cases.items():
        _rewrite(part, damaged)
        with pytest.raises(DataError, match=expected) as caught:
            build_from_export(tmp_path / "export", StandIn(), tmp_path / "new")
        assert "\n" not in str(caught.value)
    _rewrite(part, table)
    (tmp_path / "export" / "part-00002.parquet").unlink()
    with pytest.raises(DataError, match="holds 20 rows, its metadata says 28"):
        read_export(tmp_path / "export")


def test_without_pyarrow_one_line_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _vector_gallery(tmp_path / "source", clustered_vectors(20, DIM), "Flat")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"need pyarrow; install it with .*\[ray\]"):
        export_gallery(source, tmp_path / "export")


# ------------------------------------------------------------------------------ the command line
def test_cli_export_then_build_back(
    gallery_dir: Path, tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    exported = invoke(
        "index", "export", gallery_dir, "--parquet", tmp_path / "export", "--rows-per-file", 7
    )
    assert exported.exit_code == 0, exported.output
    assert "exported 24 items" in exported.stdout and "4 Parquet files" in exported.stdout
    built = invoke(
        "index", "build", tmp_path / "export", "--model", tiny_model_path,
        "--gallery", tmp_path / "rebuilt", "--json",
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["count"] == 24 and json.loads(built.stdout)["embedded"] == 0
    query = sorted((unseen_dataset / "id_001").iterdir())[2]
    answers = [
        json.loads(invoke("query", query, "--gallery", g, "--json", "-k", 4).stdout)["results"]
        for g in (gallery_dir, tmp_path / "rebuilt")
    ]
    assert answers[0] == answers[1] and answers[0][0]["answer"] == "id_001"


def test_cli_refuses_an_export_of_another_model(
    gallery_dir: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    import onnx

    other = onnx.load(str(tiny_model_path))
    onnx.helper.set_model_props(
        other, {**{p.key: p.value for p in other.metadata_props}, "note": "another file"}
    )
    onnx.save(other, str(tmp_path / "other.onnx"))
    assert invoke("index", "export", gallery_dir, "--parquet", tmp_path / "export").exit_code == 0
    refused = invoke(
        "index", "build", tmp_path / "export", "--model", tmp_path / "other.onnx",
        "--gallery", tmp_path / "rebuilt",
    )  # fmt: skip
    from siamese.core.files import sha256_file

    line = one_line_error(
        refused,
        "exported from model",
        sha256_file(tiny_model_path)[:16],
        sha256_file(tmp_path / "other.onnx")[:16],
    )
    assert "other.onnx" in line
    busy = invoke("index", "export", gallery_dir, "--parquet", tmp_path / "export")
    one_line_error(busy, "not an empty folder", "--parquet")
