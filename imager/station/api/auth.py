"""Who is calling: an agent (a request signed with its own key), an operator
(the technicians' tools, bearer token), or either of them (the image store)."""

# No `from __future__ import annotations`: FastAPI reads these dependencies'
# parameters from their live annotations.
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, HTTPException, Request

from imager.protocol.proof import KEY
from imager.station.identity import Forbidden
from imager.station.identity import Request as Signed
from imager.station.service import Station


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer TOKEN` header (401 without one)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "jeton manquant / missing token: send "
                                 "'Authorization: Bearer TOKEN'")
    return authorization.removeprefix("Bearer ").strip()


async def signed(request: Request) -> Signed:
    """The request as its signature covers it: headers, method, path and query, body."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    target = (raw_path + (b"?" + query if query else b"")).decode("latin-1")
    return Signed({k.lower(): v for k, v in request.headers.items()}, request.method,
                  target, await request.body())


def refusal(exc: PermissionError) -> HTTPException:
    """403 for a known agent that may not, 401 for no valid proof."""
    return HTTPException(403 if isinstance(exc, Forbidden) else 401, str(exc))


def agent_check(station: Station, *, pending_ok: bool = False
                ) -> Callable[..., Awaitable[int]]:
    """A dependency giving the id of the agent whose key signed the request."""
    async def agent(request: Request) -> int:
        try:
            return station.auth.authenticate(await signed(request), pending_ok=pending_ok)
        except PermissionError as exc:
            raise refusal(exc) from exc
    return agent


def operator_check(station: Station) -> Callable[..., None]:
    """A dependency letting only the operator token through."""
    def operator(authorization: Annotated[str | None, Header()] = None) -> None:
        if not station.tokens.is_operator(bearer(authorization)):
            raise HTTPException(401, "jeton opérateur invalide / wrong operator token: see "
                                     f"{station.tokens.path(station.settings)}")
    return operator


def reader_check(station: Station) -> Callable[..., Awaitable[None]]:
    """A dependency letting agents and operators through (both read the image store)."""
    async def reader(request: Request,
                     authorization: Annotated[str | None, Header()] = None) -> None:
        if KEY.lower() in {k.lower() for k in request.headers}:
            try:
                station.auth.authenticate(await signed(request))
            except PermissionError as exc:
                raise refusal(exc) from exc
            return
        if not station.tokens.is_operator(bearer(authorization)):
            raise HTTPException(401, "jeton opérateur invalide / wrong operator token, or "
                                     "sign the request as an agent")
    return reader
