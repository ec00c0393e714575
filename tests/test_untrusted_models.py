"""Untrusted checkpoints and models.

A planted pickle never runs, external data never leaves the model's folder.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from siamese.cli import app
from siamese.errors import ModelError, RunError


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


def _with_external_data(tiny_model_path: Path, folder: Path) -> Path:
    import onnx

    folder.mkdir()
    model = onnx.load(str(tiny_model_path))
    target = folder / "model.onnx"
    onnx.save_model(
        model,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=256,
    )
    return target


def _point_external_data(model_file: Path, location: str) -> None:
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(model_file))


def test_external_data_beside_the_model_loads(tiny_model_path: Path, tmp_path: Path) -> None:
    from siamese.engine import Embedder

    model = _with_external_data(tiny_model_path, tmp_path / "ok")
    assert (tmp_path / "ok" / "weights.bin").stat().st_size > 1000
    assert Embedder(model).dim == Embedder(tiny_model_path).dim


@pytest.mark.parametrize("escape", ["../secret.bin", "/ABSOLUTE/secret.bin", "symlink"])
def test_external_data_escaping_the_folder_is_refused(
    tiny_model_path: Path, tmp_path: Path, escape: str
) -> None:
    from siamese.engine import Embedder

    model = _with_external_data(tiny_model_path, tmp_path / "m")
    secret = tmp_path / "secret.bin"
    shutil.copy(
        tmp_path / "m" / "weights.bin", secret
    )  # readable bytes: only our check stands in the way
    if escape == "symlink":
        (tmp_path / "m" / "weights.bin").unlink()
        (tmp_path / "m" / "weights.bin").symlink_to(secret)
    else:
        _point_external_data(model, escape.replace("/ABSOLUTE", str(tmp_path)))
    with pytest.raises(ModelError, match="outside the model's folder"):
        Embedder(model)
    result = CliRunner().invoke(app, ["info", str(model)])
    assert result.exit_code == 1 and "outside the model's folder" in result.stderr
