"""The welcome page, static and accessible: `index.html` (French) and
`en.html` (English), with their stylesheet and pictograms under `assets/`.

Plain French (FALC): short sentences, one idea per line, large text, high
contrast, a pictogram beside each section, a table of contents of big
buttons; no JavaScript. The form "envoyer un message" posts to the laptop's
local message service (payload/accueil_messages.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from imager.profile.welcome import calendar, opening_hours
from imager.profile.welcome.content import SECTIONS, WelcomeContent
from imager.profile.welcome.places import Place
from imager.profile.welcome.strings import STRINGS

HERE = Path(__file__).parent
PAGES = {"fr": "index.html", "en": "en.html"}
MAX_TEXT_CHARS = 2000       # the form's limit; the local service counts bytes (4 KiB)


@dataclass(frozen=True)
class PlaceView:
    """A place as the page shows it, in one language."""

    place: Place
    hours_lines: list[str] | None

    @property
    def hours_raw(self) -> str:
        return self.place.hours


@dataclass(frozen=True)
class WorkshopView:
    day: str            # "Mardi 8 décembre"
    time: str           # "de 14 h à 16 h" / "toute la journée"
    workshop: calendar.Workshop


def render(content: WelcomeContent, out_dir: Path, *, today: date,
           message_url: str) -> list[Path]:
    """Write the page in each language of `content` and its assets into `out_dir`;
    `today` is the build date ("mis à jour le …") and the first day of workshops
    shown. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _assets(content, out_dir)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.get_template("page.html")
    workshops = calendar.upcoming(content.workshops, today=today, weeks=content.weeks)
    for lang in content.languages:
        page = out_dir / PAGES[lang]
        html = template.render(**_context(content, lang, today, message_url, workshops))
        page.write_text(html, encoding="utf-8")
        written.insert(0, page)
    return written


def _assets(content: WelcomeContent, out_dir: Path) -> list[Path]:
    assets = out_dir / "assets"
    assets.mkdir(exist_ok=True)
    written = [Path(shutil.copyfile(HERE / "assets" / "style.css", assets / "style.css"))]
    for key, source in content.pictograms.items():
        written.append(Path(shutil.copyfile(source, assets / f"{key}.svg")))
    return written


def _context(content: WelcomeContent, lang: str, today: date, message_url: str,
             workshops: list[calendar.Workshop]) -> dict[str, Any]:
    other = [code for code in content.languages if code != lang]
    places = sorted(content.places.places, key=lambda p: (p.commune, p.name))
    return {
        "lang": lang, "t": STRINGS[lang], "content": content,
        "sections": [key for key in SECTIONS],
        "pictograms": set(content.pictograms),
        "other_lang": [(code, PAGES[code], STRINGS[code]["language_name"]) for code in other],
        "phone_hours": opening_hours.describe(content.phone_hours, lang) or [],
        "places": [PlaceView(p, p.hours_lines(lang)) for p in places],
        "workshops": [_workshop_view(w, lang) for w in workshops],
        "updated": format_date(today, format="long", locale=lang),
        "message_url": message_url, "max_text": MAX_TEXT_CHARS,
        "service_names": STRINGS[lang]["services"],
        "section_title": lambda key: _title(content, key, lang),
    }


def _title(content: WelcomeContent, key: str, lang: str) -> str:
    """A section's title: from welcome.yaml for the text sections, else the page's own."""
    if key in content.sections:
        return content.sections[key].texts[lang].title
    title: str = STRINGS[lang][key]
    return title


def _workshop_view(workshop: calendar.Workshop, lang: str) -> WorkshopView:
    t = STRINGS[lang]
    day = format_date(workshop.start.date(), format="EEEE d MMMM", locale=lang)
    if workshop.all_day:
        when = t["all_day"]
    else:
        start = opening_hours.clock(_minutes(workshop.start), lang)
        when = (t["span"].format(start, opening_hours.clock(_minutes(workshop.end), lang))
                if workshop.end and workshop.end.date() == workshop.start.date()
                else t["from"].format(start))
    return WorkshopView(day[:1].upper() + day[1:], when, workshop)


def _minutes(moment: datetime) -> int:
    return moment.hour * 60 + moment.minute
