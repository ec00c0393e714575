"""Reduced-precision variants of an exported model: fp16 (for GPU providers) and int8 (for CPUs).

Both are made with onnxruntime's own tools: its float16 converter (the uint8 input and the
float32 output stay as they are, so the engine feeds every variant the same bytes) and its
static quantiser in QDQ form with per-channel int8 weights, calibrated on gallery images (fed
as uint8, like everything the model takes). Each variant is checked
against the float32 model it came from before it is published: embedding cosines, and, when the
images carry identities, leave-one-out top-1 identification with both models.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from siamese.contracts.model_card import INPUT_NAME
from siamese.contracts.spec import InputSpec
from siamese.core.errors import DataError, ImageDecodeError
from siamese.data.image_folder import scan_image_folder
from siamese.data.images import load_pixels, to_tensor

PRECISIONS = ("fp32", "fp16", "int8")
#: fp16 keeps about 3 decimal digits: embeddings must still point the same way.
FP16_MIN_COSINE = 0.999
#: int8 moves embeddings more; what matters is that identification does not get worse.
INT8_MIN_MEAN_COSINE = 0.98
MAX_TOP1_DROP = 0.02
#: On small check sets a couple of flipped near-ties is noise, not a regression; below
#: _MIN_GATED images the identification change is reported but does not gate publication.
_NOISE_PROBES = 2
_MIN_GATED = 50
_CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class CalibrationSet:
    """Resized images (N×C×H×W uint8, the model's input) and the identity of each."""

    images: NDArray[np.uint8]
    identities: list[str]


@dataclass(frozen=True)
class VariantReport:
    """How far a variant's embeddings are from float32's, and what that does to identification."""

    precision: str
    images: int
    min_cosine: float
    mean_cosine: float
    max_abs_diff: float
    top1_fp32: float | None
    top1_variant: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def summary(self) -> str:
        """One human line."""
        verdict = "ok" if self.passed else "FAILED"
        text = (
            f"{self.precision} check {verdict}: cosine to fp32 min {self.min_cosine:.5f} mean "
            f"{self.mean_cosine:.5f} on {self.images} images"
        )
        if self.top1_fp32 is not None:
            text += (
                f"; leave-one-out top-1 {self.top1_fp32:.3f} (fp32) vs "
                f"{self.top1_variant:.3f} ({self.precision})"
            )
        return text


def load_calibration(
    folder: str | os.PathLike[str], spec: InputSpec, max_images: int = 512, seed: int = 0
) -> CalibrationSet:
    """Decode up to ``max_images`` images of an ImageFolder (a random, reproducible sample).

    Raises:
        DataError: no readable images.
    """
    items = scan_image_folder(folder, loose_files=True)
    if len(items) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(items), max_images, replace=False))
        items = [items[i] for i in keep]
    pixels, identities = [], []
    for item in items:
        try:
            pixels.append(load_pixels(item.path, spec))
            identities.append(item.identity)
        except ImageDecodeError:
            continue
    if not pixels:
        raise DataError(f"{folder}: no readable calibration images")
    return CalibrationSet(to_tensor(np.stack(pixels)), identities)


def random_set(spec: InputSpec, count: int = 32, seed: int = 0) -> CalibrationSet:
    """Random pixel images, for checks when no real images are given."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(count, *spec.shape), dtype=np.uint8)
    return CalibrationSet(pixels, [])


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and compute, the uint8 input and float32 output kept (onnxruntime's tool)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    _sort_nodes(
        converted.graph
    )  # the converter appends its input casts last; onnx.checker wants order
    return converted


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Stable topological sort of a graph's nodes, in place."""
    known = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    remaining, ordered = list(graph.node), []
    while remaining:
        ready = [node for node in remaining if all(name in known for name in node.input)]
        if not ready:
            raise ValueError("graph has a cycle or a dangling input")
        for node in ready:
            known.update(node.output)
        ordered.extend(ready)
        remaining = [node for node in remaining if node not in ready]
    graph.ClearField("node")
    graph.node.extend(ordered)


class _Reader(CalibrationDataReader):
    """onnxruntime's calibration reader over uint8 images (what the model takes)."""

    def __init__(self, images: NDArray[np.uint8]) -> None:
        self._batches = iter(
            [images[i : i + _CALIBRATION_BATCH] for i in range(0, len(images), _CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, NDArray[np.uint8]] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(fp32_path: Path, out_path: Path, calibration: CalibrationSet) -> None:
    """Static int8 quantisation (QDQ, per-channel weights, MinMax calibration) of every operator
    onnxruntime can run in int8.

    Not convolutions alone: an activation (Clip, Relu) or a residual Add left in float32 between
    two quantised convolutions makes onnxruntime dequantise and requantise around it, and a
    convolution whose output is not requantised runs in float32 after all. On the photo recipe's
    EfficientNet-Lite0 (benchmarks/results/photo_tower-20261207T214232Z.json) convolutions alone
    ran 1.24x the fp32 rate and failed the gate; every operator, 2.26x and passed it.
    """
    reader = _Reader(calibration.images)
    with tempfile.TemporaryDirectory(prefix="siamese-quant-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Symbolic shape inference cannot follow the L2-normalisation tail; ONNX's own inference
        # suffices.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def _embed(path: Path, images: NDArray[np.uint8]) -> NDArray[np.float32]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run(None, {INPUT_NAME: images[i : i + 64]})[0] for i in range(0, len(images), 64)]
    )


def leave_one_out_top1(embeddings: NDArray[np.float32], identities: list[str]) -> float | None:
    """Share of images whose nearest other image has the same identity (None: nothing to match)."""
    labels = np.asarray(identities)
    counts = {name: int((labels == name).sum()) for name in set(identities)}
    probes = np.array([counts[name] >= 2 for name in identities])
    if len(counts) < 2 or not probes.any():
        return None
    squared = (embeddings**2).sum(1)
    distances = squared[:, None] + squared[None, :] - 2.0 * embeddings @ embeddings.T
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    return float((labels[nearest] == labels)[probes].mean())


def compare_variant(
    fp32_path: Path, variant_path: Path, precision: str, check: CalibrationSet
) -> VariantReport:
    """Embed the same images with both models and judge the variant (CPU, deterministic)."""
    reference, variant = _embed(fp32_path, check.images), _embed(variant_path, check.images)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(variant, axis=1)
    cosines = (reference * variant).sum(1) / np.maximum(norms, 1e-12)
    top1_ref = leave_one_out_top1(reference, check.identities) if check.identities else None
    top1_var = leave_one_out_top1(variant, check.identities) if check.identities else None
    if precision == "fp16":
        passed = float(cosines.min()) >= FP16_MIN_COSINE
    else:
        passed = float(cosines.mean()) >= INT8_MIN_MEAN_COSINE
    if top1_ref is not None and top1_var is not None and len(check.images) >= _MIN_GATED:
        allowed = max(MAX_TOP1_DROP, _NOISE_PROBES / len(check.images))
        passed = passed and top1_var >= top1_ref - allowed - 1e-9
    return VariantReport(
        precision,
        len(check.images),
        float(cosines.min()),
        float(cosines.mean()),
        float(np.abs(reference - variant).max()),
        top1_ref,
        top1_var,
        bool(passed),
    )
