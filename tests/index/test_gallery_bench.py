"""The gallery benchmark suite runs end to end on a tiny configuration and records every figure."""

from __future__ import annotations

import json
from pathlib import Path

from _harness import BenchSettings, run_suite


def test_gallery_benchmark_quick(tmp_path: Path) -> None:
    options = {
        "sizes": "600",
        "dim": "32",
        "queries": "50",
        "single": "10",
        "pairs": "3",
        "types": "Flat;HNSW32;IVF{n},Flat",
    }
    record, path = run_suite(
        "gallery",
        BenchSettings(quick=True, work_dir=tmp_path / "work", options=options),
        tmp_path / "results",
    )
    rows = record["results"]["rows"]
    assert [row["index_type"] for row in rows] == ["Flat", "HNSW32", "IVF16,Flat"]
    flat, hnsw, ivf = rows
    assert flat["recall_at10"] == 1.0 and flat["build_recall"]["exact"]
    assert hnsw["search_params"].keys() == {"efSearch"} and ivf["search_params"].keys() == {
        "nprobe"
    }
    for row in rows:
        assert (
            row["qps_batched"] > 0
            and row["qps_single"] > 0
            and row["index_mb"] > 0
            and 0 < row["recall_at10"] <= 1
        )
        assert isinstance(row["overhead_batched"], float)
    assert (
        json.loads(path.read_text())["suite"] == "gallery"
        and not (tmp_path / "work" / "gallery-600").exists()
    )
