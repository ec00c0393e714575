"""ONNX external-data locations as a class: odd ones are one ModelError line, never a traceback.

A location may be absolute, climb with ``..``, hold a NUL byte, be longer than any file name,
or pass through symbolic links (to a folder outside, to itself, in a loop, dangling). The
containment check must resolve links on both the model's folder and the target, refuse with one
line naming the model, and let a location that really stays inside load cleanly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import ModelError
from siamese.engine.model_safety import check_external_data


def _save_external(model, target: Path, location: str) -> None:
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # saving as external data moves the weights out of the proto it is given
    onnx.save_model(
        copy,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=256,
    )


def _point(model_file: Path, location: str) -> None:
    """Rewrite every external-data location of ``model_file`` (the side file is left alone)."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(model_file))


def _layout(root: Path, model) -> Path:
    """A model folder with links of every kind beside it; returns the model file."""
    folder, outside = root / "m", root / "outside"
    (folder / "inner" / "deep").mkdir(parents=True)
    outside.mkdir()
    model_file = folder / "model.onnx"
    _save_external(model, model_file, "weights.bin")
    for copy in (folder / "inner" / "w.bin", outside / "weights.bin", outside / "secret.bin"):
        shutil.copy(folder / "weights.bin", copy)
    (folder / "out").symlink_to(outside, target_is_directory=True)  # a linked folder leading out
    (folder / "inner_link").symlink_to(folder / "inner" / "deep", target_is_directory=True)
    (folder / "self").symlink_to(".", target_is_directory=True)
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "dangling").symlink_to(root / "nowhere")
    (folder / "secret_link.bin").symlink_to(outside / "secret.bin")
    return model_file


@pytest.fixture(scope="module")
def tiny_model():
    """A two-node ONNX graph whose 64×64 weight is big enough to be stored as external data."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _one_line_refusal(exc: ModelError, model_file: Path) -> None:
    message = str(exc)
    assert "\n" not in message and message.startswith(f"{model_file}: refused:"), message
    assert "outside the model's folder" in message


def _really_inside(folder: Path, location: str) -> bool:
    real = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(folder, location))
    return os.path.commonpath([real, target]) == real and target != real


# ------------------------------------------------------------------ end to end with the real model
_REFUSED = {
    "nul": "weights\0.bin",
    "nul_only": "\0",
    "linked_folder": "out/weights.bin",
    "linked_file": "secret_link.bin",
    "climb_after_inner_link": "inner_link/../../weights.bin",  # lexically inside, really not
    "climb": "../outside/secret.bin",
    "absolute": "/ABS/outside/secret.bin",
    "loop": "loop/weights.bin",
    "long": "x" * 5000,
    "dot": ".",
}


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_odd_location_is_one_line_refusal(tiny_model_path: Path, tmp_path: Path, case: str) -> None:
    import onnx

    from siamese.engine import Embedder

    model_file = _layout(tmp_path, onnx.load(str(tiny_model_path)))
    _point(model_file, _REFUSED[case].replace("/ABS", str(tmp_path)))
    with pytest.raises(ModelError) as caught:
        Embedder(model_file)
    _one_line_refusal(caught.value, model_file)
    result = CliRunner().invoke(app, ["info", str(model_file)])
    assert result.exit_code == 1, result.output
    assert "outside the model's folder" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("location", ["weights.bin", "inner/w.bin", "self/weights.bin"])
def test_location_really_inside_loads(tiny_model_path: Path, tmp_path: Path, location: str) -> None:
    import onnx

    from siamese.engine import Embedder

    model_file = _layout(tmp_path, onnx.load(str(tiny_model_path)))
    _point(model_file, location)
    assert Embedder(model_file).dim == Embedder(tiny_model_path).dim


# ------------------------------------------------------------- the class, by property-based test
_SEGMENTS = st.sampled_from(
    [
        "weights.bin",
        "w.bin",
        "secret.bin",
        "secret_link.bin",
        "inner",
        "inner_link",
        "deep",
        "out",
        "self",
        "loop",
        "dangling",
        "..",
        ".",
        "",
        "x" * 300,
        "\0",
        "a\0b",
        "C:",
        "\\..\\",
    ]
)
_LOCATIONS = st.one_of(
    st.lists(_SEGMENTS, min_size=1, max_size=6).map("/".join),
    st.lists(_SEGMENTS, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from("./\\\0x"), max_size=30),
    st.integers(1, 9000).map(lambda n: "y" * n),
)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(location=_LOCATIONS)
def test_any_location_is_refused_in_one_line_or_stays_inside(
    tiny_model, tmp_path_factory: pytest.TempPathFactory, location: str
) -> None:
    root = tmp_path_factory.mktemp("ext")
    model_file = _layout(root, tiny_model)
    _point(model_file, location)
    try:
        check_external_data(model_file)
    except ModelError as exc:
        _one_line_refusal(exc, model_file)
    else:  # accepted: it must lie inside the folder, links resolved, and load cleanly
        assert _really_inside(model_file.parent, location), location
        assert ".." not in location.replace("\\", "/").split("/")
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - only a missing side file may stop the load
            assert not os.path.isfile(os.path.join(model_file.parent, location)), exc
        else:
            out = session.run(None, {"x": np.ones((1, 64), np.float32)})[0]
            assert out.shape == (1, 64)
