"""Where a gallery lives: a folder on this machine, or a Milvus collection.

``--gallery`` takes either. ``milvus://HOST:PORT/COLLECTION`` names a collection on a Milvus
server or cluster (its token, if the server wants one, comes from ``SIAMESE_MILVUS_TOKEN`` so it
never appears in a command line or a process list); ``milvus-lite:PATH.db[/COLLECTION]`` an
embedded Milvus Lite file (collection ``gallery`` unless named). Anything else is a folder.
Only text is parsed here, so callers can tell the kinds apart without importing pymilvus.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from siamese.core.errors import GalleryError

#: Environment variable holding the Milvus server's token ("user:password" or an API key).
TOKEN_VARIABLE = "SIAMESE_MILVUS_TOKEN"
#: The collection of a Milvus Lite file when the location names none.
DEFAULT_COLLECTION = "gallery"

# A Path built from "milvus://h:p/c" collapses the double slash: accept one or more.
_SERVER = re.compile(r"^milvus(?P<tls>s?):/+(?P<host>[\w.\-\[\]:]+)/(?P<collection>[^/]*)/?$")
_LITE = re.compile(r"^milvus-lite:(?P<path>.+?\.db)(?:/(?P<collection>[^/]*))?/?$")
_COLLECTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


@dataclass(frozen=True)
class MilvusLocation:
    """A gallery held as one Milvus collection.

    Attributes:
        text: the location as the user wrote it (how errors and reports name the gallery).
        uri: what ``pymilvus.MilvusClient`` connects to: ``http://HOST:PORT`` or a Lite file.
        collection: the collection holding the gallery's items.
        lite: an embedded Milvus Lite file rather than a server.
    """

    text: str
    uri: str
    collection: str
    lite: bool
    token: str = field(default="", repr=False, compare=False)

    def __str__(self) -> str:
        return self.text


def is_milvus(location: object) -> bool:
    """Whether ``location`` (a str, Path or MilvusLocation) names a Milvus collection."""
    if isinstance(location, MilvusLocation):
        return True
    text = os.fspath(location) if isinstance(location, (str, os.PathLike)) else ""
    return isinstance(text, str) and text.startswith(("milvus:", "milvuss:", "milvus-lite:"))


def parse_location(location: str | os.PathLike[str] | MilvusLocation) -> Path | MilvusLocation:
    """A folder's Path, or the Milvus collection ``location`` names.

    Raises:
        GalleryError: a ``milvus…:`` location that is malformed (no host, no ``.db`` file, a
            collection name Milvus refuses).
    """
    if isinstance(location, MilvusLocation):
        return location
    if not is_milvus(location):
        return Path(location)
    text = os.fspath(location)
    if not text.isprintable():
        raise GalleryError(f"{text!r}: a Milvus location cannot hold control characters")
    server, lite = _SERVER.match(text), _LITE.match(text)
    if server:
        scheme = "https" if server["tls"] else "http"
        host, collection = server["host"], server["collection"]
        uri = f"{scheme}://{host}" if ":" in host else f"{scheme}://{host}:19530"
        shown = f"milvus{server['tls']}://{host}/{collection}"
        token = os.environ.get(TOKEN_VARIABLE, "")
        return MilvusLocation(shown, uri, _collection(text, collection), False, token)
    if lite:
        path = Path(lite["path"]).expanduser().absolute()
        collection = lite["collection"] or DEFAULT_COLLECTION
        return MilvusLocation(text, str(path), _collection(text, collection), True)
    raise GalleryError(
        f"{text}: not a Milvus location; write milvus://HOST:PORT/COLLECTION for a server "
        "or milvus-lite:PATH.db[/COLLECTION] for a Milvus Lite file"
    )


def _collection(text: str, name: str) -> str:
    if not _COLLECTION.match(name):
        raise GalleryError(
            f"{text}: collection name {name!r} is not usable in Milvus; use letters, digits and "
            "underscores, starting with a letter or underscore"
        )
    return name
