"""One pymilvus client per Milvus URI in a process, and Milvus errors turned into gallery errors.

Milvus Lite serves a file to one process; within it, the service's reader and writer, and a
build's checks, share a client rather than open the file twice. pymilvus logs every failed call
with a traceback before raising; the CLI reports one line instead, so its logger stays quiet.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from siamese.core.errors import GalleryError
from siamese.index.location import TOKEN_VARIABLE, MilvusLocation

_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()
#: Seconds to wait for a server before saying it cannot be reached.
CONNECT_TIMEOUT_S = 10.0

T = TypeVar("T")


def client(location: MilvusLocation) -> Any:
    """The process's ``MilvusClient`` for ``location``'s URI (connected on first use).

    Raises:
        GalleryError: pymilvus (or, for a ``.db`` file, milvus-lite) is not installed, the
            server cannot be reached, or the Lite file cannot be opened.
    """
    key = (location.uri, location.token)
    with _lock:
        if key in _clients:
            return _clients[key]
        try:  # the extra, imported when a Milvus gallery is first used (it takes a second or two)
            milvus_client = importlib.import_module("pymilvus").MilvusClient
        except ImportError:
            raise GalleryError(
                f"{location}: Milvus galleries need pymilvus and milvus-lite; install them with "
                "`pip install 'siamese[milvus]'`"
            ) from None
        for noisy in ("pymilvus", "milvus_lite.server_manager"):  # tracebacks before raising
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
        if location.lite and not Path(location.uri).parent.is_dir():
            raise GalleryError(f"{location}: folder {Path(location.uri).parent} not found")
        options: dict[str, Any] = {} if location.lite else {"timeout": CONNECT_TIMEOUT_S}
        if location.token:
            options["token"] = location.token
        with milvus_errors(location, "connect"):
            _clients[key] = milvus_client(location.uri, **options)
        return _clients[key]


def forget(location: MilvusLocation) -> None:
    """Close and drop the process's client for ``location`` (tests; a server gone away)."""
    with _lock:
        found = _clients.pop((location.uri, location.token), None)
    if found is not None:
        with contextlib.suppress(Exception):  # closing a broken connection has nothing to say
            found.close()


@contextmanager
def milvus_errors(location: MilvusLocation, doing: str) -> Iterator[None]:
    """Turn a pymilvus exception raised while ``doing`` into one GalleryError line."""
    try:
        yield
    except GalleryError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in {"pymilvus", "milvus_lite", "grpc"}:
            raise
        message = getattr(exc, "message", None) or str(exc)
        hint = ""
        if doing == "connect" and location.lite:
            hint = (
                "; Milvus Lite serves a file to one process at a time: is another (a build, "
                "`siamese serve`) using it?"
            )
        elif "connect" in message.lower() and not location.lite:
            hint = f"; is the server running? (a token, if it needs one, goes in {TOKEN_VARIABLE})"
        raise GalleryError(f"{location}: Milvus could not {doing}: {message}{hint}") from None


def call(location: MilvusLocation, doing: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``fn(*args, **kw)`` with Milvus errors reported as GalleryError (see milvus_errors)."""
    with milvus_errors(location, doing):
        return fn(*args, **kw)
