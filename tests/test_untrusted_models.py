"""Untrusted checkpoints and models.

A planted pickle never runs (external data locations: tests/engine/test_external_data.py).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import RunError


class _Payload:
    """Unpickling this creates a marker file: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_pickle_is_refused_and_never_runs(tiny_run: Path, tmp_path: Path) -> None:
    from siamese.training import load_run

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    payload = pickle.dumps({"weight": _Payload(marker)})
    pickle.loads(payload)  # the payload is live: loading it the unsafe way does create the marker
    assert marker.exists()
    marker.unlink()
    for name in ("tower.safetensors", "last.safetensors"):
        (run / name).write_bytes(payload)
    with pytest.raises(RunError, match="unreadable weights"):
        load_run(run)
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "m.onnx")])
    assert (
        result.exit_code == 1
        and "unreadable weights" in result.stderr
        and "Traceback" not in result.output
    )
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()
