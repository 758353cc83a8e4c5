"""The portal's app: the stations' API (imager.portal.api), the public pages
(imager.portal.web) and the donors' and coordinators' pages (imager.portal.account_web),
nothing of the station's (no agent, technician or bench route:
tests/test_portal_routes.py compares the route tables)."""

# No `from __future__ import annotations`: FastAPI reads live annotations.
from dataclasses import dataclass, field

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from imager import __version__
from imager.certify.signing import Trust
from imager.portal import account_web, api, messages_api, web
from imager.portal.db import PortalDb
from imager.portal.lookup import PublicLookup
from imager.portal.messages import MessagePolicy
from imager.portal.receive import Receiver
from imager.web.limits import BodyLimit
from imager.web.verify import DEFAULT_PATH


@dataclass
class Portal:
    """What the portal serves from: its database and the network CA it trusts (the
    only certificate it needs: it holds no key)."""

    db: PortalDb
    trust: Trust
    verify_path: str = DEFAULT_PATH
    login_tries: int = account_web.LOGIN_TRIES      # sign-ins per address and window
    messages: MessagePolicy = field(default_factory=MessagePolicy)   # beneficiaries'
    receiver: Receiver = field(init=False)
    lookup: PublicLookup = field(init=False)

    def __post_init__(self) -> None:
        self.receiver = Receiver(self.db, self.trust)
        self.lookup = PublicLookup(self.db, self.trust)

    def close(self) -> None:
        self.lookup.close()
        self.db.close()


def create_app(portal: Portal) -> FastAPI:
    """The portal's app (no interactive documentation: it would describe the API to
    the whole Internet)."""
    app = FastAPI(title="imager portal", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    app.include_router(api.router(portal.receiver))
    app.include_router(messages_api.router(portal.db, portal.messages))
    web.mount(app, portal.lookup, portal.verify_path)
    account_web.mount(app, portal.db, web.pages, verify_path=portal.verify_path,
                      login_tries=portal.login_tries, keep_days=portal.messages.keep_days)
    app.add_middleware(BodyLimit)
    return app
