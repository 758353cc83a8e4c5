"""The station's pages' languages (imager.web.i18n): its catalogue lies beside this
module (locale/<lang>/LC_MESSAGES/messages.po), the shared pages' behind it."""

from __future__ import annotations

import gettext
from pathlib import Path

from imager.web.i18n import DEFAULT, LANGUAGES, N_, catalogue, choose

LOCALE_DIR = Path(__file__).parent / "locale"
__all__ = ["DEFAULT", "LANGUAGES", "LOCALE_DIR", "N_", "choose", "translations"]


def translations(lang: str) -> gettext.NullTranslations:
    """The station's catalogue of `lang`, the shared pages' behind it."""
    return catalogue(lang, LOCALE_DIR)
