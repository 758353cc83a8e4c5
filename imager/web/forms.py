"""What the station's and the portal's signed-in pages share: form tokens (CSRF),
cookies, and where to go back after signing in.

Every form of a signed-in page carries its session's token, checked before the
form is read further (`form_of`). A sign-in form, sent before any session exists,
carries a token that must equal a cookie set with the form (double submit). Cookies
are HttpOnly and SameSite=Lax, and Secure whenever the page came over HTTPS.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response


class Forbidden(Exception):
    """A form without its token, or an action the person may not do (403)."""

    def __init__(self, why: str) -> None:
        self.why = why


async def form_of(request: Request, expected: str | None) -> dict[str, str]:
    """The request's form, once its token equals `expected` (Forbidden otherwise)."""
    form = await request.form()
    sent = form.get("csrf")
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        raise Forbidden("jeton de formulaire manquant ou périmé / form token missing or "
                        "stale: reload the page and send the form again")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def set_cookie(response: Response, request: Request, name: str, value: str,
               **kw: Any) -> None:
    """A cookie scripts cannot read, sent back by same-site navigations only, and over
    HTTPS only when the page came over HTTPS."""
    response.set_cookie(name, value, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", **kw)


def safe_next(path: str | None) -> str | None:
    """A local path to go back to after signing in (never another site)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return quote(path, safe="/?=&-_.")
    return None
