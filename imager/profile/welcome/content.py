"""The welcome content of a profile: a directory `profiles/<name>/welcome/` with

- `welcome.yaml`: the network's name, its phone (and the phone's hours, in OSM
  opening_hours syntax), the portal URL messages are sent to, the area
  (départements), the texts of the sections (fr first, en available);
- `lieux.csv`: digital-mediation places in the national schema (places.py);
- `ateliers.ics`: the workshop calendar (calendar.py);
- `pictos/*.svg`: one pictogram per section, optional.

`load(dir)` checks all of it and refuses it with every problem at once, each
named `file:line: field` with its fix. Broken rows of lieux.csv are not
fatal: they are reported in `WelcomeContent.warnings` and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import icalendar

from imager.errors import UsageError
from imager.profile.welcome import calendar, opening_hours, places
from imager.profile.welcome.phone import Phone, parse
from imager.yamldoc import Document, Kind, Problems, read, text

LANGUAGES = ("fr", "en")
TEXT_SECTIONS = ("internet", "trouble", "about")
# Every section of the page, in the page's order: the text sections come from
# welcome.yaml, the others are built from the places, the calendar, the phone.
SECTIONS = ("internet", "trouble", "places", "workshops", "phone", "message", "about")
TOP_KEYS = {"network", "sample", "languages", "area", "phone", "messages", "places",
            "workshops", "pictograms", "sections"}
DEFAULT_PORT = 8377
KIND = Kind("welcome content", plural=False,
            missing_fix="create it (see profiles/bureau-solidaire/welcome/welcome.yaml)")


@dataclass(frozen=True)
class SectionText:
    """A text section in one language: a title and short lines, one idea each."""

    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Section:
    key: str                              # internet | trouble | about
    numbered: bool                        # steps to follow in order
    texts: dict[str, SectionText]         # per language


@dataclass(frozen=True)
class Messages:
    """Where the laptop's message queue sends messages, and how long it keeps them."""

    portal_url: str
    local_port: int = DEFAULT_PORT
    keep_days: int = 30

    @property
    def local_url(self) -> str:
        """The form's target: the local service on the laptop."""
        return f"http://127.0.0.1:{self.local_port}/messages"


@dataclass(frozen=True)
class WelcomeContent:
    """Everything the welcome page is made of, checked."""

    directory: Path
    network: str
    sample: bool                          # a sample to be completed by the coordinator
    languages: tuple[str, ...]
    departements: tuple[str, ...]
    phone: Phone
    phone_hours: str                      # OSM opening_hours
    messages: Messages
    sections: dict[str, Section]
    places: places.PlacesImport
    workshops: icalendar.Calendar
    weeks: int
    pictograms: dict[str, Path]           # section key -> SVG file
    warnings: tuple[str, ...] = field(default=())


