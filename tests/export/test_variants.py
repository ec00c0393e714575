"""fp16 and int8 variants: loadable on the CPU, metadata kept.

Checked against fp32 before publishing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import ConfigError, ParityError
from siamese.data.image_folder import scan_image_folder
from siamese.engine import Embedder
from siamese.export import export_onnx
from siamese.export.variants import leave_one_out_top1


@pytest.fixture(scope="module")
def variants(
    trained_run: Path, unseen_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("variants")
    return {
        precision: export_onnx(
            trained_run,
            folder / f"{precision}.onnx",
            precision=precision,
            calibration=unseen_dataset,
        ).path
        for precision in ("fp16", "int8")
    }


@pytest.mark.parametrize(("precision", "min_cosine"), [("fp16", 0.999), ("int8", 0.98)])
def test_variant_runs_on_cpu_close_to_fp32(
    variants: dict[str, Path],
    model_path: Path,
    unseen_dataset: Path,
    precision: str,
    min_cosine: float,
) -> None:
    paths = [item.path for item in scan_image_folder(unseen_dataset)]
    reference = Embedder(model_path, device="cpu").embed_paths(paths).embeddings
    variant = Embedder(variants[precision], device="cpu")
    assert variant.info.precision == precision
    embedded = variant.embed_paths(paths).embeddings
    cosines = (reference * embedded).sum(1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(embedded, axis=1)
    )
    assert embedded.dtype == np.float32 and cosines.min() > min_cosine


def test_variants_keep_the_siamese_metadata(variants: dict[str, Path], model_path: Path) -> None:
    base = {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}
    for precision, path in variants.items():
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert props["siamese.precision"] == precision
        assert {k: v for k, v in props.items() if k != "siamese.precision"} == {
            k: v for k, v in base.items() if k != "siamese.precision"
        }


def test_variants_keep_the_uint8_input(variants: dict[str, Path], unseen_dataset: Path) -> None:
    """fp16 conversion keeps the input; int8 was calibrated by feeding it uint8 batches."""
    paths = [item.path for item in scan_image_folder(unseen_dataset)][:4]
    for path in variants.values():
        (images,) = onnx.load(str(path)).graph.input
        assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        embedder = Embedder(path)
        assert embedder.session.get_inputs()[0].type == "tensor(uint8)"
        assert embedder.embed_paths(paths).embeddings.shape == (4, 16)


def test_int8_needs_calibration_and_precision_is_validated(
    trained_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"\(calibration GALLERY_DIR\)"):
        export_onnx(trained_run, tmp_path / "m.onnx", precision="int8")
    with pytest.raises(ConfigError, match="unknown precision"):
        export_onnx(trained_run, tmp_path / "m.onnx", precision="fp8")
    assert list(tmp_path.iterdir()) == []


def test_a_drifting_variant_is_not_written(
    trained_run: Path, unseen_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("siamese.export.variants.INT8_MIN_MEAN_COSINE", 1.01)
    with pytest.raises(ParityError, match="int8 variant drifts"):
        export_onnx(trained_run, tmp_path / "m.onnx", precision="int8", calibration=unseen_dataset)
    assert list(tmp_path.iterdir()) == []


def test_leave_one_out_top1() -> None:
    points = np.array([[0, 0], [0, 0.1], [5, 5], [5, 5.1], [9, 9]], dtype=np.float32)
    assert leave_one_out_top1(points, ["a", "a", "b", "b", "c"]) == 1.0
    assert leave_one_out_top1(points, ["a", "b", "a", "b", "c"]) == 0.0
    assert leave_one_out_top1(points[:1], ["a"]) is None


def test_cli_export_precision(trained_run: Path, unseen_dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "export",
            str(trained_run),
            "--out",
            str(tmp_path / "q.onnx"),
            "--precision",
            "int8",
            "--calibration",
            str(unseen_dataset),
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (
        report["precision"] == "int8"
        and report["variant"]["passed"]
        and report["variant"]["top1_fp32"] is not None
    )
    missing = runner.invoke(
        app, ["export", str(trained_run), "--out", str(tmp_path / "x.onnx"), "--precision", "int8"]
    )
    assert (
        missing.exit_code == 1
        and "--calibration" in missing.stderr
        and "Traceback" not in missing.output
    )
