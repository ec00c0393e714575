"""What binds a pseudo-siamese pair: the towers' fingerprints and the pair record.

A pseudo-siamese pair is a query tower and a gallery tower trained together; either is useless
with another partner, because their embeddings meet only in the space they were trained into.
Each of the pair's two files (``NAME.query.onnx``, ``NAME.gallery.onnx``) carries a
:class:`PairInfo` in its model card (``siamese.pair``, read and written by model_card.py). The
files' own sha256 cannot be cross-recorded (each would contain the other's hash); the towers'
fingerprints can. A gallery built with the gallery tower records the pair fingerprint and
accepts the query tower that carries the same one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from siamese.core.files import sha256_bytes

ROLES = ("query", "gallery")


def tower_fingerprint(weights_sha256: str, tokenizer_json: str | None = None) -> str:
    """A tower's fingerprint: its weights' sha256, or with a tokenizer, sha256 over both."""
    if tokenizer_json is None:
        return weights_sha256
    return sha256_bytes(f"{weights_sha256}:".encode() + tokenizer_json.encode())


def pair_fingerprint(query_fingerprint: str, gallery_fingerprint: str) -> str:
    """sha256 over the two towers' fingerprints, in role order: it changes if either does."""
    return sha256_bytes(f"siamese-pair:{query_fingerprint}:{gallery_fingerprint}".encode())


@dataclass(frozen=True)
class PairInfo:
    """One file's side of a pair: the pair ``fingerprint``, this file's ``role``, its ``own``
    and its ``partner``'s tower fingerprint, the ``partner_kind`` and the ``partner_file`` (its
    name, beside this one)."""

    fingerprint: str
    role: str
    own: str
    partner: str
    partner_kind: str
    partner_file: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``siamese.pair`` holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairInfo:
        """Check a recorded pair.

        Raises:
            ValueError: a missing or non-text field, an unknown role, or a fingerprint that
                does not follow from the two towers' (the record was edited). The card's codec
                checks ``partner_kind``, since it knows the kinds.
        """
        names = [f.name for f in fields(cls)]
        missing = next((n for n in names if not isinstance(data.get(n), str)), None)
        if missing is not None:
            raise ValueError(f"has no text field {missing!r}")
        info = cls(**{n: data[n] for n in names})
        if info.role not in ROLES:
            raise ValueError(f"names role {info.role!r}, not one of {', '.join(ROLES)}")
        ends = (info.own, info.partner) if info.role == "query" else (info.partner, info.own)
        if pair_fingerprint(*ends) != info.fingerprint:
            raise ValueError("fingerprint does not match its towers'; it was edited or damaged")
        return info