def load(directory: Path) -> WelcomeContent:
    """The welcome content in `directory`; UsageError listing every problem."""
    document, source = KIND.read(directory / "welcome.yaml", directory / "welcome.yaml")
    doc = read(document, source)
    raw = doc.value
    if not isinstance(raw, dict):
        raise UsageError(f"{source}:1: expected a mapping (network:, phone:, sections: ...)")
    problems = Problems(document=doc)
    for key in sorted(set(raw) - TOP_KEYS):
        problems.add(key, f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    check = _Checker(doc, problems)
    content = _content(directory, raw, check)
    KIND.check(problems, source)
    assert content is not None
    return content


class _Checker:
    """Reads values out of the document, adding a problem with its place for each
    bad one."""

    def __init__(self, doc: Document, problems: Problems) -> None:
        self.doc, self.problems = doc, problems

    def bad(self, path: str, message: str) -> None:
        self.problems.add(path, message)

    def get(self, path: str) -> Any:
        value: Any = self.doc.value
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def text(self, path: str, fix: str) -> str:
        found = text(self.get(path))
        if found is None:
            self.bad(path, f"missing or empty: {fix}")
        return found or ""

    def mapping(self, path: str, fix: str) -> dict[str, Any]:
        found = self.get(path)
        if not isinstance(found, dict):
            self.bad(path, f"expected a mapping: {fix}")
            return {}
        return found

    def number(self, path: str, default: int, low: int, high: int) -> int:
        found = self.get(path)
        if found is None:
            return default
        if not isinstance(found, int) or isinstance(found, bool) or not low <= found <= high:
            self.bad(path, f"expected a whole number from {low} to {high}, not {found!r}")
            return default
        return found


def _content(directory: Path, raw: dict[str, Any], c: _Checker) -> WelcomeContent | None:
    languages = _languages(c)
    departements = _departements(c)
    phone = _phone(c)
    hours = c.text("phone.hours", "the phone's hours in OSM opening_hours syntax, e.g. "
                                  "\"Mo-Fr 09:00-12:00\"")
    if hours and opening_hours.describe(hours) is None:
        c.bad("phone.hours", f"{hours!r} is not a form the page can say in words: write it "
                             "like \"Mo-Fr 09:00-12:00,14:00-17:00; Sa 09:00-12:00\"")
    messages = _messages(c)
    sections = {key: _section(c, key, languages) for key in TEXT_SECTIONS}
    pictograms = _pictograms(directory, c)
    sample = c.get("sample")
    if sample is not None and not isinstance(sample, bool):
        c.bad("sample", f"expected true or false, not {sample!r}")
    found_places = _places(directory, c, departements)
    workshops, weeks = _workshops(directory, c)
    if c.problems or phone is None or found_places is None or workshops is None:
        return None
    return WelcomeContent(
        directory=directory, network=c.text("network", ""), sample=bool(sample),
        languages=languages, departements=departements, phone=phone, phone_hours=hours,
        messages=messages, sections=sections, places=found_places, workshops=workshops,
        weeks=weeks, pictograms=pictograms,
        warnings=tuple(str(p) for p in found_places.problems))


def _languages(c: _Checker) -> tuple[str, ...]:
    found = c.get("languages")
    if found is None:
        return LANGUAGES
    if (not isinstance(found, list) or not found or found[0] != "fr"
            or any(lang not in LANGUAGES for lang in found) or len(set(found)) != len(found)):
        c.bad("languages", f"expected a list starting with fr, among {list(LANGUAGES)}, "
                           f"not {found!r}")
        return LANGUAGES
    return tuple(found)


def _departements(c: _Checker) -> tuple[str, ...]:
    found = c.get("area.departements")
    codes = found if isinstance(found, list) else []
    good = [code for code in codes if isinstance(code, str)
            and (code in ("2A", "2B") or (code.isdigit() and len(code) in (2, 3)))]
    if not codes or len(good) != len(codes):
        c.bad("area.departements", "expected a list of département codes as quoted strings, "
                                   f"e.g. [\"05\"], not {found!r}")
    return tuple(good)


def _phone(c: _Checker) -> Phone | None:
    number = c.text("phone.number", "the phone number for people who cannot read, e.g. "
                                    "\"04 92 00 00 00\"")
    phone = parse(number) if number else None
    if number and phone is None:
        c.bad("phone.number", f"{number!r} is not a French phone number: write 10 digits "
                              "(04 92 00 00 00) or +33 and 9 digits")
    return phone


def _messages(c: _Checker) -> Messages:
    url = c.text("messages.portal_url", "the portal's URL that receives the messages, e.g. "
                                        "https://portail.example.org/api/v1/messages")
    parts = urlsplit(url)
    if url and (parts.scheme not in ("https", "http") or not parts.hostname):
        c.bad("messages.portal_url", f"{url!r} is not an http(s) URL")
    port = c.number("messages.local_port", DEFAULT_PORT, 1024, 65535)
    keep = c.number("messages.keep_days", 30, 1, 365)
    return Messages(url, port, keep)


def _section(c: _Checker, key: str, languages: tuple[str, ...]) -> Section:
    base = f"sections.{key}"
    c.mapping(base, f"give the section's texts under {', '.join(languages)}")
    numbered = c.get(f"{base}.numbered")
    if numbered is not None and not isinstance(numbered, bool):
        c.bad(f"{base}.numbered", f"expected true or false, not {numbered!r}")
    texts: dict[str, SectionText] = {}
    for lang in languages:
        title = c.text(f"{base}.{lang}.title", f"give the section's title in {lang}")
        lines = c.get(f"{base}.{lang}.lines")
        if not isinstance(lines, list) or not lines:
            c.bad(f"{base}.{lang}.lines", "expected a list of short sentences, one idea each")
            lines = []
        for i, line in enumerate(lines):
            if text(line) is None:
                c.bad(f"{base}.{lang}.lines[{i}]", "expected a sentence, not "
                                                   f"{line!r}: remove the empty line")
        texts[lang] = SectionText(title, tuple(str(line).strip() for line in lines))
    return Section(key, bool(numbered), texts)


def _pictograms(directory: Path, c: _Checker) -> dict[str, Path]:
    found = c.get("pictograms") or {}
    if not isinstance(found, dict):
        c.bad("pictograms", "expected a mapping: section -> SVG file, e.g. internet: "
                            "pictos/wifi.svg")
        return {}
    result: dict[str, Path] = {}
    for key, name in found.items():
        where = f"pictograms.{key}"
        if key not in SECTIONS:
            c.bad(where, f"unknown section (allowed: {', '.join(SECTIONS)})")
            continue
        path = directory / str(name)
        why = _svg_problem(path)
        if why:
            c.bad(where, why)
        else:
            result[key] = path
    return result


def _svg_problem(path: Path) -> str | None:
    """Why `path` is not a plain SVG picture the page can show, or None."""
    if path.suffix != ".svg":
        return f"{path.name}: expected an .svg file"
    try:
        root = ElementTree.parse(path).getroot()
    except FileNotFoundError:
        return f"{path} does not exist: draw it or remove this line"
    except ElementTree.ParseError as exc:
        return f"{path} is not valid SVG/XML ({exc})"
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        return f"{path}: the root element is {root.tag}, not an SVG <svg>"
    for element in root.iter():
        if element.tag.endswith("script") or element.tag.endswith("foreignObject") or any(
                attr.startswith("on") or (attr.endswith("href") and ":" in value)
                for attr, value in element.attrib.items()):
            return f"{path}: scripts, event handlers and external links are not allowed"
    return None


def _places(directory: Path, c: _Checker, departements: tuple[str, ...],
            ) -> places.PlacesImport | None:
    name = c.get("places.file") or "lieux.csv"
    try:
        return places.import_places(directory / str(name), departements=departements)
    except UsageError as exc:
        c.bad("places.file", str(exc))
        return None


def _workshops(directory: Path, c: _Checker) -> tuple[icalendar.Calendar | None, int]:
    name = c.get("workshops.file") or "ateliers.ics"
    weeks = c.number("workshops.weeks", 8, 1, 52)
    path = directory / str(name)
    try:
        return calendar.read(path.read_text(encoding="utf-8"), str(path)), weeks
    except (OSError, UnicodeDecodeError) as exc:
        c.bad("workshops.file", f"{path} cannot be read ({exc}): export the calendar as .ics "
                                "(UTF-8) to this path")
    except UsageError as exc:
        c.bad("workshops.file", str(exc))
    return None, weeks
