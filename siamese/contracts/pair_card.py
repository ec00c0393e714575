"""What binds the two ONNX files of a pseudo-siamese pair: the ``siamese.pair`` metadata record.

A pair is a query tower and a gallery tower trained together; either is useless with another
partner, because their embeddings meet only in the space they were trained into. Each exported
file records, under ``siamese.pair`` (JSON):

- ``fingerprint``: the pair fingerprint, sha256 over both towers' fingerprints (each tower's
  fingerprint is the sha256 of its weights file, and for a text tower of its tokenizer too), so
  it changes if either tower or the tokenizer changes;
- ``role``: ``"query"`` or ``"gallery"``; ``own``: this tower's fingerprint; ``partner``: the
  other tower's fingerprint; ``partner_kind``: ``"image"`` or ``"text"``; ``partner_file``: the
  partner's file name, beside this one (export writes ``NAME.query.onnx`` and
  ``NAME.gallery.onnx``).

A gallery built with the gallery tower records this in its manifest; a query model is accepted
when it is the gallery's own model, or a query tower with the same pair fingerprint
(:func:`accepts_query`). The file fingerprints (sha256 of each ONNX file) cannot be cross-recorded,
since each file would have to contain the other's hash; the weights fingerprints can.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from siamese.core.errors import ModelError
from siamese.core.files import sha256_bytes

PAIR_KEY = "pair"
ROLES = ("query", "gallery")
KINDS = ("image", "text")


def pair_fingerprint(query_fingerprint: str, gallery_fingerprint: str) -> str:
    """sha256 over the two towers' fingerprints, in role order."""
    return sha256_bytes(f"siamese-pair:{query_fingerprint}:{gallery_fingerprint}".encode())


def tower_fingerprint(weights_sha256: str, tokenizer_json: str | None = None) -> str:
    """A tower's fingerprint: its weights' sha256, or with a tokenizer, sha256 over both."""
    if tokenizer_json is None:
        return weights_sha256
    return sha256_bytes(f"{weights_sha256}:".encode() + tokenizer_json.encode())


@dataclass(frozen=True)
class PairInfo:
    """One file's side of the pair record (see the module docstring)."""

    fingerprint: str
    role: str
    own: str
    partner: str
    partner_kind: str
    partner_file: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str, source: str) -> PairInfo:
        """Parse ``siamese.pair``; ``source`` (the file) is named in errors.

        Raises:
            ModelError: malformed record, unknown role or kind, or a fingerprint that does not
                follow from the two towers'.
        """
        try:
            data = json.loads(text)
            info = cls(**{k: str(data[k]) for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{source}: malformed siamese.pair metadata ({exc})") from None
        if info.role not in ROLES or info.partner_kind not in KINDS:
            raise ModelError(f"{source}: siamese.pair names an unknown role or partner kind")
        query, gallery = (
            (info.own, info.partner) if info.role == "query" else (info.partner, info.own)
        )
        if pair_fingerprint(query, gallery) != info.fingerprint:
            raise ModelError(
                f"{source}: siamese.pair's fingerprint does not match its towers; the metadata "
                "was edited or damaged"
            )
        return info


def pair_of(extra: dict[str, str], source: str) -> PairInfo | None:
    """The pair record among a model's extra metadata, or None for a single-tower model."""
    text = extra.get(PAIR_KEY)
    return None if text is None else PairInfo.from_json(text, source)
