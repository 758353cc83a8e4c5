"""Rendering a page: Jinja2 templates in the request's language. Each role (the
station, the portal) has its templates; the shared ones (imager/web/templates) are
found behind them, and a shared page extends the role's own `base.html`. Every asset
is served by the server itself (no CDN: the workshop may be offline)."""

from __future__ import annotations

import gettext
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from imager import __version__
from imager.certify.labels import PARIS, parse_datetime
from imager.web.i18n import LANGUAGES, choose

SHARED_TEMPLATES = Path(__file__).parent / "templates"
LANG_COOKIE = "imager_lang"
Render = Callable[..., HTMLResponse]


def language(request: Request) -> str:
    return choose(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def lang_href(request: Request) -> Callable[[str], str]:
    def href(lang: str) -> str:
        """This page in `lang`: its query kept (a verification's id and hash), lang set."""
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        return "?" + urlencode([*query, ("lang", lang)])
    return href


def local_time(value: datetime | str | None, form: str = "%Y-%m-%d %H:%M") -> str:
    """An instant (aware datetime, or ISO text as the station's JSON holds) in Paris
    time, as the certificates show it: the workshops are in France, and the portal's
    host may run on UTC. Stored instants are UTC; a naive one is read as UTC."""
    when = parse_datetime(value) if isinstance(value, str) else value
    if when is None:
        return "" if value is None else str(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(PARIS).strftime(form)


class Pages:
    """The templates of one role (`templates`, then the shared ones) and its
    catalogues (`translations(lang)`)."""

    def __init__(self, templates: Path,
                 translations: Callable[[str], gettext.NullTranslations]) -> None:
        self.translations = translations
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(templates),
                                 FileSystemLoader(SHARED_TEMPLATES)]),
            autoescape=select_autoescape(["html"]), extensions=["jinja2.ext.i18n"],
            trim_blocks=True, lstrip_blocks=True)
        self.env.filters["when"] = local_time

    def fragment(self, request: Request, name: str,
                 context: dict[str, Any] | None = None) -> str:
        """The template `name` rendered in the request's language."""
        lang = language(request)
        catalogue = self.translations(lang)
        return self.env.get_template(name).render(
            {"request": request, "lang": lang, "languages": LANGUAGES,
             "version": __version__, "lang_href": lang_href(request),
             "_": catalogue.gettext, "gettext": catalogue.gettext,
             "ngettext": catalogue.ngettext, **(context or {})})

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None,
               *, status: int = 200) -> HTMLResponse:
        """The page `name` in the request's language."""
        return respond(request, self.fragment(request, name, context), status)


def respond(request: Request, html: str, status: int = 200) -> HTMLResponse:
    """A rendered page; a language asked for (?lang=) is remembered in a cookie."""
    response = HTMLResponse(html, status_code=status)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, language(request), max_age=365 * 86400,
                            samesite="lax", httponly=True,
                            secure=request.url.scheme == "https")
    return response
