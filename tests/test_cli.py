"""Every CLI command of the README through typer's CliRunner: exit codes, output, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from siamese.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_train_export_index_query_info(
    tiny_dataset: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "runs" / "r1"
    result = invoke(
        "train",
        tiny_dataset,
        "--out",
        run,
        "--epochs",
        "1",
        "--size",
        "32",
        "--steps-per-epoch",
        "2",
        "--widths",
        "8,16",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["best_epoch"] == 1
    assert json.loads((run / "config.json").read_text())["tower"]["options"]["widths"] == [8, 16]

    model = tmp_path / "model.onnx"
    result = invoke("export", run, "--out", model)
    assert result.exit_code == 0, result.output
    assert "parity ok" in result.stdout and model.is_file()

    gallery = tmp_path / "gallery"
    result = invoke("index", "build", unseen_dataset, "--model", model, "--out", gallery)
    assert result.exit_code == 0, result.output
    assert "24 images of 4 identities" in result.stdout

    query = next((unseen_dataset / "id_002").iterdir())
    result = invoke("query", query, "--gallery", gallery, "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    (first,) = payload["results"]
    assert first["query"] == str(query) and first["identities"][0]["identity"] == "id_002"
    assert len(first["matches"]) == 3 and first["matches"][0]["distance"] < 1e-3

    result = invoke(
        "query",
        query,
        unseen_dataset / "id_001",
        "--gallery",
        gallery,
        "--show",
        tmp_path / "show.png",
    )
    assert result.exit_code == 0, result.output
    assert "id_002" in result.stdout and (tmp_path / "show.png").stat().st_size > 1000

    result = invoke("info", model, "--json")
    assert (
        result.exit_code == 0 and json.loads(result.stdout)["embedding_dim"] == 256
    )  # 128 from the head, 128 components
    result = invoke("info", gallery, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["count"] == 24
    result = invoke("info", gallery)
    assert result.exit_code == 0 and re.search(r"\bcount\s+│\s+24\b", result.stdout), result.stdout


def test_query_reports_unreadable_images(
    gallery_dir: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    good = next((unseen_dataset / "id_000").iterdir())
    result = invoke("query", good, bad, "--gallery", gallery_dir, "--json")
    assert result.exit_code == 3
    assert len(json.loads(result.stdout)["results"]) == 1
    assert f"skipped {bad}" in result.stderr
    result = invoke("query", bad, "--gallery", gallery_dir)
    assert result.exit_code == 1 and "none of the query images" in result.stderr


def test_index_build_exit_code_when_files_skipped(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    import shutil

    images = tmp_path / "images"
    shutil.copytree(unseen_dataset, images)
    (images / "id_000" / "corrupt.png").write_bytes(b"\x89PNG broken")
    result = invoke(
        "index", "build", images, "--model", tiny_model_path, "--out", tmp_path / "g", "--json"
    )
    assert result.exit_code == 3
    assert json.loads(result.stdout)["failures"][0]["path"].endswith("corrupt.png")


def test_user_mistakes_are_one_line(
    tmp_path: Path, tiny_model_path: Path, gallery_dir: Path, unseen_dataset: Path
) -> None:
    assert_clean_error(
        invoke("train", tmp_path / "missing", "--out", tmp_path / "r"), "missing: folder not found"
    )
    (tmp_path / "empty").mkdir()
    assert_clean_error(
        invoke("train", tmp_path / "empty", "--out", tmp_path / "r"), "no images found"
    )
    assert_clean_error(
        invoke("train", tmp_path / "empty", "--out", tmp_path / "r", "--widths", "24;48"),
        "--widths",
        "'24;48'",
    )
    assert_clean_error(
        invoke("export", tmp_path / "norun", "--out", tmp_path / "m.onnx"),
        "run directory not found",
    )
    text = tmp_path / "notes.onnx"
    text.write_text("hello")
    assert_clean_error(invoke("info", text), "notes.onnx", "cannot load")
    assert_clean_error(invoke("info", tmp_path / "nothing"), "no such file or folder")
    assert_clean_error(
        invoke("index", "build", unseen_dataset, "--model", text, "--out", tmp_path / "g"),
        "notes.onnx",
    )
    assert_clean_error(
        invoke("query", next(unseen_dataset.rglob("*.png")), "--gallery", tmp_path / "nogallery"),
        "gallery folder not found",
    )


def test_query_when_gallery_model_moved(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    import shutil

    moved = tmp_path / "model.onnx"
    shutil.copy(tiny_model_path, moved)
    assert (
        invoke(
            "index", "build", unseen_dataset, "--model", moved, "--out", tmp_path / "g"
        ).exit_code
        == 0
    )
    moved.rename(tmp_path / "renamed.onnx")
    query = next(unseen_dataset.rglob("*.png"))
    assert_clean_error(
        invoke("query", query, "--gallery", tmp_path / "g"), "no longer there", "--model"
    )
    assert (
        invoke(
            "query", query, "--gallery", tmp_path / "g", "--model", tmp_path / "renamed.onnx"
        ).exit_code
        == 0
    )


def test_model_gallery_mismatch_is_refused(
    tiny_model_path: Path, gallery_dir: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    import onnx

    other = tmp_path / "other.onnx"  # another file, so another fingerprint; no training needed
    model = onnx.load(str(tiny_model_path))
    model.metadata_props.add(key="note", value="another model")
    onnx.save(model, str(other))
    query = next(unseen_dataset.rglob("*.png"))
    assert_clean_error(
        invoke("query", query, "--gallery", gallery_dir, "--model", other),
        "built with model",
        "other.onnx",
    )


@pytest.mark.skipif(
    __import__("siamese.engine.providers", fromlist=["x"]).gpu_present(),
    reason="needs a machine without GPU",
)
def test_insisting_on_cuda_without_gpu(gallery_dir: Path, unseen_dataset: Path) -> None:
    query = next(unseen_dataset.rglob("*.png"))
    assert_clean_error(
        invoke("query", query, "--gallery", gallery_dir, "--device", "cuda"),
        "--device cuda cannot run here",
    )


def test_version_and_help() -> None:
    from siamese import __version__

    assert invoke("--version").stdout == f"siamese {__version__}\n"
    result = invoke("--help")
    for command in ("train", "export", "index", "query", "info", "demo"):
        assert command in result.stdout
