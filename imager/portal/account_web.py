"""The donors' and coordinators' pages of the portal (imager.portal.accounts,
imager.portal.donors), server-rendered, French first, every page also in JSON
(Accept: application/json, or ?format=json).

- /compte/connexion: sign in (double-submit form token; LOGIN_TRIES per address and
  per LOGIN_WINDOW seconds, on top of the per-account lock); /compte/deconnexion.
- /compte/invitation/<token>: the invited person chooses a login and a password.
- /compte: the account's donations from every workshop; /compte/dons/<id>: one
  donation (drives, documents, expected versus received), its downloads under it.
  A donation or a document the account may not see answers 404, exactly as one that
  does not exist (HTML, JSON and downloads alike).
- /compte/verifier-hors-ligne: how to check the documents without the portal.
- /compte/coordination: the coordinators' page (accounts, invitations);
  /compte/coordination/messages: the beneficiaries' messages (imager.portal.messages),
  marked read by a coordinator.

Every form carries the session's token (imager.web.forms); every answer is
`Cache-Control: no-store`, never framed, and sends no Referer (the invitation's token
is in its URL).
"""

# No `from __future__ import annotations`: FastAPI reads live annotations.
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from imager.errors import NotFound, UsageError
from imager.portal import accounts, messages
from imager.portal import models as m
from imager.portal.accounts import Who
from imager.portal.db import PortalDb
from imager.portal.donors import (
    KINDS,
    MATCHES,
    STATES,
    Donations,
    assets_csv,
    parse_assets,
)
from imager.store.passwords import new_token
from imager.web.forms import Forbidden, form_of, safe_next, set_cookie
from imager.web.i18n import N_
from imager.web.limits import Limiter
from imager.web.pages import Pages, language
from imager.web.verify import wants_json

SESSION_COOKIE = "portail_session"
FORM_COOKIE = "portail_form"
LOGIN_TRIES = 20            # per address: a town hall's offices may share one
LOGIN_WINDOW = 300.0
HOME = "/compte"
LOGIN = "/compte/connexion"
MESSAGES_SHOWN = 200        # the latest messages the coordinators' page lists
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "X-Robots-Tag": "noindex"}
_TYPES = {"pdf": "application/pdf", "json": "application/json",
          "csv": "text/csv; charset=utf-8"}
NOT_FOUND = N_("This page does not exist, or your account cannot see it.")
INVITATION_VOID = N_("This invitation link is unknown, already used or expired. Ask the "
                     "coordination of the network for a new one.")


class LoginNeeded(Exception):
    def __init__(self, path: str) -> None:
        self.path = path


class NotVisible(Exception):
    """A donation or a document that does not exist or the account may not see: 404."""


def _json(request: Request) -> bool:
    return request.query_params.get("format") == "json" or wants_json(
        request.headers.get("accept", ""))


def _number(text: str) -> int:
    """A donation's or an account's number in a URL; anything else is a page that does
    not exist."""
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise NotVisible(text)
    return int(text)


def _secured(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


class AccountPages:
    """The account pages of one portal (its database, its templates)."""

    def __init__(self, db: PortalDb, pages: Pages, *, verify_path: str,
                 login_tries: int = LOGIN_TRIES, keep_days: int = 90) -> None:
        self.db, self.pages, self.verify_path = db, pages, verify_path
        self.keep_days = keep_days                   # the messages' retention, said
        self.limiter = Limiter(login_tries, LOGIN_WINDOW)

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None,
               *, who: Who | None = None, status: int = 200) -> Response:
        return _secured(self.pages.render(request, name, {"who": who, "path": self.verify_path,
                                                           **(context or {})},
                                          status=status))

    def who(self, request: Request) -> Who | None:
        with self.db.session() as s:
            return accounts.session_for(s, request.cookies.get(SESSION_COOKIE))

    def signed_in(self, request: Request) -> Who:
        who = self.who(request)
        if who is None:
            raise LoginNeeded(request.url.path)
        return who

    def login_page(self, request: Request, error: str | None = None,
                   status: int = 200) -> Response:
        token = new_token(24)
        response = self.render(request, "login.html", {
            "csrf": token, "error": error,
            "next": safe_next(request.query_params.get("next"))}, status=status)
        set_cookie(response, request, FORM_COOKIE, token, max_age=3600)
        return response

    def message(self, request: Request, title: str, text: str, status: int,
                who: Who | None = None) -> Response:
        if _json(request):
            return _secured(JSONResponse({"error": title}, status))
        return self.render(request, "message.html", {"title": title, "text": text},
                           who=who, status=status)


