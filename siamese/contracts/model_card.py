"""What a siamese ONNX model says about itself: the metadata_props contract of export and engine.

Format 2 models take uint8 pixels and normalise inside the graph (``siamese.input_dtype`` =
uint8). Format 1 models (siamese before format 2) take float32 pixels already normalised by the
host; they have no ``input_dtype`` key and still load: the engine normalises for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ModelError

MODEL_FORMAT_VERSION = 2
#: The input element type per format: what the ``images`` tensor holds.
INPUT_DTYPES = {1: "float32", 2: "uint8"}
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
_PREFIX = "siamese."


@dataclass(frozen=True)
class ModelInfo:
    """Facts an exported model carries in its ``siamese.*`` metadata_props."""

    input_spec: InputSpec
    tower: dict[str, Any]
    embedding_dim: int
    normalized: bool
    run_fingerprint: str = ""
    siamese_version: str = ""
    precision: str = "fp32"
    format_version: int = MODEL_FORMAT_VERSION
    input_dtype: str = INPUT_DTYPES[MODEL_FORMAT_VERSION]
    extra: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        """Flatten to string key/values for ONNX metadata_props."""
        values = {
            "format_version": str(self.format_version),
            "input_spec": json.dumps(self.input_spec.to_dict(), sort_keys=True),
            "tower": json.dumps(self.tower, sort_keys=True),
            "embedding_dim": str(self.embedding_dim),
            "normalized": "true" if self.normalized else "false",
            "run_fingerprint": self.run_fingerprint,
            "version": self.siamese_version,
            "precision": self.precision,
            **self.extra,
        }
        if self.format_version >= 2:  # format 1 files never had the key
            values["input_dtype"] = self.input_dtype
        return {_PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str) -> ModelInfo:
        """Parse metadata_props; ``source`` (the file) is named in errors.

        Raises:
            ModelError: the model lacks siamese metadata or it is malformed or too new.
        """
        values = {k[len(_PREFIX) :]: v for k, v in metadata.items() if k.startswith(_PREFIX)}
        if values.get("kind") == "text":  # siamese/contracts/text_card.py
            raise ModelError(
                f"{source}: a text tower; it embeds texts (siamese query --text), not images"
            )
        if "input_spec" not in values:
            raise ModelError(
                f"{source}: not a siamese model (no siamese.input_spec metadata); export it with "
                "`siamese export`"
            )
        try:
            version = int(values.get("format_version", "1"))
            if version > MODEL_FORMAT_VERSION:
                raise ModelError(
                    f"{source}: model format {version} is newer than this siamese supports "
                    f"({MODEL_FORMAT_VERSION}); upgrade siamese"
                )
            if version < 1:
                raise ModelError(f"{source}: malformed siamese metadata (format version {version})")
            input_dtype = values.get("input_dtype", "") if version >= 2 else INPUT_DTYPES[1]
            if input_dtype != INPUT_DTYPES[version]:
                raise ModelError(
                    f"{source}: model format {version} takes {INPUT_DTYPES[version]} input but "
                    f"siamese.input_dtype says {input_dtype or 'nothing'!r}; "
                    "re-export it with `siamese export`"
                )
            known = {
                "format_version",
                "input_spec",
                "tower",
                "embedding_dim",
                "normalized",
                "run_fingerprint",
                "version",
                "precision",
                "input_dtype",
            }
            return cls(
                input_spec=InputSpec.from_dict(json.loads(values["input_spec"])),
                tower=json.loads(values.get("tower", "{}")),
                embedding_dim=int(values["embedding_dim"]),
                normalized=values.get("normalized", "false") == "true",
                run_fingerprint=values.get("run_fingerprint", ""),
                siamese_version=values.get("version", ""),
                precision=values.get("precision", "fp32"),
                format_version=version,
                input_dtype=input_dtype,
                extra={k: v for k, v in values.items() if k not in known},
            )
        except ModelError:
            raise
        except Exception as exc:  # malformed JSON, missing key, bad spec: all mean a damaged model
            raise ModelError(f"{source}: malformed siamese metadata ({exc})") from exc

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for `siamese info`)."""
        return {
            "input_spec": self.input_spec.to_dict(),
            "tower": self.tower,
            "embedding_dim": self.embedding_dim,
            "normalized": self.normalized,
            "run_fingerprint": self.run_fingerprint,
            "siamese_version": self.siamese_version,
            "precision": self.precision,
            "format_version": self.format_version,
            "input_dtype": self.input_dtype,
        }
