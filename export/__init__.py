"""Export stage: a trained tower becomes a parity-checked, self-describing ONNX model."""

from siamese.export.onnx_export import ExportReport, export_onnx, tower_to_onnx
from siamese.export.parity import ParityReport, check_parity
from siamese.export.pretrained_export import export_pretrained
from siamese.export.variants import PRECISIONS, VariantReport

__all__ = [
    "PRECISIONS",
    "ExportReport",
    "ParityReport",
    "VariantReport",
    "check_parity",
    "export_onnx",
    "export_pretrained",
    "tower_to_onnx",
]
