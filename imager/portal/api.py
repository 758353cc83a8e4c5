"""The portal's API for the stations (imager.protocol.push): their state, their
pushes, and a health check. Every answer is JSON; a refusal is
`{"error": "...", "reason": "..."}` with the status Receiver gives (401 unsigned, 403
not a station of the network or another station's documents, 409 a ledger that
forks or goes backwards, 422 a malformed push or a document that does not verify)."""

# No `from __future__ import annotations`: FastAPI reads live annotations.
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from imager import __version__
from imager.portal.receive import Caller, Receiver, Refused
from imager.protocol.push import HEALTH_PATH, PUSH_PATH, STATE_PATH, Signed


def _refusal(exc: Refused) -> JSONResponse:
    return JSONResponse({"error": str(exc), "reason": exc.reason}, exc.status)


async def _caller(receiver: Receiver, request: Request) -> tuple[Caller, bytes]:
    """The station that signed `request` (Refused otherwise), and the body it signed."""
    body = await request.body()
    path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    target = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    headers = {k.lower(): v for k, v in request.headers.items()}
    caller = await run_in_threadpool(receiver.authenticate, headers, request.method, target,
                                     body)
    return caller, body


def router(receiver: Receiver) -> APIRouter:
    api = APIRouter()

    @api.get(HEALTH_PATH)
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "role": "portal"}

    @api.post(STATE_PATH)
    async def state(request: Request) -> Response:
        try:
            caller, body = await _caller(receiver, request)
            Signed.model_validate_json(body)
        except Refused as exc:
            return _refusal(exc)
        except ValidationError as exc:
            return _refusal(Refused("format", f"requête mal formée / malformed request: {exc}",
                                    422))
        return JSONResponse(await run_in_threadpool(receiver.state, caller))

    @api.post(PUSH_PATH)
    async def push(request: Request) -> Response:
        address = request.client.host if request.client else None
        try:
            caller, body = await _caller(receiver, request)
            stored = await run_in_threadpool(receiver.push, caller, body, address)
        except Refused as exc:
            return _refusal(exc)
        return JSONResponse(stored.to_dict())

    return api