def _download(data: bytes, name: str, media: str) -> Response:
    return _secured(Response(data, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Content-Type-Options": "nosniff"}))


def router(ap: AccountPages) -> APIRouter:
    web = APIRouter()
    _sign_in_routes(web, ap)
    _donor_routes(web, ap)
    _coordinator_routes(web, ap)
    return web


def _sign_in_routes(web: APIRouter, ap: AccountPages) -> None:
    @web.get(LOGIN, include_in_schema=False)
    def login(request: Request) -> Response:
        if ap.who(request) is not None:
            return RedirectResponse(HOME, 303)
        return ap.login_page(request)

    @web.post(LOGIN, include_in_schema=False)
    async def do_login(request: Request) -> Response:
        form = await form_of(request, request.cookies.get(FORM_COOKIE))
        address = request.client.host if request.client else "?"
        if not ap.limiter.allow(address):
            return ap.login_page(request, N_("Too many attempts from this computer: wait a "
                                             "few minutes."), 429)

        def check() -> tuple[str, Who] | str:
            with ap.db.session() as s:
                return accounts.sign_in(s, form.get("login", ""), form.get("password", ""))
        signed = await run_in_threadpool(check)
        if isinstance(signed, str):
            locked = signed.startswith("compte bloqué")
            return ap.login_page(request, N_("This account is locked after too many wrong "
                                             "passwords: try again in 15 minutes.") if locked
                                 else N_("Wrong login or password."), 401)
        response = RedirectResponse(safe_next(form.get("next")) or HOME, 303)
        set_cookie(response, request, SESSION_COOKIE, signed[0],
                   max_age=accounts.SESSION_HOURS * 3600)
        response.delete_cookie(FORM_COOKIE)
        return _secured(response)

    @web.post("/compte/deconnexion", include_in_schema=False)
    async def logout(request: Request) -> Response:
        who = ap.signed_in(request)
        await form_of(request, who.csrf)
        with ap.db.session() as s:
            accounts.sign_out(s, who)
        response = RedirectResponse(LOGIN, 303)
        response.delete_cookie(SESSION_COOKIE)
        return _secured(response)

    @web.get(accounts.INVITATION_PATH + "{token}", include_in_schema=False)
    def invitation(request: Request, token: str) -> Response:
        with ap.db.session(readonly=True) as s:
            account = accounts.invitation(s, token)
            if account is None:
                return ap.message(request, N_("Invitation link not valid"), INVITATION_VOID,
                                  404)
            return ap.render(request, "invitation.html", _invited(token, account))

    @web.post(accounts.INVITATION_PATH + "{token}", include_in_schema=False)
    async def do_invitation(request: Request, token: str) -> Response:
        form = await request.form()
        login, password = str(form.get("login", "")), str(form.get("password", ""))
        address = request.client.host if request.client else "?"
        if not ap.limiter.allow(address):
            return ap.message(request, N_("Too many attempts"), N_(
                "Too many attempts from this computer: wait a few minutes."), 429)
        try:
            with ap.db.session() as s:
                name = accounts.accept(s, token, login=login, password=password).name
        except PermissionError:
            return ap.message(request, N_("Invitation link not valid"), INVITATION_VOID, 404)
        except UsageError as exc:
            with ap.db.session(readonly=True) as s:
                account = accounts.invitation(s, token)
                if account is None:
                    return ap.message(request, N_("Invitation link not valid"),
                                      INVITATION_VOID, 404)
                return ap.render(request, "invitation.html", {
                    **_invited(token, account), "login": login, "error": str(exc)},
                    status=400)
        return ap.render(request, "message.html", {
            "title": N_("Your account is ready"), "name": name, "login_link": True,
            "text": N_("You can now sign in with the login and the password you chose.")})


def _invited(token: str, account: m.Account) -> dict[str, Any]:
    """The invitation page's context: a first set-up, or a new password (an account
    already set up, whose coordinator made a new link)."""
    return {"token": token, "name": account.name, "login": account.login or "",
            "renew": account.set_up_at is not None}


def _donor_routes(web: APIRouter, ap: AccountPages) -> None:
    def seen(request: Request, donation_id: str,
             look: Callable[[Donations, int], Any]) -> tuple[Who, Any]:
        who = ap.signed_in(request)
        number = _number(donation_id)
        with ap.db.session(readonly=True) as s:
            found = look(Donations(s, who.account_id), number)
            if found is None:
                raise NotVisible(donation_id)
            return who, found

    @web.get(HOME, include_in_schema=False)
    def home(request: Request) -> Response:
        who = ap.signed_in(request)
        with ap.db.session(readonly=True) as s:
            found = Donations(s, who.account_id).all()
        if _json(request):
            return _secured(JSONResponse({"account": who.name,
                                          "donations": [d.to_dict() for d in found]}))
        return ap.render(request, "donations.html", {"donations": found}, who=who)

    @web.get("/compte/dons/{donation_id}", include_in_schema=False)
    def donation(request: Request, donation_id: str) -> Response:
        who, view = seen(request, donation_id, lambda d, n: d.get(n))
        if _json(request):
            return _secured(JSONResponse(view.to_dict()))
        return ap.render(request, "donation.html", {
            "view": view, "states": STATES, "kinds": KINDS, "matches": MATCHES,
            "csrf": who.csrf, "saved": request.query_params.get("enregistre")}, who=who)

    @web.post("/compte/dons/{donation_id}/attendus", include_in_schema=False)
    async def assets(request: Request, donation_id: str) -> Response:
        who = ap.signed_in(request)
        form = await form_of(request, who.csrf)
        try:
            items = parse_assets(form.get("assets", ""))
        except UsageError as exc:
            with ap.db.session(readonly=True) as s:
                view = Donations(s, who.account_id).get(_number(donation_id))
            if view is None:
                raise NotVisible(donation_id) from None
            return ap.render(request, "donation.html", {
                "view": view, "states": STATES, "kinds": KINDS, "matches": MATCHES,
                "csrf": who.csrf, "assets_error": str(exc),
                "assets_text": form.get("assets", "")}, who=who, status=400)
        try:
            with ap.db.session() as s:
                Donations(s, who.account_id).set_assets(_number(donation_id), items)
        except LookupError:
            raise NotVisible(donation_id) from None
        return _secured(RedirectResponse(
            f"/compte/dons/{donation_id}?enregistre={len(items)}#attendus", 303))

    @web.get("/compte/dons/{donation_id}/rapprochement.csv", include_in_schema=False)
    def assets_table(request: Request, donation_id: str) -> Response:
        _, view = seen(request, donation_id, lambda d, n: d.get(n))
        gettext = ap.pages.translations(language(request)).gettext
        name = re.sub(r"[^\w.-]", "_", view.summary.reference, flags=re.ASCII)
        return _download(assets_csv(view.assets, gettext), f"rapprochement-{name}.csv",
                         "text/csv; charset=utf-8")

    @web.get("/compte/dons/{donation_id}/documents/{name}", include_in_schema=False)
    def document(request: Request, donation_id: str, name: str) -> Response:
        doc_id, _, ext = name.rpartition(".")
        _, doc = seen(request, donation_id, lambda d, n: d.document(n, doc_id))
        data = {"pdf": doc.pdf, "csv": doc.csv,
                "json": doc.json_text.encode("utf-8")}.get(ext)
        if not data:
            raise NotVisible(donation_id)
        return _download(data, f"{doc_id}.{ext}", _TYPES[ext])

    @web.get("/compte/dons/{donation_id}/certificats-station.pem", include_in_schema=False)
    def certificates(request: Request, donation_id: str) -> Response:
        _, view = seen(request, donation_id, lambda d, n: d.get(n))
        return _download(view.station.certificates.encode(), "certificats-station.pem",
                         "application/x-pem-file")

    @web.get("/compte/dons/{donation_id}/tete-registre.json", include_in_schema=False)
    def ledger_head(request: Request, donation_id: str) -> Response:
        _, view = seen(request, donation_id, lambda d, n: d.get(n))
        if not view.station.head_signed:
            raise NotVisible(donation_id)
        return _download(view.station.head_signed.encode(), "tete-registre.json",
                         "application/json")

    @web.get("/compte/verifier-hors-ligne", include_in_schema=False)
    def offline(request: Request) -> Response:
        return ap.render(request, "offline.html", who=ap.who(request))


def _coordinator_routes(web: APIRouter, ap: AccountPages) -> None:
    def coordinator(request: Request) -> Who:
        who = ap.signed_in(request)
        if who.role != "coordinator":
            raise Forbidden("réservé à la coordination / for the network's coordinators only")
        return who

    def page(request: Request, who: Who, status: int = 200, **context: Any) -> Response:
        with ap.db.session(readonly=True) as s:
            listed = accounts.list_accounts(s)
        return ap.render(request, "coordination.html", {"accounts": listed, "csrf": who.csrf,
                                                        "me": who.account_id, **context},
                         who=who, status=status)

    def shown(request: Request, who: Who, made: accounts.Invited) -> Response:
        """The coordinators' page with the link just made (shown this once)."""
        base = str(request.base_url).rstrip("/")
        return page(request, who, invited=made.name, link=made.link(base),
                    renewed=made.new_password)

    @web.get("/compte/coordination", include_in_schema=False)
    def coordination(request: Request) -> Response:
        return page(request, coordinator(request))

    @web.post("/compte/coordination/invitations", include_in_schema=False)
    async def do_invite(request: Request) -> Response:
        who = coordinator(request)
        form = await form_of(request, who.csrf)
        lines = [x for x in form.get("donors", "").splitlines() if x.strip()]
        try:
            with ap.db.session() as s:
                made = accounts.invite(s, name=form.get("name", ""),
                                       role=form.get("role", "donor"),
                                       sirets=form.get("sirets", "").split(), donors=lines,
                                       by=f"{who.name} ({who.login})")
        except UsageError as exc:
            return page(request, who, 400, error=str(exc), form=form)
        return shown(request, who, made)

    @web.post("/compte/coordination/comptes/{account_id}/invitation",
              include_in_schema=False)
    async def do_reinvite(request: Request, account_id: str) -> Response:
        who = coordinator(request)
        await form_of(request, who.csrf)
        try:
            with ap.db.session() as s:
                made = accounts.reinvite(s, _number(account_id),
                                         by=f"{who.name} ({who.login})")
        except NotFound as exc:
            raise NotVisible(account_id) from exc
        except UsageError as exc:
            return page(request, who, 400, error=str(exc))
        return shown(request, who, made)

    @web.post("/compte/coordination/comptes/{account_id}/etat", include_in_schema=False)
    async def do_set_active(request: Request, account_id: str) -> Response:
        who = coordinator(request)
        form = await form_of(request, who.csrf)
        if form.get("active") not in ("0", "1"):
            return page(request, who, 400, error="état manquant / state missing: send "
                                                 "active=0 (disable) or active=1 (enable)")
        try:
            with ap.db.session() as s:
                account = accounts.set_active(s, _number(account_id),
                                              form["active"] == "1", by=who)
                done = (account.name, account.active)
        except NotFound as exc:
            raise NotVisible(account_id) from exc
        except UsageError as exc:
            return page(request, who, 400, error=str(exc))
        return page(request, who, changed=done)

    @web.get("/compte/coordination/messages", include_in_schema=False)
    def inbox(request: Request) -> Response:
        who = coordinator(request)
        unread = request.query_params.get("non-lus") == "1"
        listed = messages.recent(ap.db, unread=unread, limit=MESSAGES_SHOWN)
        return ap.render(request, "messages.html", {
            "messages": listed, "unread": unread, "csrf": who.csrf, "keep_days": ap.keep_days,
            "marked": request.query_params.get("lus")}, who=who)

    @web.post("/compte/coordination/messages/lus", include_in_schema=False)
    async def mark_read(request: Request) -> Response:
        who = coordinator(request)
        form = await form_of(request, who.csrf)
        ids = [i for i in form.get("ids", "").split() if i][:MESSAGES_SHOWN]
        messages.mark_read(ap.db, ids, by=f"{who.name} ({who.login})")
        return _secured(RedirectResponse(
            f"/compte/coordination/messages?lus={len(ids)}", 303))


def mount(app: FastAPI, db: PortalDb, pages: Pages, *, verify_path: str,
          login_tries: int = LOGIN_TRIES, keep_days: int = 90) -> None:
    """Add the account pages to `app`, with their error pages."""
    ap = AccountPages(db, pages, verify_path=verify_path, login_tries=login_tries,
                      keep_days=keep_days)
    app.include_router(router(ap))

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        if _json(request):
            return _secured(JSONResponse({"error": "sign in first"}, 401))
        return _secured(RedirectResponse(f"{LOGIN}?next={exc.path}", 303))

    @app.exception_handler(NotVisible)
    async def not_visible(request: Request, exc: NotVisible) -> Response:
        return ap.message(request, N_("Not found"), NOT_FOUND, 404, ap.who(request))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return ap.message(request, N_("Not allowed"), exc.why, 403, ap.who(request))
