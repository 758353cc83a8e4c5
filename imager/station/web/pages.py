"""Rendering a page: Jinja2 templates with the language, the person signed in and
the form token (imager.web.pages, with the station's templates and catalogue);
every asset is served by the station itself (no CDN: the workshop may be offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from imager.registry.accounts import ROLE_NAMES, Person
from imager.registry.lifecycle import ITEM_LABELS_FR
from imager.station.web.i18n import N_, translations
from imager.web.pages import LANG_COOKIE, Pages, language, respond

HERE = Path(__file__).parent
__all__ = ["HERE", "LANG_COOKIE", "fragment", "json_download", "language", "not_found",
           "render"]

_pages = Pages(HERE / "templates", translations)


def fragment(request: Request, name: str, context: dict[str, Any] | None = None, *,
             person: Person | None = None) -> str:
    """The template `name` rendered in the request's language (a page, or a part of
    one sent to the page as it changes)."""
    lang = language(request)
    return _pages.fragment(request, name, {
        "person": person, "role_name": _role_name(lang), "state_name": _state_name(lang),
        "size": _size(lang), **(context or {})})


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           person: Person | None = None, status: int = 200) -> HTMLResponse:
    """The page `name` in the request's language."""
    return respond(request, fragment(request, name, context, person=person), status)


def not_found(request: Request, person: Person | None, text: str) -> HTMLResponse:
    """The page saying what does not exist on this station (404)."""
    return render(request, "message.html", {"title": N_("Not found"), "text": text},
                  person=person, status=404)


def json_download(data: Any, filename: str) -> Response:
    """`data` as a JSON file the browser saves as `filename`."""
    return Response(json.dumps(data, indent=1, ensure_ascii=False),
                    media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


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
