"""Which execution provider runs, and why the better ones did not: `siamese info --providers`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from siamese.cli import app
from siamese.engine import providers
from siamese.engine.providers import NO_DRIVER, create_session, gpu_present, runtime_report


def test_the_runtime_report_names_one_build_and_its_providers() -> None:
    report = runtime_report()
    assert len(report["distributions"]) == 1  # exactly one onnxruntime build installed
    assert report["onnxruntime"] in report["distributions"].values()
    assert "CPUExecutionProvider" in report["available_providers"]
    assert report["devices"]["cpu"].startswith("in this build; tried")
    assert set(report["devices"]) == {"tensorrt", "cuda", "cpu"}


def test_auto_records_why_each_gpu_provider_was_passed_over(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a driver "visible", each GPU provider is really tried; here none can start."""
    if gpu_present():
        pytest.skip("a real GPU may run; this checks the fallback on a machine without one")
    monkeypatch.setattr(providers, "gpu_present", lambda: True)
    passed_over: dict[str, str] = {}
    session, device = create_session(str(tiny_model_path), "auto", passed_over=passed_over)
    assert device == "cpu" and session.get_providers() == ["CPUExecutionProvider"]
    assert set(passed_over) == {"tensorrt", "cuda"}
    for name, reason in passed_over.items():
        assert providers.PROVIDERS[name] in reason, reason  # not in the build, or failed to start


@pytest.mark.skipif(gpu_present(), reason="the answer differs where a GPU runs")
def test_info_says_which_provider_the_model_runs_on(tiny_model_path: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(tiny_model_path), "--providers", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["runs_on"] == "cpu" and facts["device_asked"] == "auto"
    assert facts["session_providers"] == ["CPUExecutionProvider"]
    assert facts["passed_over"] == {"tensorrt": NO_DRIVER, "cuda": NO_DRIVER}
    table = CliRunner().invoke(app, ["info", str(tiny_model_path), "--providers"])
    assert table.exit_code == 0 and "runs_on" in table.stdout and "passed over cuda" in table.stdout


def test_info_providers_without_a_model_and_with_a_folder(tmp_path: Path) -> None:
    alone = CliRunner().invoke(app, ["info", "--providers", "--json"])
    assert alone.exit_code == 0 and "runs_on" not in json.loads(alone.stdout)
    folder = CliRunner().invoke(app, ["info", str(tmp_path), "--providers"])
    assert folder.exit_code == 1 and "--providers takes a model.onnx" in folder.stderr
    nothing = CliRunner().invoke(app, ["info"])
    assert nothing.exit_code == 2
