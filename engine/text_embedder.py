"""Text embedding with onnxruntime and the tokenizer a text tower carries (torch-free).

A text tower's ONNX file holds its tokenizer (Hugging Face ``tokenizers`` JSON) in its metadata
(siamese/contracts/model_card.py), so :class:`TextEmbedder` needs the file alone: it tokenises with
:func:`siamese.data.text.encode_texts`, the very function training used, and runs the graph.
:func:`open_query_embedder` opens either kind of model by what its metadata says, so the query
side of a pair is one call whether it reads images or texts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from siamese.contracts.model_card import (
    OUTPUT_NAME,
    TEXT_INPUTS,
    TEXT_KIND,
    TextModelInfo,
    model_kind,
)
from siamese.core.errors import DataError, ModelError
from siamese.data.text import encode_texts, load_tokenizer
from siamese.engine.embedder import Embedder, TowerFacts
from siamese.engine.model_safety import check_external_data
from siamese.engine.providers import create_session
from siamese.engine.runtime import RuntimeOptions, session_options


class TextEmbedder(TowerFacts):
    """Embeds texts with an exported text tower.

    Args:
        model_path: a text tower's ONNX file (``NAME.query.onnx`` of a text → image pair).
        device: "auto", "cpu", "cuda" or "tensorrt" (as :class:`~siamese.engine.Embedder`).
        batch_size: texts per inference call.
        runtime: onnxruntime tuning.

    Raises:
        ModelError: missing file, not ONNX, not a text tower, or a damaged tokenizer.
    """

    kind = TEXT_KIND

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        batch_size: int = 64,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(
                f"{self.model_path}: model file not found (export one with `siamese export`)"
            )
        if batch_size < 1:
            raise ModelError(f"batch size must be at least 1, got {batch_size}")
        check_external_data(self.model_path)
        self.batch_size = batch_size
        self.session, self.device = create_session(
            str(self.model_path), device, session_options(runtime or RuntimeOptions())
        )
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = TextModelInfo.from_metadata(metadata, str(self.model_path))
        self.tokenizer = load_tokenizer(self.info.tokenizer_json, str(self.model_path))
        padded = (self.tokenizer.padding or {}).get("length")
        if padded != self.info.max_length:
            raise ModelError(
                f"{self.model_path}: the tokenizer pads to {padded} tokens but the model takes "
                f"{self.info.max_length}"
            )
        names = [i.name for i in self.session.get_inputs()]
        if names != list(TEXT_INPUTS):
            raise ModelError(
                f"{self.model_path}: a text tower takes inputs {', '.join(TEXT_INPUTS)}, this "
                f"model takes {', '.join(names)}"
            )

    def tokenize(self, texts: Sequence[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Token ids and attention mask, as training made them.

        Raises:
            DataError: an empty, blank or over-long text.
        """
        try:
            return encode_texts(self.tokenizer, texts)
        except ValueError as exc:
            raise DataError(str(exc)) from None

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """N × dim float32 embeddings of ``texts``, in order.

        Raises:
            DataError: an empty, blank or over-long text (nothing is embedded).
        """
        texts = list(texts)
        ids, mask = self.tokenize(texts)
        chunks = [
            self.session.run(
                [OUTPUT_NAME],
                {
                    TEXT_INPUTS[0]: ids[start : start + self.batch_size],
                    TEXT_INPUTS[1]: mask[start : start + self.batch_size],
                },
            )[0]
            for start in range(0, len(texts), self.batch_size)
        ]
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)

    def settings(self) -> dict[str, Any]:
        """What the embedder runs with (for reports)."""
        return {"device": self.device, "batch_size": self.batch_size, "kind": self.kind}


def read_model_kind(model_path: str | os.PathLike[str]) -> str:
    """``"text"`` or ``"image"``, from the file's metadata alone (no session is built).

    A file onnx cannot parse, or without siamese metadata, is reported as ``"image"``: the image
    Embedder then refuses it with its usual one-line error (the same message as before pairs
    existed).

    Raises:
        ModelError: missing file, or a kind this siamese does not know.
    """
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (export one with `siamese export`)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 (protobuf and onnx raise several unrelated types)
        return "image"
    return model_kind({p.key: p.value for p in model.metadata_props}, str(path))


def open_query_embedder(
    model_path: str | os.PathLike[str], *, device: str = "auto", **options: Any
) -> Embedder | TextEmbedder:
    """An :class:`Embedder` for an image model, a :class:`TextEmbedder` for a text tower."""
    if read_model_kind(model_path) == TEXT_KIND:
        return TextEmbedder(model_path, device=device)
    return Embedder(model_path, device=device, **options)
