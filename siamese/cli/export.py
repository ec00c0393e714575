"""`siamese export`: a run (or a pretrained backbone) to a parity-checked ONNX model."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import (
    out,
)
from siamese.cli.support import print_json as _print_json
from siamese.core.errors import SiameseError


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


@_friendly_errors
def export(
    run_dir: Annotated[
        Path | None,
        typer.Argument(help="Run directory written by `siamese train` (or give --backbone)."),
    ] = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write.")] = Path(
        "model.onnx"
    ),
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 18,
    precision: Annotated[
        Precision,
        typer.Option(
            help="fp32; fp16 for GPU providers; int8 (static quantisation, needs --calibration)."
        ),
    ] = Precision.fp32,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Gallery images (ImageFolder) to calibrate int8 on and check the variant with."
        ),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="No training: export this timm backbone's pooled features (e.g. "
            "tf_efficientnet_lite0) with its --pretrained weights."
        ),
    ] = None,
    pretrained: Annotated[
        str,
        typer.Option(help="With --backbone: imagenet, hub, packaged, or a weights file."),
    ] = "imagenet",
    image_size: Annotated[
        int | None, typer.Option(help="With --backbone: input size (default: its own).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from siamese.training.pair_run import is_pair_run

    if (run_dir is None) == (backbone is None):
        raise SiameseError("give a run directory or --backbone NAME, not both and not neither")
    if backbone is not None:
        from siamese.export import export_pretrained

        report = export_pretrained(
            backbone, out_path, pretrained=pretrained, image_size=image_size, progress=not as_json
        )
        _print_export(report, as_json)
        return
    assert run_dir is not None
    if is_pair_run(run_dir):
        _export_pair(run_dir, out_path, opset, precision.value, as_json)
        return
    from siamese.export import export_onnx

    report = export_onnx(
        run_dir,
        out_path,
        opset=opset,
        progress=not as_json,
        precision=precision.value,
        calibration=calibration,
    )
    _print_export(report, as_json)


def _print_export(report: Any, as_json: bool) -> None:
    if as_json:
        _print_json(report.to_dict())
        return
    out.print(report.parity.summary(), highlight=False)
    if report.variant is not None:
        out.print(report.variant.summary(), highlight=False)
    out.print(
        f"wrote [bold]{report.path}[/bold] ({report.size_bytes / 1e6:.1f} MB, sha256 "
        f"{report.fingerprint[:16]})"
    )


def _export_pair(run_dir: Path, out_path: Path, opset: int, precision: str, as_json: bool) -> None:
    """A pair run: NAME.query.onnx and NAME.gallery.onnx beside --out (export/pair_export.py)."""
    from siamese.export.pair_export import export_pair

    if precision != "fp32":
        raise SiameseError(f"{run_dir}: a pair exports in fp32 only, not {precision}")
    report = export_pair(run_dir, out_path, opset=opset, progress=not as_json)
    if as_json:
        _print_json(report.to_dict())
        return
    for role, side in (("query", report.query), ("gallery", report.gallery)):
        out.print(f"{role}: {side.parity.summary()}", highlight=False)
        out.print(
            f"wrote [bold]{side.path}[/bold] ({side.size_bytes / 1e6:.1f} MB, sha256 "
            f"{side.fingerprint[:16]})"
        )
    out.print(f"pair fingerprint {report.fingerprint[:16]}")
