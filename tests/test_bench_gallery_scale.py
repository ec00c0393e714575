"""The gallery_scale and ondisk_updates suites run small and record what they measure."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from siamese.cli import app


def test_gallery_scale_suite_small(tmp_path: Path) -> None:
    options = ["sizes=3000,6000", "dim=32", "queries=100", "single=20", "batches=2"]
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "gallery_scale",
            "--plot",
            *[arg for option in options for arg in ("-O", option)],
            "--work-dir",
            str(tmp_path / "work"),
            "--results-dir",
            str(tmp_path / "results"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    figures = json.loads(Path(record["path"]).read_text())["results"]
    rows = figures["rows"]
    assert [row["size"] for row in rows] == [3000, 6000]
    for row in rows:
        assert row["index_type"].startswith("ondisk:IVF")
        assert 0.5 <= row["recall_at10"] <= 1.0 and row["build_seconds"] > 0
        assert row["disk"]["lists_mib"] > 0 and row["single"]["calls"] == 20
        assert row["single_one_thread"]["calls"] == 20
        opened = row["opened_fresh_process"]
        assert opened["open_seconds"] > 0 and opened["index_open_rss_mib"] >= 0
        assert opened["row_check_seconds"] > 0 and opened["first_open_seconds"] > 0
    assert set(figures["targets_at_largest"]) >= {"recall_at10", "single_p50_ms", "open_seconds"}
    sweep = rows[-1]["nprobe_sweep"]
    assert [step["nprobe"] for step in sweep][:1] == [1] and sweep[-1]["calls"] == 100
    assert sweep[-1]["one_thread"]["calls"] == 100
    assert sweep[-1]["nprobe"] == rows[-1]["search_params"]["nprobe"]
    assert sweep[-1]["recall_at10"] >= sweep[0]["recall_at10"]  # more lists probed, never worse
    assert Path(figures["plot"]).stat().st_size > 10_000
    assert Path(figures["plot"]) == Path(record["path"]).with_suffix(".png")  # beside the JSON
    assert not (tmp_path / "work" / "gallery-scale-3000").exists()  # deleted after measuring


def test_ondisk_updates_suite_small(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench", "ondisk_updates", "-O", "size=6000", "-O", "nprobe=4",
            "--work-dir", str(tmp_path / "work"), "--results-dir", str(tmp_path / "results"),
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(Path(json.loads(result.stdout)["path"]).read_text())["results"]
    assert figures["parts"] == {
        "merged": ["lists"],
        "with_added_part": ["lists", "delta"],
        "with_added_part_and_removed_ids": ["lists", "delta", "removed"],
        "merged_again": ["lists"],
    }
    assert all(value > 0 for value in figures["single_query_ms"].values())
