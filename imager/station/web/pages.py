"""Rendering a page: Jinja2 templates with the language, the person signed in and
the form token; every asset is served by the station itself (no CDN: the
workshop may be offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from imager import __version__
from imager.registry.accounts import ROLE_NAMES, Person
from imager.registry.lifecycle import ITEM_LABELS_FR
from imager.station.web.i18n import LANGUAGES, N_, choose, translations

HERE = Path(__file__).parent
LANG_COOKIE = "imager_lang"

_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(["html"]), extensions=["jinja2.ext.i18n"],
                   trim_blocks=True, lstrip_blocks=True)


def language(request: Request) -> str:
    return choose(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def fragment(request: Request, name: str, context: dict[str, Any] | None = None, *,
             person: Person | None = None) -> str:
    """The template `name` rendered in the request's language (a page, or a part of
    one sent to the page as it changes)."""
    lang = language(request)
    catalogue = translations(lang)
    return _env.get_template(name).render(
        {"request": request, "person": person, "lang": lang, "languages": LANGUAGES,
         "version": __version__, "role_name": _role_name(lang),
         "lang_href": _lang_href(request), "state_name": _state_name(lang),
         "size": _size(lang),
         "_": catalogue.gettext, "gettext": catalogue.gettext, "ngettext": catalogue.ngettext,
         **(context or {})})


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           person: Person | None = None, status: int = 200) -> HTMLResponse:
    """The page `name` in the request's language."""
    lang = language(request)
    html = fragment(request, name, context, person=person)
    response = HTMLResponse(html, status_code=status)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax",
                            httponly=True, secure=request.url.scheme == "https")
    return response


def not_found(request: Request, person: Person | None, text: str) -> HTMLResponse:
    """The page saying what does not exist on this station (404)."""
    return render(request, "message.html", {"title": N_("Not found"), "text": text},
                  person=person, status=404)


def json_download(data: Any, filename: str) -> Response:
    """`data` as a JSON file the browser saves as `filename`."""
    return Response(json.dumps(data, indent=1, ensure_ascii=False),
                    media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _lang_href(request: Request) -> Any:
    def href(lang: str) -> str:
        """This page in `lang`: its query kept (a verification's id and hash), lang set."""
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        return "?" + urlencode([*query, ("lang", lang)])
    return href


def _role_name(lang: str) -> Any:
    def name(role: str) -> str:
        fr, en = ROLE_NAMES.get(role, (role, role))
        return fr if lang == "fr" else en
    return name


def _state_name(lang: str) -> Any:
    def name(state: str | None) -> str:
        """A drive's or a computer's state in words (French), or its code (English)."""
        return ITEM_LABELS_FR.get(state or "", state or "") if lang == "fr" else state or ""
    return name


def _size(lang: str) -> Any:
    def size(n: int | None) -> str:
        """A size in bytes for people: GB from 1 GB up, else MB (decimal, as drives)."""
        if not n:
            return "—"
        big = n >= 10**9
        value = f"{n / (10**9 if big else 10**6):.1f}"
        unit = ("Go" if big else "Mo") if lang == "fr" else ("GB" if big else "MB")
        return f"{value.replace('.', ',') if lang == 'fr' else value} {unit}"
    return size
