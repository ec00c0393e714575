"""The documented CLI on a Milvus Lite gallery: build, info, query, add, remove, threshold, verify.

A real ONNX model (the untrained tiny tower) embeds real images; the gallery is a
``milvus-lite:`` file, so every command goes through pymilvus and Milvus Lite.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")

from siamese.cli import app


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_on_a_milvus_lite_gallery(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    images = Path(shutil.copytree(unseen_dataset, tmp_path / "images"))
    gallery = f"milvus-lite:{tmp_path / 'g.db'}/faces"
    built = invoke(
        "index", "build", images, "-m", tiny_model_path, "--gallery", gallery,
        "--index", "HNSW16", "--json",
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    report = json.loads(built.stdout)
    assert report["count"] == 24 and report["index_type"] == "HNSW(M=16)"
    assert report["recall"]["queries"] > 0 and "efSearch" in report["search_params"]

    info = json.loads(invoke("index", "info", "--gallery", gallery, "--json").stdout)
    assert info["milvus"]["collection"] == "faces" and info["milvus"]["index_type"] == "HNSW"
    assert info["model_fingerprint"] and len(info["identity_counts"]) == 4

    probe = min((images / min(p.name for p in images.iterdir())).iterdir())
    queried = invoke("query", probe, "--gallery", gallery, "--ef-search", "64", "--json")
    assert queried.exit_code == 0, queried.output
    best = json.loads(queried.stdout)["results"][0]["matches"][0]
    assert best["path"] == str(probe.resolve()) and best["distance"] < 1e-3
    other = "id_003" if probe.parent.name != "id_003" else "id_002"
    where = invoke(
        "query", probe, "--gallery", gallery, "--where", f'identity == "{other}"', "--json"
    )
    assert where.exit_code == 0, where.output
    assert {m["identity"] for m in json.loads(where.stdout)["results"][0]["matches"]} == {other}

    extra = tmp_path / "new" / "visitor"
    extra.mkdir(parents=True)
    shutil.copy(probe, extra / "copy.png")
    added = invoke("index", "add", "--gallery", gallery, extra.parent, "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["count"] == 25
    removed = invoke("index", "remove", "--gallery", gallery, "--identity", "visitor")
    assert removed.exit_code == 0 and "removed 1" in removed.stdout

    assert invoke("index", "threshold", "--gallery", gallery, "0.5").exit_code == 0
    shown = json.loads(invoke("index", "threshold", "--gallery", gallery, "--json").stdout)
    assert shown["threshold"]["distance"] == 0.5

    verified = invoke("index", "verify", "--gallery", gallery, "--json")
    assert verified.exit_code == 0, verified.output
    checked = json.loads(verified.stdout)["checked"]
    assert any("stored vectors = the model's" in line for line in checked)


def test_cli_errors_are_one_line(tiny_model_path: Path, gallery_dir: Path, tmp_path: Path) -> None:
    exported = tmp_path / "exported"
    assert invoke("index", "export", gallery_dir, "--parquet", exported).exit_code == 0
    lite = f"milvus-lite:{tmp_path / 'g.db'}"
    assert (
        invoke("index", "build", exported, "-m", tiny_model_path, "--gallery", lite).exit_code == 0
    )
    for args, fragment in (
        (("index", "build", exported, "-m", tiny_model_path, "--gallery", lite), "already a"),
        (("index", "export", lite, "--parquet", exported), "not an empty folder"),
        (
            (
                "index",
                "export",
                f"milvus-lite:{tmp_path / 'g.db'}/none",
                "--parquet",
                tmp_path / "o",
            ),
            "no such gallery",
        ),
        (("index", "info", "--gallery", f"milvus-lite:{tmp_path / 'none.db'}"), "no such gallery"),
        (("index", "info", "--gallery", "milvus-lite:nodb"), "not a Milvus location"),
        (("index", "info", "--gallery", f"milvus-lite:{tmp_path}/x.db/bad-name"), "collection"),
    ):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], result.stderr
