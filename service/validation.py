"""Request values checked before they reach SQLite or the file system: ids, identities, folders.

Every length, byte size and integer range a client controls is bounded here, so an odd value is
a JSON 4xx naming the limit, never a 500 from deep inside (an id past SQLite's 64-bit integers,
an identity whose UTF-8 form is longer than a file name may be, a NUL byte in a name).

An identity is stored losslessly in the gallery's item table; only the folder its uploads are
kept in is derived from it. Names the file system can hold are used as they are
(``uploads/alice/``); a longer one becomes a readable prefix plus a hash of the whole identity
(``uploads/<first 64 bytes>~<32 hex>/``), so any identity up to 128 characters can be added.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Annotated

from fastapi import Path as PathParam
from siamese.service.errors import ApiError

#: SQLite integers (and FAISS ids) are signed 64-bit: no item id is larger.
MAX_ITEM_ID = 2**63 - 1
#: Identities added over HTTP are 1 to this many characters (after stripping spaces).
MAX_IDENTITY_CHARS = 128
#: Longest identity looked up (DELETE ?identity=) in UTF-8 bytes; no stored one can be longer.
MAX_IDENTITY_LOOKUP_BYTES = 4 * 1024
#: File-name length assumed where the file system does not say (ext4, XFS, Btrfs, tmpfs: 255).
DEFAULT_NAME_MAX = 255
#: Bytes of the identity kept readable in a hashed folder name.
_HASHED_PREFIX_BYTES = 64

ItemId = Annotated[int, PathParam(ge=0, le=MAX_ITEM_ID, description="Item id (0 to 2^63 - 1).")]


def _bad_characters(text: str) -> str | None:
    """Why ``text`` cannot be an identity because of the characters in it, or None."""
    for ch in text:
        if ch in "/\\":
            return "'/' or '\\'"
        category = unicodedata.category(ch)
        if category == "Cc":
            return "control characters"
        if category == "Cs":
            return "unpaired surrogates (not valid UTF-8)"
    return None


def check_identity(identity: str) -> str:
    """The identity to add items under, stripped; else 400 naming the rule it breaks."""
    identity = identity.strip()
    problem = _bad_characters(identity)
    if not identity:
        problem = "an empty name"
    elif len(identity) > MAX_IDENTITY_CHARS:
        problem = f"{len(identity)} characters (at most {MAX_IDENTITY_CHARS})"
    elif identity.startswith("."):
        problem = "a leading '.'"
    if problem is not None:
        raise ApiError(
            400,
            "bad_identity",
            f"identity {identity[:40]!r} cannot be used: it has {problem}; an identity is "
            f"1–{MAX_IDENTITY_CHARS} characters, without '/', '\\\\' or control characters, "
            "not starting with '.'",
        )
    return identity


def check_identity_lookup(identity: str) -> str:
    """An identity to look up (remove): any stored name may be asked for, but bounded and encodable."""
    try:
        size = len(identity.encode("utf-8"))
    except UnicodeEncodeError:
        raise ApiError(
            400, "bad_identity", "identity contains unpaired surrogates (not valid UTF-8)"
        ) from None
    if size > MAX_IDENTITY_LOOKUP_BYTES:
        raise ApiError(
            400,
            "bad_identity",
            f"identity of {size} bytes; at most {MAX_IDENTITY_LOOKUP_BYTES} bytes (UTF-8)",
        )
    if "\0" in identity:
        raise ApiError(400, "bad_identity", "identity contains a NUL byte")
    return identity


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system holding ``folder`` (or its nearest parent) allows."""
    for candidate in (folder, *folder.parents):
        try:
            return int(os.pathconf(candidate, "PC_NAME_MAX"))
        except (OSError, ValueError):
            continue
    return DEFAULT_NAME_MAX


def upload_folder_name(identity: str, limit: int = DEFAULT_NAME_MAX) -> str | None:
    """The folder (one path component) an identity's uploads live in; None if it can name none.

    The identity itself when it is a safe name of at most ``limit`` UTF-8 bytes; otherwise its
    longest prefix of at most 64 bytes, ``~`` and 32 hex digits of its SHA-256. Two identities
    sharing a folder would lose nothing (uploads are content-addressed and deleted only when no
    item refers to them), and a hash collision is not a practical concern.
    """
    if (
        not identity
        or identity in (".", "..")
        or identity.startswith(".")
        or _bad_characters(identity)
    ):
        return None
    encoded = identity.encode("utf-8")
    if len(encoded) <= limit:
        return identity
    prefix = encoded[: min(_HASHED_PREFIX_BYTES, max(limit - 33, 0))].decode("utf-8", "ignore")
    return f"{prefix}~{hashlib.sha256(encoded).hexdigest()[:32]}"
