"""The portal's door for the beneficiaries' messages (imager.portal.messages): one
route, MESSAGES_PATH, which the laptops' welcome page posts to."""

# No `from __future__ import annotations`: FastAPI reads live annotations.
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from imager.portal.db import PortalDb
from imager.portal.messages import MESSAGES_PATH, Answer, Inbox, MessagePolicy


def _json(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, answer.status, headers=dict(answer.headers))


def router(db: PortalDb, policy: MessagePolicy | None = None) -> APIRouter:
    inbox = Inbox(db, policy)
    api = APIRouter()

    @api.post(MESSAGES_PATH)
    async def message(request: Request) -> Response:
        # The address serves the rate limit, in memory only: it is never stored.
        refused = inbox.admit(request.client.host if request.client else "-") \
            or inbox.too_large(request.headers.get("content-length"))
        if refused is not None:
            return _json(refused)
        body = await request.body()
        return _json(await run_in_threadpool(
            inbox.receive, body, content_type=request.headers.get("content-type"),
            key=request.headers.get("idempotency-key")))

    return api
