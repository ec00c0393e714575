"""Engine stage: onnxruntime batch embedding from model.onnx alone. Never imports torch.

Before any engine module loads onnxruntime, the environment must hold exactly one build of it
(runtime_builds.py): none gets the install command of the ``cpu``/``gpu`` extras, two get the
commands that leave one.
"""

from siamese.core.extras import require
from siamese.engine.runtime_builds import check_single_build

check_single_build()
require("onnxruntime", "the siamese engine")

# The checks above run before any engine module imports onnxruntime.
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
