"""Export a trained tower (one tower, not the pair) to ONNX with a dynamic batch axis.

The graph takes uint8 pixels and starts with training's own normaliser (training/pixels.py), so
the spec's mean and std are constants inside it and the engine hands over bytes. The file
carries its preprocessing spec and model facts in metadata_props, passes onnx.checker, and is
published only after onnxruntime reproduces PyTorch within tolerance. An fp16 or int8
variant is derived from that verified float32 graph and published only if it passes its own
check against it (see variants.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from siamese import __version__
from siamese.contracts.model_card import INPUT_NAME, OUTPUT_NAME, ModelInfo
from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, ModelError, ParityError, named
from siamese.core.files import atomic_path, sha256_file
from siamese.core.progress import progress_bar
from siamese.export.parity import ParityReport, check_parity
from siamese.export.variants import (
    PRECISIONS,
    VariantReport,
    compare_variant,
    load_calibration,
    quantize_int8,
    random_set,
    to_fp16,
)
from siamese.training.pixels import PixelInputTower
from siamese.training.run_dir import load_run

DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportReport:
    """Where the model went, what it is, and how closely it matches PyTorch."""

    path: Path
    fingerprint: str
    size_bytes: int
    info: ModelInfo
    parity: ParityReport
    variant: VariantReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "size_bytes": self.size_bytes,
            "precision": self.info.precision,
            "model": self.info.to_dict(),
            "parity": self.parity.to_dict(),
            "variant": self.variant.to_dict() if self.variant else None,
        }


def _write_variant(
    fp32_path: Path, target: Path, info: ModelInfo, calibration: str | os.PathLike[str] | None
) -> VariantReport:
    """Derive the ``info.precision`` variant of a verified fp32 model into ``target``; check it."""
    spec = info.input_spec
    with tempfile.TemporaryDirectory(prefix="siamese-variant-") as scratch:
        variant_path = Path(scratch) / "variant.onnx"
        if info.precision == "fp16":
            model = to_fp16(onnx.load(str(fp32_path)))
            check = load_calibration(calibration, spec) if calibration else random_set(spec)
        else:
            check = load_calibration(calibration, spec)
            quantize_int8(fp32_path, variant_path, check)
            model = onnx.load(str(variant_path))
        # The converters drop or keep metadata unpredictably: restate it, with the precision.
        onnx.helper.set_model_props(model, info.to_metadata())
        model.producer_name, model.producer_version = "siamese", __version__
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise ModelError(
                f"{target}: the {info.precision} variant fails onnx.checker ({exc})"
            ) from exc
        onnx.save_model(model, str(variant_path))
        report = compare_variant(fp32_path, variant_path, info.precision, check)
        if report.passed:
            os.replace(variant_path, target)
    return report


def module_to_onnx(
    module: nn.Module, example: torch.Tensor, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """Trace a module with one N×C×H×W input (typed like ``example``) into a dynamic-batch graph."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    # The exporter narrates its steps on stdout; keep stdout clean for --json callers.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval().cpu(),
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
    model = program.model_proto
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def tower_to_onnx(tower: nn.Module, spec: InputSpec, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The tower behind its pixel normaliser as ONNX: input ``images`` uint8 [N, C, H, W]."""
    example = torch.zeros((2, *spec.shape), dtype=torch.uint8)
    return module_to_onnx(PixelInputTower(tower, spec), example, opset)


def _model_info(run: Any) -> ModelInfo:
    """The model card of a run's tower: input spec, tower (and its starting weights), output."""
    tower_config = run.config["tower"]
    tower = {"name": tower_config["name"], "options": tower_config.get("options", {})}
    if tower_config.get("pretrained"):  # a backbone's source weights, as config.json names them
        tower["pretrained"] = tower_config["pretrained"]
    return ModelInfo(
        input_spec=run.spec,
        tower=tower,
        embedding_dim=int(tower_config["embedding_dim"]),
        normalized=bool(tower_config["normalized"]),
        run_fingerprint=run.weights_sha256,
        siamese_version=__version__,
    )


def _checked_model(run: Any, info: ModelInfo, opset: int, out_path: Path) -> onnx.ModelProto:
    """The tower as ONNX with its model card, passed by ``onnx.checker``."""
    model = tower_to_onnx(run.tower, run.spec, opset)
    onnx.helper.set_model_props(model, info.to_metadata())
    model.producer_name, model.producer_version = "siamese", __version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{out_path}: exported graph fails onnx.checker ({exc})") from exc
    return model


def export_onnx(
    run_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    batch_sizes: Sequence[int] = (1, 2, 7, 32),
    progress: bool = False,
    precision: str = "fp32",
    calibration: str | os.PathLike[str] | None = None,
) -> ExportReport:
    """Export the best tower of a training run to ``out_path``.

    Args:
        run_dir: a directory written by ``siamese train``.
        out_path: where model.onnx goes (replaced atomically; never left half-written).
        opset: ONNX opset version.
        batch_sizes: batch sizes the parity check runs.
        progress: show a progress bar on stderr.
        precision: "fp32", "fp16" (for GPU providers) or "int8" (static quantisation).
        calibration: ImageFolder of gallery images: calibrates int8 (required there) and checks
            identification with the variant against fp32.

    Returns:
        The export report (fingerprint, metadata, parity figures).

    Raises:
        RunError: the run directory is incomplete.
        ModelError: ONNX checker rejects the graph.
        ParityError: onnxruntime disagrees with PyTorch beyond tolerance, or the variant with
            the fp32 model (nothing is written).
        ConfigError: unknown precision, or int8 without calibration images.
    """
    out_path = Path(out_path)
    if precision not in PRECISIONS:
        raise ConfigError(
            f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
        )
    if precision == "int8" and calibration is None:
        raise ConfigError(
            "int8 export needs calibration images: give a gallery folder "
            f"({named('calibration')} GALLERY_DIR)"
        )
    with progress_bar("exporting", 4 if precision == "fp32" else 5, progress) as ticker:
        run = load_run(run_dir)
        ticker.advance()
        info = _model_info(run)
        model = _checked_model(run, info, opset, out_path)
        ticker.advance()
        with atomic_path(out_path) as tmp:
            onnx.save_model(model, str(tmp))
            ticker.advance()
            parity = check_parity(run.tower, tmp, run.spec, batch_sizes)
            if not parity.passed:
                raise ParityError(
                    f"{out_path}: not written, ONNX output differs from PyTorch; {parity.summary()}"
                )
            ticker.advance()
            variant = None
            if precision != "fp32":
                info = replace(info, precision=precision)
                variant = _write_variant(tmp, tmp, info, calibration)
                if not variant.passed:
                    raise ParityError(
                        f"{out_path}: not written, the {precision} variant drifts too far from "
                        f"fp32; {variant.summary()}"
                    )
                ticker.advance()
    return ExportReport(
        out_path, sha256_file(out_path), out_path.stat().st_size, info, parity, variant
    )
