"""One normaliser: uint8 pixels into the graph, the spec's constants in it, old float models kept.

A tiny untrained conv tower (fixed seed) is exported twice: the format-2 way (uint8 input, the
normaliser in the graph) and the way siamese exported before format 2 (float32 input, metadata
format 1), so no session fixture has to train anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from siamese.contracts.model_card import INPUT_DTYPES, MODEL_FORMAT_VERSION, ModelInfo
from siamese.contracts.spec import InputSpec, normalization_constants, normalize_pixels
from siamese.core.errors import ModelError
from siamese.data.images import load_pixels, to_tensor
from siamese.engine import Embedder
from siamese.engine.runner import BindingRunner
from siamese.export.onnx_export import module_to_onnx, tower_to_onnx
from siamese.export.parity import check_parity
from siamese.training.pixels import PixelNormalizer
from siamese.training.towers import create_tower

SPEC = InputSpec.create(16, 3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _old_normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The host normalisation siamese used before format 2 (N×H×W×C uint8 → N×C×H×W float32)."""
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    scale = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    out = (pixels.astype(np.float32) - mean) * scale
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _save(model: onnx.ModelProto, info: ModelInfo, path: Path) -> Path:
    onnx.helper.set_model_props(model, info.to_metadata())
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def tower() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_tower("conv", SPEC, {"embedding_dim": 8, "widths": [4, 8]}).eval()


