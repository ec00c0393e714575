"""Engine stage: onnxruntime batch embedding from model.onnx alone. Never imports torch."""

from siamese.engine.embedder import EmbeddedBatch, Embedder, EmbedResult
from siamese.engine.image import decode_image, load_pixels, normalize, preprocess_images
from siamese.engine.model_info import ModelInfo
from siamese.engine.providers import DEVICES, create_session

__all__ = [
    "DEVICES",
    "EmbedResult",
    "EmbeddedBatch",
    "Embedder",
    "ModelInfo",
    "create_session",
    "decode_image",
    "load_pixels",
    "normalize",
    "preprocess_images",
]
