"""The web pages' languages: French first, English available.

Messages are written in English in the templates and the code (`_("...")`), and
translated from Babel catalogues kept as .po files (locale/<lang>/LC_MESSAGES/
messages.po), read when the server starts: no compile step, nothing to forget.
English is the messages themselves.

Each role (the station, the portal) has its catalogue beside its pages; the pages
both serve (the public verification, imager.web.verify) have theirs here
(SHARED_LOCALE). `catalogue(lang, own)` reads a role's catalogue with the shared one
behind it.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = ("fr", "en")
DEFAULT = "fr"
SHARED_LOCALE = Path(__file__).parent / "locale"


def _read(lang: str, locale_dir: Path) -> gettext.NullTranslations:
    po = locale_dir / lang / "LC_MESSAGES" / "messages.po"
    if lang == "en" or not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


@cache
def catalogue(lang: str, own: Path) -> gettext.NullTranslations:
    """The messages of `lang` from the catalogue in `own` (a role's locale dir), then
    the shared pages' (English, or an unknown language: the messages as written)."""
    found = _read(lang, own)
    if own != SHARED_LOCALE:
        found.add_fallback(_read(lang, SHARED_LOCALE))
    return found


def N_(message: str) -> str:
    """Marks a message for the catalogues; it is translated where it is shown."""
    return message


def choose(asked: str | None, cookie: str | None) -> str:
    """The page's language: asked (?lang=), else remembered (cookie), else French."""
    for lang in (asked, cookie):
        if lang in LANGUAGES:
            return lang
    return DEFAULT