@pytest.fixture(scope="module")
def models(tower: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pixel-models")
    facts = {"tower": {"name": "conv", "options": {}}, "embedding_dim": 8, "normalized": True}
    info = ModelInfo(input_spec=SPEC, **facts)
    old_info = ModelInfo(input_spec=SPEC, format_version=1, **facts)
    uint8_graph = tower_to_onnx(tower, SPEC)
    float_graph = module_to_onnx(tower, torch.zeros((2, *SPEC.shape), dtype=torch.float32))
    return {
        "format2": _save(_copy(uint8_graph), info, folder / "format2.onnx"),
        "format1": _save(_copy(float_graph), old_info, folder / "format1.onnx"),
        # a format-2 label on a float graph, and a format-1 label on a uint8 graph: both damaged
        "mislabelled2": _save(_copy(float_graph), info, folder / "m2.onnx"),
        "mislabelled1": _save(_copy(uint8_graph), old_info, folder / "m1.onnx"),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pixel-photos")
    rng = np.random.default_rng(3)
    paths = []
    for index in range(5):
        path = folder / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (20 + index, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_graph_takes_uint8_and_holds_the_spec_constants(models: dict[str, Path]) -> None:
    model = onnx.load(str(models["format2"]))
    (images,) = model.graph.input
    tensor = images.type.tensor_type
    assert images.name == "images" and tensor.elem_type == onnx.TensorProto.UINT8
    assert tensor.shape.dim[0].dim_param == "N"
    assert [d.dim_value for d in tensor.shape.dim[1:]] == [3, 16, 16]
    consumers = {name: node for node in model.graph.node for name in node.input}
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    cast = consumers["images"]
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT
    sub = consumers[cast.output[0]]
    mul = consumers[sub.output[0]]
    assert (sub.op_type, mul.op_type) == ("Sub", "Mul")
    shift, scale = normalization_constants(SPEC)
    np.testing.assert_array_equal(constants[sub.input[1]].ravel(), shift)  # bit for bit
    np.testing.assert_array_equal(constants[mul.input[1]].ravel(), scale)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["siamese.format_version"] == str(MODEL_FORMAT_VERSION) == "2"
    assert props["siamese.input_dtype"] == "uint8"


def test_parity_feeds_uint8(tower: torch.nn.Module, models: dict[str, Path]) -> None:
    report = check_parity(tower, models["format2"], SPEC, batch_sizes=(1, 4))
    assert report.passed, report.summary()
    assert report.max_abs_diff < 1e-4


def test_training_and_engine_share_the_definition(
    tower: torch.nn.Module, models: dict[str, Path], photos: list[Path]
) -> None:
    pixels = np.stack([load_pixels(p, SPEC) for p in photos])
    with torch.no_grad():  # training's side: the uint8 batch through the normaliser module
        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        expected = tower(PixelNormalizer(SPEC)(batch)).numpy()
    embedder = Embedder(models["format2"])
    assert embedder.info.input_dtype == "uint8" and embedder.input_dtype is np.uint8
    np.testing.assert_allclose(embedder.embed_paths(photos).embeddings, expected, atol=1e-5)


def test_format1_models_embed_as_before(
    models: dict[str, Path], photos: list[Path], tmp_path: Path
) -> None:
    old = Embedder(models["format1"])
    assert (old.info.format_version, old.info.input_dtype, old.input_dtype) == (
        1,
        "float32",
        np.float32,
    )
    pixels = np.stack([load_pixels(p, SPEC) for p in photos])
    # Before format 2: the host normalised, then the float graph ran.
    session = ort.InferenceSession(str(models["format1"]), providers=["CPUExecutionProvider"])
    before = session.run(None, {"images": _old_normalize(pixels, SPEC)})[0]
    np.testing.assert_allclose(old.embed_paths(photos).embeddings, before, atol=1e-6)
    np.testing.assert_allclose(old.embed_pixels(pixels), before, atol=1e-6)
    # The same tower exported as format 2 gives the same vectors.
    new = Embedder(models["format2"]).embed_paths(photos).embeddings
    np.testing.assert_allclose(new, before, atol=1e-5)


@pytest.mark.parametrize("name", ["mislabelled1", "mislabelled2"])
def test_a_graph_that_contradicts_its_metadata_is_refused(
    models: dict[str, Path], name: str
) -> None:
    with pytest.raises(ModelError, match=r"m\d\.onnx: model format \d takes .*re-export"):
        Embedder(models[name])


def test_format2_metadata_without_input_dtype_is_refused() -> None:
    metadata = ModelInfo(input_spec=SPEC, embedding_dim=8).to_metadata()
    del metadata["siamese.input_dtype"]
    with pytest.raises(ModelError, match="model.onnx: model format 2 takes uint8 input"):
        ModelInfo.from_metadata(metadata, "model.onnx")
    old = ModelInfo(input_spec=SPEC, embedding_dim=8, format_version=1).to_metadata()
    assert "siamese.input_dtype" not in old  # format 1 files never had the key
    assert ModelInfo.from_metadata(old, "old.onnx").input_dtype == INPUT_DTYPES[1]


def test_engine_input_buffers_are_uint8(models: dict[str, Path]) -> None:
    """IO binding (run here on the CPU device) allocates its input buffer as the model's type."""
    for name, dtype, ort_type in [
        ("format2", np.uint8, "tensor(uint8)"),
        ("format1", np.float32, "tensor(float)"),
    ]:
        embedder = Embedder(models[name])
        bound = BindingRunner(
            embedder.session, embedder.dim, "cpu", input_dtype=embedder.input_dtype
        )
        pixels = np.random.default_rng(0).integers(0, 256, (3, *SPEC.shape), dtype=np.uint8)
        images = pixels if dtype is np.uint8 else normalize_pixels(pixels, SPEC)
        np.testing.assert_allclose(bound(images), embedder.embed_batch(pixels), atol=1e-5)
        assert bound._bound[(3, *SPEC.shape)].input.data_type() == ort_type


def test_embed_batch_refuses_float_pixels(models: dict[str, Path]) -> None:
    embedder = Embedder(models["format2"])
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed_batch(np.zeros((1, *SPEC.shape), dtype=np.float32))


@settings(max_examples=60, deadline=None)
@given(
    channels=st.sampled_from([1, 3]),
    mean=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
    std=st.lists(st.floats(0.01, 2.0), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_one_definition_everywhere(
    channels: int, mean: list[float], std: list[float], seed: int
) -> None:
    """Host, training module and the pre-format-2 formula agree bit for bit, for any spec."""
    spec = InputSpec.create(8, channels, mean=tuple(mean[:channels]), std=tuple(std[:channels]))
    pixels = np.random.default_rng(seed).integers(0, 256, (2, 8, 8, channels), dtype=np.uint8)
    host = normalize_pixels(to_tensor(pixels), spec)
    trained = PixelNormalizer(spec)(torch.from_numpy(to_tensor(pixels))).numpy()
    assert host.dtype == np.float32 and host.shape == (2, channels, 8, 8)
    np.testing.assert_array_equal(host, trained)
    np.testing.assert_array_equal(host, _old_normalize(pixels, spec))
