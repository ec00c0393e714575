"""The speed suite runs in --quick mode and writes a self-explanatory JSON record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _harness import benchmarks_dir
from typer.testing import CliRunner

from siamese.cli import app


def test_speed_suite_quick(tiny_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "speed",
            "--quick",
            "--plot",
            "-O",
            f"run={tiny_run}",
            "-O",
            "gallery=300",
            "--work-dir",
            str(tmp_path / "work"),
            "--results-dir",
            str(tmp_path / "results"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    saved = json.loads(Path(record["path"]).read_text())
    figures = saved["results"]
    assert set(figures["targets"]) == {
        "onnxruntime_vs_pytorch_eager",
        "end_to_end_vs_peer_640x480",
        "end_to_end_fraction_of_limit_640x480",
        "single_query_p50_ms",
    }
    assert all(
        {"value", "threshold", "met", "definition"} <= set(t) for t in figures["targets"].values()
    )
    sweep = figures["inference_by_batch_size"]
    assert {"pytorch-eager-cpu", "onnxruntime-cpu-fp32", "onnxruntime-cpu-int8"} <= set(sweep)
    assert {"images_per_s", "p50_ms", "p95_ms", "p99_ms"} <= set(sweep["onnxruntime-cpu-fp32"]["8"])
    photos = figures["pipelines"]["photos_640x480"]
    assert {"decode_preprocess", "inference_fp32", "end_to_end_fp32", "peer_dataloader"} <= set(
        photos["images_per_s"]
    )
    # The combined limit, 1 / (1/decode + 1/inference) per round, lies below both rates.
    rates = photos["images_per_s"]
    assert (
        0 < photos["combined_limit_fp32"] < min(rates["decode_preprocess"], rates["inference_fp32"])
    )
    assert figures["single_query"]["gallery_items"] == 300
    ident = figures["identification"]
    for precision in ("fp32", "int8"):  # top-1 is a share of the queries, its change a difference
        hits = ident[precision]["top1"] * ident["queries"]
        assert hits == pytest.approx(round(hits), abs=1e-2) and 0 <= round(hits) <= ident["queries"]
        assert ident[precision]["top1_change_vs_fp32"] == pytest.approx(
            ident[precision]["top1"] - ident["fp32"]["top1"], abs=1e-4
        )
    assert ident["fp32"]["cosine_to_fp32_min"] == pytest.approx(1.0, abs=1e-5)
    assert "about" in figures and figures["table"]
    assert Path(figures["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert saved["machine"]["cores"] == os.cpu_count() and saved["settings"]["quick"] is True


def test_speed_suite_trains_its_own_tower(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without -O run=..., the suite trains the default tower briefly.

    Its run must be a loadable run.
    """
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    from _speed_setup import SpeedConfig, _train

    from siamese.training.run_dir import load_run

    run_dir = _train(tmp_path, SpeedConfig.quick(), tiny_dataset, 32)
    assert (
        load_run(run_dir).tower.embedding_dim == 256
    )  # the default recipe serves head and components
    assert (
        _train(tmp_path, SpeedConfig.quick(), tiny_dataset, 32) == run_dir
    )  # reused while the options match
    marker = run_dir / ".stamp.json"
    stamp = json.loads(marker.read_text())
    stamp["recipe"]["widths"] = [24, 48, 96, 192]  # as if trained before the default recipe changed
    marker.write_text(json.dumps(stamp))
    before = (run_dir / "tower.safetensors").stat().st_mtime_ns
    _train(tmp_path, SpeedConfig.quick(), tiny_dataset, 32)
    assert (run_dir / "tower.safetensors").stat().st_mtime_ns != before and json.loads(
        marker.read_text()
    )["recipe"]["widths"] == [16, 32, 64, 128]


def test_the_query_gallery_follows_the_model(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached gallery of another model is rebuilt, not refused.

    A gallery never takes a second model.
    """
    import onnx

    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    from _speed_query import build_gallery

    from siamese.engine import Embedder
    from siamese.index.store.manifest import Manifest

    other = tmp_path / "other.onnx"
    model = onnx.load(tiny_model_path)
    model.metadata_props.add(key="note", value="another model")
    onnx.save(model, other)
    first, second = Embedder(tiny_model_path), Embedder(other)
    real = sorted(unseen_dataset.rglob("*.png"))[:4]
    gallery = build_gallery(tmp_path, first, real, real[0], 30)
    assert Manifest.read(gallery).model_fingerprint == first.fingerprint != second.fingerprint
    assert build_gallery(tmp_path, second, real, real[0], 30) == gallery
    assert (
        Manifest.read(gallery).model_fingerprint == second.fingerprint
        and Manifest.read(gallery).count == 30
    )
