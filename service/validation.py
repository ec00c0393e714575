"""Request values checked before they reach SQLite or the file system: ids, identities, folders.

Every length, byte size and integer range a client controls is bounded here, so an odd value is
a JSON 4xx naming the limit, never a 500 from deep inside (an id past SQLite's 64-bit integers,
an identity whose UTF-8 form is longer than a file name may be, a NUL byte in a name).

An identity is stored losslessly in the gallery's item table; the gallery derives the folder its
uploads are kept in from it (a long one gets a hashed folder name), so any identity up to 128
characters without the characters no folder name may hold can be added.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam

from siamese.index import unusable_characters
from siamese.service.errors import ApiError

#: SQLite integers (and FAISS ids) are signed 64-bit: no item id is larger.
MAX_ITEM_ID = 2**63 - 1
#: Identities added over HTTP are 1 to this many characters (after stripping spaces).
MAX_IDENTITY_CHARS = 128
#: Longest identity looked up (DELETE ?identity=) in UTF-8 bytes; no stored one can be longer.
MAX_IDENTITY_LOOKUP_BYTES = 4 * 1024

ItemId = Annotated[int, PathParam(ge=0, le=MAX_ITEM_ID, description="Item id (0 to 2^63 - 1).")]


def check_identity(identity: str) -> str:
    """The identity to add items under, stripped; else 400 naming the rule it breaks."""
    identity = identity.strip()
    problem = unusable_characters(identity)
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
    """An identity to look up (remove): any stored name may be asked, but bounded and encodable."""
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
