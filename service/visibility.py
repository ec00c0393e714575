"""What an answer may show a client: server paths are the operator's business.

Anonymous clients get item ids, identities and thumbnail URLs; the absolute paths of gallery
files, of the gallery and of the model only go to a client that sends the API key, or to every
client when the service runs with ``--expose-paths``.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from siamese.service.access import key_matches
from siamese.service.config import ServiceConfig


def may_see_paths(config: ServiceConfig, x_api_key: str | None, authorization: str | None) -> bool:
    """True with ``expose_paths``, or when the service has a key and the request offers it."""
    return config.expose_paths or key_matches(config, x_api_key, authorization)


def thumbnail_url(item_id: int) -> str:
    """The URL of an item's picture (the service reads the file, the client never names it)."""
    return f"/v1/items/{item_id}/image"


def present_item(item: dict[str, Any], show_paths: bool) -> dict[str, Any]:
    """An item-like dict (match, identity match, added item) with its thumbnail URL.

    Its path is kept only where ``show_paths`` allows.
    """
    shown = {key: value for key, value in item.items() if show_paths or key != "path"}
    shown["thumbnail"] = thumbnail_url(int(item["id"]))
    return shown


def present_result(result: dict[str, Any], show_paths: bool) -> dict[str, Any]:
    """A query result (``QueryResult.to_dict()``) as a client may see it."""
    return {
        **result,
        "matches": [present_item(m, show_paths) for m in result["matches"]],
        "identities": [present_item(i, show_paths) for i in result["identities"]],
    }


def present_failures(failures: list[dict[str, Any]], show_paths: bool) -> list[dict[str, Any]]:
    """Write failures name stored files; anonymous clients see the file name only."""
    if show_paths:
        return failures
    return [{**f, "name": PurePath(str(f["name"])).name} for f in failures]


def present_info(info: dict[str, Any], show_paths: bool) -> dict[str, Any]:
    """Gallery facts: the gallery folder's and model file's names instead of their paths."""
    if show_paths:
        return info
    model = {**info["model"], "path": PurePath(info["model"]["path"]).name}
    return {**info, "gallery": PurePath(info["gallery"]).name, "model": model}
