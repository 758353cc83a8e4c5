"""The network's workshops from an iCalendar feed: recurring events expanded
(RRULE, RDATE, EXDATE, moved occurrences), times put in the network's time
zone (TZID, UTC and floating times alike), past workshops hidden, the next
weeks kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from imager.errors import UsageError


@dataclass(frozen=True)
class Workshop:
    """One occurrence of a workshop, in the network's time zone."""

    title: str
    start: datetime          # aware; midnight for an all-day workshop
    end: datetime | None
    all_day: bool
    location: str
    description: str


def read(text: str, source: str) -> icalendar.Calendar:
    """The calendar in `text` (read from `source`); UsageError saying what is wrong."""
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise UsageError(f"{source}: not a valid iCalendar file ({exc}): export the "
                         "calendar again as .ics (BEGIN:VCALENDAR ... END:VCALENDAR)") from exc
    if not isinstance(calendar, icalendar.Calendar):
        raise UsageError(f"{source}: expected one VCALENDAR, found {type(calendar).__name__}")
    for event in calendar.walk("VEVENT"):
        if event.get("DTSTART") is None:
            raise UsageError(f"{source}: the event {str(event.get('SUMMARY', '?'))!r} "
                             f"(UID {str(event.get('UID', '?'))}) has no DTSTART: give it a "
                             "start date")
    return calendar


def upcoming(calendar: icalendar.Calendar, *, today: date, weeks: int,
             zone: str = "Europe/Paris") -> list[Workshop]:
    """The workshops from `today` (included) for `weeks` weeks, in order; a workshop
    of an earlier day is never shown. Floating times are read in `zone`."""
    import recurring_ical_events  # type: ignore[import-untyped]  # no type information

    tz = ZoneInfo(zone)
    last = today + timedelta(weeks=weeks)
    try:
        # A day of margin each side: the exact cut is made below, in the network's zone.
        found = recurring_ical_events.of(calendar).between(today - timedelta(days=1),
                                                           last + timedelta(days=1))
    except (ValueError, recurring_ical_events.InvalidCalendar) as exc:
        raise UsageError(f"the workshop calendar cannot be expanded: {exc}: check the "
                         "RRULE/EXDATE lines of its recurring events") from exc
    workshops = [_workshop(event, tz) for event in found]
    return sorted((w for w in workshops if today <= w.start.date() < last),
                  key=lambda w: (w.start, w.title))


def _workshop(event: icalendar.Event, tz: ZoneInfo) -> Workshop:
    start = event.decoded("DTSTART")
    end = event.decoded("DTEND") if event.get("DTEND") is not None else None
    return Workshop(title=_text(event, "SUMMARY") or "Atelier",
                    start=_local(start, tz), end=_local(end, tz) if end is not None else None,
                    all_day=not isinstance(start, datetime),
                    location=_text(event, "LOCATION"), description=_text(event, "DESCRIPTION"))


def _local(value: Any, tz: ZoneInfo) -> datetime:
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tz)
    if value.tzinfo is None:                       # floating: the network's local time
        return value.replace(tzinfo=tz)
    return value.astimezone(tz)


def _text(event: icalendar.Event, name: str) -> str:
    value = event.get(name)
    return str(value).strip() if value is not None else ""
