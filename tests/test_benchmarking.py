"""The benchmark runner: suite discovery, options, JSON records, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _harness import latency_stats, time_calls
from typer.testing import CliRunner

from siamese.cli import app


@pytest.fixture()
def suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "echo.py").write_text(
        "OPTIONS = ('n',)\n"
        "def run(settings):\n"
        "    return {'quick': settings.quick, 'n': settings.option('n', 3, int)}\n"
    )
    (folder / "broken.py").write_text("x = 1\n")
    monkeypatch.setenv("SIAMESE_BENCHMARKS", str(folder))
    return folder


def test_bench_runs_a_suite_and_records_json(suites: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "echo", "--quick", "-O", "n=7", "--work-dir", str(tmp_path / "w"), "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["results"] == {"quick": True, "n": 7}
    assert record["machine"]["cores"] == os.cpu_count() and "numpy" in record["machine"]["versions"]
    saved = json.loads(Path(record["path"]).read_text())
    assert Path(record["path"]).parent == suites / "results" and saved["suite"] == "echo"


def test_bench_errors(suites: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["bench", "nope"])
    # broken.py defines no run(): a module beside the suites, not offered as one
    assert missing.exit_code == 1 and "available: echo)" in missing.stderr
    assert "run(settings)" in runner.invoke(app, ["bench", "broken"]).stderr
    assert "KEY=VALUE" in runner.invoke(app, ["bench", "echo", "-O", "novalue"]).stderr
    assert runner.invoke(app, ["bench", "list"]).stdout.split() == ["echo"]
    misspelt = runner.invoke(app, ["bench", "echo", "-O", "m=3"])
    assert misspelt.exit_code == 1
    assert "bench echo: unknown option(s) m; it reads n" in misspelt.stderr


def test_every_suite_declares_the_options_it_reads() -> None:
    """Each -O key a suite reads is declared, so a misspelt key fails instead of doing nothing."""
    import re

    from _harness import available_suites, benchmarks_dir, load_suite

    for name in available_suites():
        module = load_suite(name)
        source = (benchmarks_dir() / f"{name}.py").read_text()
        read = set(re.findall(r"settings\.option\(\s*\"(\w+)\"", source))
        assert read <= set(module.OPTIONS), (name, read - set(module.OPTIONS))


def test_latency_stats() -> None:
    stats = latency_stats([0.001] * 98 + [0.010, 0.020])
    assert stats["p50_ms"] == 1.0 and stats["calls"] == 100 and stats["p99_ms"] > 9.0
    assert len(time_calls(lambda: None, repeat=5)) == 5


def test_bench_outside_a_checkout_says_where_suites_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Benchmarks are not installed: away from a checkout the command says so in one line."""
    monkeypatch.delenv("SIAMESE_BENCHMARKS", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["bench", "list"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        (
            "error: siamese bench runs the suites of a source checkout: run it inside the "
            "repository, or set SIAMESE_BENCHMARKS to its benchmarks/ folder"
        )
    ]
