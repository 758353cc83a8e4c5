"""The web pages' languages: French first, English available.

Messages are written in English in the templates and the code (`_("...")`), and
translated from Babel catalogues kept as .po files beside this module
(locale/<lang>/LC_MESSAGES/messages.po), read when the station starts: no
compile step, nothing to forget. English is the messages themselves.
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
LOCALE_DIR = Path(__file__).parent / "locale"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalogue of `lang` (English, or an unknown language: the messages as written)."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang == "en" or not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def N_(message: str) -> str:
    """Marks a message for the catalogues; it is translated where it is shown."""
    return message


def choose(asked: str | None, cookie: str | None) -> str:
    """The page's language: asked (?lang=), else remembered (cookie), else French."""
    for lang in (asked, cookie):
        if lang in LANGUAGES:
            return lang
    return DEFAULT
