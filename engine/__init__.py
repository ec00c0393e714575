"""Engine stage: onnxruntime batch embedding from model.onnx alone. Never imports torch."""

from siamese.contracts.model_card import ModelInfo
from siamese.data.images import decode_image, load_pixels, preprocess_images, to_tensor
from siamese.engine.embedder import Embedder, EmbedResult
from siamese.engine.pipeline import DecodePipeline, PreparedBatch
from siamese.engine.providers import DEVICES, create_session
from siamese.engine.runtime import RuntimeOptions
from siamese.engine.text_embedder import TextEmbedder, open_query_embedder, read_model_kind

__all__ = [
    "DEVICES",
    "DecodePipeline",
    "EmbedResult",
    "Embedder",
    "ModelInfo",
    "PreparedBatch",
    "RuntimeOptions",
    "TextEmbedder",
    "create_session",
    "decode_image",
    "load_pixels",
    "open_query_embedder",
    "preprocess_images",
    "read_model_kind",
    "to_tensor",
]
