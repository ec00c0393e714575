"""Export a pretrained backbone's features with no training: ``siamese export --backbone``.

The backbone (with its ImageNet weights) goes through the same path as a trained tower: a run
folder, then the ONNX export with its parity gate; the model card names the weights' source.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from siamese.export.onnx_export import ExportReport, export_onnx


def export_pretrained(
    backbone: str,
    out_path: str | os.PathLike[str],
    *,
    pretrained: str = "imagenet",
    image_size: int | None = None,
    progress: bool = False,
) -> ExportReport:
    """Write ``backbone``'s pooled, L2-normalised features as an ONNX model.

    Args:
        backbone: a timm tower of the registry (tf_efficientnet_lite0, resnet50, ...).
        pretrained: "imagenet", "hub", "packaged" or a weights file.
        image_size: input size (default: the backbone's own).

    Raises:
        ConfigError: unknown backbone, or weights that cannot be had.
    """
    from siamese.training import TrainConfig
    from siamese.training.trainer import write_features_run

    with tempfile.TemporaryDirectory(prefix="siamese-features-") as work:
        run = Path(work) / "run"
        config = TrainConfig(
            data_dir=work,
            out_dir=str(run),
            tower=backbone,
            pretrained=pretrained,
            image_size=image_size,
            channels=3,
        )
        write_features_run(config)
        return export_onnx(run, out_path, progress=progress)
