"""Signing in to the web pages: sessions, form tokens, the setup link, the PIN switch.

Every page but the sign-in, the setup link and the public verification needs a
session; every form carries the session's token (CSRF), checked before the
form is read further. The sign-in form, sent before any session exists,
carries a token that must equal a cookie set with the form (double submit).
Sign-ins are limited per address (LOGIN_TRIES per LOGIN_WINDOW seconds) on top
of the per-user lock of imager.registry.accounts.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from imager.errors import UsageError
from imager.registry import accounts
from imager.registry.accounts import Person
from imager.registry.habilitations import ACTIONS, Habilitations
from imager.station.service import Station
from imager.station.web.i18n import N_
from imager.station.web.pages import render
from imager.web.forms import Forbidden as Forbidden
from imager.web.forms import form_of
from imager.web.forms import safe_next as _safe
from imager.web.forms import set_cookie as _cookie
from imager.web.limits import Limiter

SESSION_COOKIE = "imager_session"
FORM_COOKIE = "imager_form"
LOGIN_TRIES = 30           # a workshop's tablets may share one address
LOGIN_WINDOW = 300.0


class LoginNeeded(Exception):
    """No session: the page sends the browser to the sign-in page."""

    def __init__(self, path: str) -> None:
        self.path = path


def require(habilitations: Habilitations, person: Person, action: str) -> None:
    """Forbidden (403) unless `person`'s habilitation level allows `action`."""
    if not habilitations.allows(person.level, action):
        fr, en = ACTIONS[action][1:]
        raise Forbidden(f"habilitation insuffisante / not habilitated: « {fr} » demande le "
                        f"niveau {habilitations.needed[action]}, {person.name} a le niveau "
                        f"{person.level} / '{en}' needs level {habilitations.needed[action]}: "
                        "ask a supervisor")


def require_role(person: Person, *roles: str) -> None:
    """Forbidden (403) unless `person` has one of `roles`."""
    if person.role not in roles:
        raise Forbidden(f"réservé à / for: {', '.join(roles)} only ({person.name} is "
                        f"{person.role})")


def person_of(station: Station, request: Request) -> Person | None:
    with station.registry.session() as s:
        return accounts.session_for(s, request.cookies.get(SESSION_COOKIE))


def signed_in(station: Station, request: Request) -> Person:
    """The person of the request's session, or LoginNeeded."""
    person = person_of(station, request)
    if person is None:
        raise LoginNeeded(request.url.path)
    return person


async def posted(station: Station, request: Request, *,
                 habilitations: Habilitations | None = None, action: str | None = None,
                 roles: tuple[str, ...] = ()) -> tuple[Person, dict[str, str]]:
    """A form sent by a signed-in person: who, and the form, once its token holds and
    the person has the habilitation for `action` and one of `roles` (when given)."""
    person = signed_in(station, request)
    form = await form_of(request, person.csrf)
    if habilitations is not None and action is not None:
        require(habilitations, person, action)
    if roles:
        require_role(person, *roles)
    return person, form


def router(station: Station) -> APIRouter:
    web = APIRouter()
    limiter = Limiter(LOGIN_TRIES, LOGIN_WINDOW)

    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", {"csrf": token, "error": error,
                                                  "next": _safe(request.query_params.get(
                                                      "next"))}, status=status)
        _cookie(response, request, FORM_COOKIE, token, max_age=3600)
        return response

    @web.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        return RedirectResponse("/board" if person_of(station, request) else "/login", 303)

    @web.get("/login", include_in_schema=False)
    def login(request: Request) -> Response:
        return login_page(request)

    @web.post("/login", include_in_schema=False)
    async def do_login(request: Request) -> Response:
        form = await form_of(request, request.cookies.get(FORM_COOKIE))
        if not limiter.allow(request.client.host if request.client else "?"):
            return login_page(request, N_("Too many attempts from this computer: wait a few "
                                          "minutes."), 429)
        with station.registry.session() as s:
            signed = accounts.sign_in(s, form.get("login", ""), form.get("password", ""))
        if isinstance(signed, str):
            return login_page(request, signed, 401)
        token, _ = signed
        response = RedirectResponse(_safe(form.get("next")) or "/board", 303)
        _cookie(response, request, SESSION_COOKIE, token,
                max_age=accounts.SESSION_HOURS * 3600)
        response.delete_cookie(FORM_COOKIE)
        return response

    @web.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        person = signed_in(station, request)
        await form_of(request, person.csrf)
        with station.registry.session() as s:
            accounts.sign_out(s, person)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @web.get("/switch", include_in_schema=False)
    def switch_page(request: Request) -> Response:
        person = signed_in(station, request)
        return render(request, "switch.html", {"csrf": person.csrf}, person=person)

    @web.post("/switch", include_in_schema=False)
    async def do_switch(request: Request) -> Response:
        person = signed_in(station, request)
        form = await form_of(request, person.csrf)
        if not limiter.allow(f"pin:{person.session}"):
            raise Forbidden("trop d'essais / too many attempts: wait a few minutes")
        try:
            with station.registry.session() as s:
                accounts.switch(s, person, form.get("login", ""), form.get("pin", ""))
        except PermissionError as exc:
            return render(request, "switch.html", {"csrf": person.csrf, "error": str(exc)},
                          person=person, status=401)
        return RedirectResponse("/board", 303)

    @web.get("/setup", include_in_schema=False)
    def setup_page(request: Request, token: str = "") -> Response:
        with station.registry.session(readonly=True) as s:
            valid = accounts.setup_valid(s, token)
        if not valid:
            return render(request, "message.html", {"title": N_("Setup link not valid"),
                                                    "text": _SETUP_VOID}, status=404)
        return render(request, "setup.html", {"token": token, "csrf": token})

    @web.post("/setup", include_in_schema=False)
    async def do_setup(request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", ""))
        values = {k: str(form.get(k, "")) for k in ("login", "name", "password")}
        try:
            with station.registry.session() as s:
                accounts.complete_setup(s, token, **values)
        except PermissionError:
            return render(request, "message.html", {"title": N_("Setup link not valid"),
                                                    "text": _SETUP_VOID}, status=404)
        except UsageError as exc:
            return render(request, "setup.html", {"token": token, "csrf": token,
                                                  "error": str(exc), **values}, status=400)
        return RedirectResponse("/login", 303)

    return web


_SETUP_VOID = N_("This setup link is unknown, used or expired. Restart the station: it "
                 "prints a new one while no coordinator exists.")

