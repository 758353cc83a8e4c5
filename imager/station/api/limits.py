"""What a request may weigh: read before anything of it is (an unauthenticated
client on the LAN must not make the station hold gigabytes to hash them).

Every request body must say its length (agents and browsers do); one longer than
MAX_BODY is answered 413 without being read, one without a length 411.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_BODY = 64 << 20        # 500 events with their tools' outputs fit many times over

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware refusing bodies without a length or longer than `limit`."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await _answer(send, *refusal)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        if length is None:
            if headers.get(b"transfer-encoding") is None:
                return None                      # no body at all
            return 411, ("requête sans longueur / request without a length: send the body "
                         "with a Content-Length header")
        try:
            size = int(length)
        except ValueError:
            return 400, f"Content-Length {length.decode('latin-1')!r} is not a number"
        if size > self.limit:
            return 413, (f"requête trop grande / request too large: {size} bytes, at most "
                         f"{self.limit}; send fewer events at once")
        return None


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
