"""A bounded load test through `siamese bench service --quick`.

Concurrent clients on 127.0.0.1, no errors, every answer right.

Timing ratios are not asserted here (the machine is shared); the full suite's JSON records them.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from siamese.cli import app


def test_service_load_quick(tiny_model_path: Path, service_gallery: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "service",
            "--quick",
            "--plot",
            "-O",
            f"model={tiny_model_path}",
            "-O",
            f"gallery={service_gallery}",
            "-O",
            "clients=8",
            "-O",
            "requests=6",
            "--work-dir",
            str(tmp_path / "work"),
            "--results-dir",
            str(tmp_path / "results"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(Path(json.loads(result.stdout)["path"]).read_text())["results"]
    measured = figures["scenarios"]["given"]
    for mode in ("batched", "one_at_a_time"):
        stats = measured["modes"][mode]
        assert (
            stats["requests"] == 8 * 6 and stats["errors"] == 0 and stats["wrong_answers"] == 0
        ), stats
        assert stats["requests_per_s"] == pytest.approx(
            statistics.median(stats["rounds_requests_per_s"]), abs=0.1
        )
        assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert (
        measured["modes"]["one_at_a_time"]["mean_batch"] == 1.0 and measured["gallery_items"] == 24
    )
    # The ratio is batched over one-at-a-time requests/s, round by round (rates rounded to 0.1).
    ratio, modes = measured["throughput_ratio"], measured["modes"]
    rounds = zip(
        modes["batched"]["rounds_requests_per_s"], modes["one_at_a_time"]["rounds_requests_per_s"]
    )
    assert ratio["per_round"] == pytest.approx([b / s for b, s in rounds], rel=0.05)
    assert ratio["median"] == pytest.approx(statistics.median(ratio["per_round"]), abs=0.01)
    assert figures["settings"]["host"] == "127.0.0.1" and figures["table"]
    assert Path(figures["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
