"""What a request may weigh, and how often one address may ask.

- BodyLimit: a body is weighed before anything of it is read (an unauthenticated
  client on the LAN, or on the Internet for the portal, must not make the server
  hold gigabytes to hash them). Every request body must say its length (agents,
  stations and browsers do); one longer than MAX_BODY is answered 413 without
  being read, one without a length 411.
- Limiter: at most so many attempts per window from one address (sign-ins, public
  verifications).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
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


class Limiter:
    """At most `tries` attempts per `window` seconds from one address."""

    def __init__(self, tries: int, window: float) -> None:
        self.tries, self.window = tries, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and now - seen[0] > self.window:
                seen.popleft()
            if len(seen) >= self.tries:
                return False
            seen.append(now)
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v}
            return True
