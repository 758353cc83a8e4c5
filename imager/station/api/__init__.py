"""The station's HTTP API (FastAPI), one router per audience: agents
(imager.station.api.agents), technicians' tools (technicians), the image store
(images). Every error is JSON `{"error": "..."}` naming the thing and the fix;
a request that does not fit its model (an event of an unknown kind, a missing
field) is answered 422 with the field named.

The interactive documentation (/docs, /redoc, /openapi.json) describes every
route to whoever reaches the port: it is served only when asked for
(`imager serve --api-docs`).
"""

# No `from __future__ import annotations`: FastAPI reads live annotations.
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from imager import __version__
from imager.errors import ImagerError, NotFound, NotYet
from imager.protocol.events import describe_errors
from imager.station import web
from imager.station.api import agents, images, technicians
from imager.station.service import Station
from imager.web.limits import BodyLimit


def create_app(station: Station, *, docs: bool = False) -> FastAPI:
    """The station's API; `docs`: also serve its interactive documentation."""
    app = FastAPI(title="imager station", version=__version__,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)

    @app.exception_handler(ImagerError)
    async def imager_error(_request: Request, exc: ImagerError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, NotYet) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return JSONResponse({"error": f"requête refusée / request refused: "
                                      f"{describe_errors(errors)}",
                             "detail": jsonable_encoder(_without_input(errors))},
                            status_code=422)

    @app.get("/api/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    app.include_router(agents.router(station))
    app.include_router(images.router(station))
    app.include_router(technicians.router(station))
    web.mount(app, station)
    app.add_middleware(BodyLimit)
    return app


def _without_input(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the input echoed back (it may be large)."""
    return [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors]
