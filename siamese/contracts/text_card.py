"""What a text tower's ONNX file says about itself: the text counterpart of model_card.py.

A text model takes ``input_ids`` and ``attention_mask`` (int64 N × max_length) and returns
``embeddings`` (float32 N × D). Its metadata_props (prefix ``siamese.``) hold ``kind`` = text,
the ``tokenizer`` as JSON (Hugging Face ``tokenizers``, padding and truncating to
``max_length``), the tower, the dimension, whether outputs are L2-normalised, the run
fingerprint and, for a pair, the ``pair`` record (siamese/contracts/pair_card.py). So the engine
tokenises
and embeds a text from the file alone, without torch or the run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from siamese.contracts.model_card import MODEL_FORMAT_VERSION, OUTPUT_NAME
from siamese.core.errors import ModelError

TEXT_KIND = "text"
TEXT_INPUTS = ("input_ids", "attention_mask")
_PREFIX = "siamese."
_KNOWN = {
    "kind",
    "format_version",
    "tokenizer",
    "max_length",
    "tower",
    "embedding_dim",
    "normalized",
    "run_fingerprint",
    "version",
    "precision",
}

__all__ = ["OUTPUT_NAME", "TEXT_INPUTS", "TEXT_KIND", "TextModelInfo", "model_kind"]


def model_kind(metadata: dict[str, str]) -> str:
    """``"text"`` for a text tower, ``"image"`` for every other siamese model."""
    return TEXT_KIND if metadata.get(_PREFIX + "kind") == TEXT_KIND else "image"


@dataclass(frozen=True)
class TextModelInfo:
    """Facts a text model carries in its ``siamese.*`` metadata_props."""

    tokenizer_json: str
    max_length: int
    tower: dict[str, Any]
    embedding_dim: int
    normalized: bool
    run_fingerprint: str = ""
    siamese_version: str = ""
    precision: str = "fp32"
    format_version: int = MODEL_FORMAT_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """Flatten to string key/values for ONNX metadata_props."""
        values = {
            "kind": TEXT_KIND,
            "format_version": str(self.format_version),
            "tokenizer": self.tokenizer_json,
            "max_length": str(self.max_length),
            "tower": json.dumps(self.tower, sort_keys=True),
            "embedding_dim": str(self.embedding_dim),
            "normalized": "true" if self.normalized else "false",
            "run_fingerprint": self.run_fingerprint,
            "version": self.siamese_version,
            "precision": self.precision,
            **self.extra,
        }
        return {_PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str) -> TextModelInfo:
        """Parse metadata_props; ``source`` (the file) is named in errors.

        Raises:
            ModelError: not a text model, too new, or malformed metadata.
        """
        values = {k[len(_PREFIX) :]: v for k, v in metadata.items() if k.startswith(_PREFIX)}
        if values.get("kind") != TEXT_KIND:
            raise ModelError(f"{source}: not a text tower (it embeds images)")
        try:
            version = int(values.get("format_version", "0"))
            if version > MODEL_FORMAT_VERSION:
                raise ModelError(
                    f"{source}: model format {version} is newer than this siamese supports "
                    f"({MODEL_FORMAT_VERSION}); upgrade siamese"
                )
            info = cls(
                tokenizer_json=values["tokenizer"],
                max_length=int(values["max_length"]),
                tower=json.loads(values.get("tower", "{}")),
                embedding_dim=int(values["embedding_dim"]),
                normalized=values.get("normalized", "false") == "true",
                run_fingerprint=values.get("run_fingerprint", ""),
                siamese_version=values.get("version", ""),
                precision=values.get("precision", "fp32"),
                format_version=version,
                extra={k: v for k, v in values.items() if k not in _KNOWN},
            )
        except ModelError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{source}: malformed siamese text-model metadata ({exc})") from None
        if info.max_length < 1 or info.embedding_dim < 1:
            raise ModelError(f"{source}: malformed siamese text-model metadata (sizes)")
        return info

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for `siamese info`), the tokenizer summarised."""
        return {
            "embeds": TEXT_KIND,
            "max_length": self.max_length,
            "tower": self.tower,
            "embedding_dim": self.embedding_dim,
            "normalized": self.normalized,
            "run_fingerprint": self.run_fingerprint,
            "siamese_version": self.siamese_version,
            "precision": self.precision,
            "format_version": self.format_version,
            "tokenizer_bytes": len(self.tokenizer_json.encode()),
        }
