"""Opening hours in OpenStreetMap `opening_hours` syntax, said in plain words.

The common forms ("Mo-Fr 09:00-12:00,14:00-18:30; Sa 08:30-12:00", "We off",
"PH off", "24/7") become one short line per group of days: "Du lundi au
vendredi : de 9 h à 12 h et de 14 h à 18 h 30." Anything else (months, weeks,
comments, overnight ranges...) gives None: the page then shows the text as it
was written, never nothing. Later rules override earlier ones for their days,
as in OSM.
"""

from __future__ import annotations

import re

DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
DAY_NAMES = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
WORDS = {
    "fr": {"and": "et", "from_to": "du {} au {}", "one_day": "le {}",
           "span": "de {} à {}", "always": "Tous les jours, jour et nuit.",
           "holidays": "Fermé les jours fériés."},
    "en": {"and": "and", "from_to": "{} to {}", "one_day": "{}",
           "span": "{} to {}", "always": "Every day, day and night.",
           "holidays": "Closed on public holidays."},
}
_DAY = r"(?:Mo|Tu|We|Th|Fr|Sa|Su|PH)"
_RULE = re.compile(rf"(?P<sel>{_DAY}(?:\s*[-,]\s*{_DAY})*)?\s*:?\s*(?P<what>.*)")
_SPAN = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")

Span = tuple[int, int]            # minutes from midnight: (start, end)
Week = list[tuple[Span, ...] | None]


def describe(text: str, lang: str = "fr") -> list[str] | None:
    """The hours in `text` as lines of plain `lang` ("fr" or "en"), or None when
    the text uses a form this does not read (show it raw then)."""
    text = text.strip()
    if text == "24/7":
        return [WORDS[lang]["always"]]
    week: Week = [None] * 7
    holidays_off = False
    for rule in filter(None, (r.strip() for r in text.split(";"))):
        parsed = _rule(rule)
        if parsed is None:
            return None
        days, spans = parsed
        if isinstance(days, str):            # "PH": public holidays
            if spans:
                return None
            holidays_off = True
            continue
        for day in days:
            week[day] = spans
    lines = _lines(week, lang)
    if not lines:
        return None
    return lines + ([WORDS[lang]["holidays"]] if holidays_off else [])


def _rule(rule: str) -> tuple[list[int] | str, tuple[Span, ...]] | None:
    """(days, spans) of one rule; days "PH" for public holidays; spans () when closed."""
    found = _RULE.fullmatch(rule)
    if found is None:
        return None
    selector, what = found["sel"], found["what"].strip()
    days = _days(selector) if selector else list(range(7))
    if days is None:
        return None
    if what in ("off", "closed"):
        return days, ()
    spans = _spans(what.removesuffix(" open").strip())
    return (days, spans) if spans else None


def _days(selector: str) -> list[int] | str | None:
    if "PH" in selector:
        return "PH" if selector.strip() == "PH" else None
    days: list[int] = []
    for part in selector.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        start, end = DAYS.index(first), DAYS.index(last or first)
        if end < start:
            return None                      # Sa-Mo wraps the week: show it raw
        days += range(start, end + 1)
    return days


def _spans(text: str) -> tuple[Span, ...] | None:
    spans: list[Span] = []
    for part in text.split(","):
        found = _SPAN.fullmatch(part.strip())
        if found is None:
            return None
        h1, m1, h2, m2 = map(int, found.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if m1 > 59 or m2 > 59 or h2 > 24 or not start < end <= 24 * 60:
            return None
        spans.append((start, end))
    return tuple(spans)


def _lines(week: Week, lang: str) -> list[str]:
    """One line per distinct schedule, its days grouped, in the week's order."""
    groups: dict[tuple[Span, ...], list[int]] = {}
    for day, spans in enumerate(week):
        if spans:
            groups.setdefault(spans, []).append(day)
    return [_line(days, spans, lang) for spans, days in groups.items()]


def _line(days: list[int], spans: tuple[Span, ...], lang: str) -> str:
    words = WORDS[lang]
    names = DAY_NAMES[lang]
    if len(days) == 1:
        when = words["one_day"].format(names[days[0]])
    else:
        runs = _runs(days)
        ranged = any(len(run) > 2 for run in runs)
        single = words["one_day"] if ranged else "{}"
        parts: list[str] = []
        for run in runs:
            if len(run) > 2:
                parts.append(words["from_to"].format(names[run[0]], names[run[-1]]))
            else:
                parts += [single.format(names[d]) for d in run]
        when = _join(parts, lang)
    times = f" {words['and']} ".join(words["span"].format(clock(a, lang), clock(b, lang))
                                     for a, b in spans)
    return f"{when[:1].upper()}{when[1:]} : {times}." if lang == "fr" else f"{when}: {times}."


def _runs(days: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _join(parts: list[str], lang: str) -> str:
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} {WORDS[lang]['and']} {parts[-1]}"


def clock(minutes: int, lang: str) -> str:
    """`minutes` after midnight as people say it: "9 h", "18 h 30" (fr), "18:30" (en);
    the French spaces are non-breaking, so that "18 h 30" never splits over two lines."""
    hours, mins = divmod(minutes, 60)
    if lang == "fr":
        return f"{hours}\u00a0h\u00a0{mins:02d}" if mins else f"{hours}\u00a0h"
    return f"{hours}:{mins:02d}"
