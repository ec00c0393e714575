"""Request-size limit as ASGI middleware: an oversized body gets 413 before it fills memory.

A declared Content-Length over the limit is refused before anything is read; a body that grows
past the limit while streaming (chunked uploads) stops being read at the limit and gets 413 too,
whatever the multipart parser would have made of the cut-off body.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from siamese.service.errors import error_body


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with a JSON 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, declared: int | None = None) -> None:
        size = f" of {declared / 2**20:.1f} MiB" if declared is not None else ""
        message = (
            f"request body{size} exceeds the {self.max_bytes / 2**20:g} MiB limit; "
            "send smaller or fewer images"
        )
        body = json.dumps(error_body("upload_too_large", message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        state: dict[str, Any] = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["exceeded"] = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:
                return  # whatever the app answers to a cut-off body, the client hears 413
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        if state["exceeded"] and not state["started"]:
            await self._refuse(send)
