"""The workshop calendar: an iCalendar feed with recurring events (RRULE,
EXDATE, a moved occurrence), time zones (TZID Europe/Paris, UTC, floating
times) across the changes of summer time, past workshops hidden, the next
weeks kept."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from imager.errors import UsageError
from imager.profile.welcome.calendar import read, upcoming

PARIS = ZoneInfo("Europe/Paris")
SHIPPED = Path(__file__).parents[1] / "profiles" / "bureau-solidaire" / "welcome" / "ateliers.ics"


def ics(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n".replace("\n", "\r\n")
                   .replace("\r\r\n", "\r\n") for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//tests//FR\r\n{body}END:VCALENDAR\r\n"


WEEKLY_PARIS = """UID:paris@test
DTSTAMP:20260901T000000Z
DTSTART;TZID=Europe/Paris:20261013T180000
DTEND;TZID=Europe/Paris:20261013T200000
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Paris:20261020T180000
SUMMARY:Atelier du mardi
LOCATION:Médiathèque"""

WEEKLY_UTC = """UID:utc@test
DTSTAMP:20260901T000000Z
DTSTART:20261014T160000Z
DTEND:20261014T170000Z
RRULE:FREQ=WEEKLY;COUNT=4
SUMMARY:Visio (heure UTC)"""

WEEKLY_FLOATING = """UID:floating@test
DTSTAMP:20260901T000000Z
DTSTART:20261015T100000
RRULE:FREQ=WEEKLY;COUNT=4
SUMMARY:Heure flottante"""

MOVED = """UID:paris@test
DTSTAMP:20260901T000000Z
RECURRENCE-ID;TZID=Europe/Paris:20261103T180000
DTSTART;TZID=Europe/Paris:20261105T090000
DTEND;TZID=Europe/Paris:20261105T110000
SUMMARY:Atelier du mardi (déplacé au jeudi)"""


def _starts(found: list, title: str) -> list[str]:
    return [w.start.isoformat() for w in found if w.title.startswith(title)]


def test_a_weekly_workshop_keeps_its_local_time_across_the_autumn_change() -> None:
    found = upcoming(read(ics(WEEKLY_PARIS, MOVED), "t.ics"), today=date(2026, 10, 13),
                     weeks=6)
    assert _starts(found, "Atelier du mardi") == [
        "2026-10-13T18:00:00+02:00",            # summer time
        # 20 October: EXDATE
        "2026-10-27T18:00:00+01:00",            # winter time since 25 October, still 18:00
        "2026-11-05T09:00:00+01:00",            # 3 November moved to Thursday 5
        "2026-11-10T18:00:00+01:00",
        "2026-11-17T18:00:00+01:00"]
    moved = next(w for w in found if w.start.day == 5)
    assert moved.title == "Atelier du mardi (déplacé au jeudi)"
    assert moved.end == datetime(2026, 11, 5, 11, 0, tzinfo=PARIS)
    assert found[0].location == "Médiathèque" and not found[0].all_day


def test_utc_and_floating_times_are_shown_in_the_network_s_time() -> None:
    found = upcoming(read(ics(WEEKLY_UTC, WEEKLY_FLOATING), "t.ics"),
                     today=date(2026, 10, 14), weeks=4)
    # 16:00 UTC is 18:00 in Paris in summer, 17:00 once winter time starts.
    assert [w.start.strftime("%d %H:%M %z") for w in found if w.title.startswith("Visio")] \
        == ["14 18:00 +0200", "21 18:00 +0200", "28 17:00 +0100", "04 17:00 +0100"]
    # A floating 10:00 is 10:00 wherever the offset goes.
    assert [w.start.strftime("%d %H:%M %z") for w in found if w.title.startswith("Heure")] \
        == ["15 10:00 +0200", "22 10:00 +0200", "29 10:00 +0100", "05 10:00 +0100"]
    assert all(w.start.tzinfo == PARIS for w in found)


def test_a_weekly_workshop_keeps_its_local_time_across_the_spring_change() -> None:
    spring = """UID:spring@test
DTSTAMP:20260901T000000Z
DTSTART;TZID=Europe/Paris:20270321T100000
RRULE:FREQ=WEEKLY;COUNT=3
SUMMARY:Dimanche matin"""
    found = upcoming(read(ics(spring), "t.ics"), today=date(2027, 3, 1), weeks=8)
    assert [w.start.isoformat() for w in found] == [
        "2027-03-21T10:00:00+01:00", "2027-03-28T10:00:00+02:00", "2027-04-04T10:00:00+02:00"]


def test_past_workshops_are_hidden_and_only_the_next_weeks_are_kept() -> None:
    calendar = read(ics(WEEKLY_PARIS), "t.ics")
    # On 27 October, the 13 October workshop is past; the one of the day is shown.
    found = upcoming(calendar, today=date(2026, 10, 27), weeks=2)
    assert _starts(found, "Atelier") == ["2026-10-27T18:00:00+01:00",
                                         "2026-11-03T18:00:00+01:00"]
    assert upcoming(calendar, today=date(2026, 11, 18), weeks=8) == []


def test_an_all_day_workshop_is_kept_on_its_day() -> None:
    day = """UID:day@test
DTSTAMP:20260901T000000Z
DTSTART;VALUE=DATE:20261114
SUMMARY:Journée portes ouvertes"""
    [found] = upcoming(read(ics(day), "t.ics"), today=date(2026, 11, 14), weeks=1)
    assert found.all_day and found.start == datetime(2026, 11, 14, tzinfo=PARIS)


def test_the_shipped_calendar_lists_the_next_workshops_without_the_holidays() -> None:
    calendar = read(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))
    found = upcoming(calendar, today=date(2026, 12, 6), weeks=8)
    assert found[0].title == "Atelier : découvrir son ordinateur"
    assert found[0].start == datetime(2026, 12, 8, 14, 0, tzinfo=PARIS)
    tuesdays = [w.start.date() for w in found if "découvrir" in w.title]
    assert date(2026, 12, 22) not in tuesdays and date(2026, 12, 29) not in tuesdays
    assert date(2027, 1, 5) in tuesdays
    assert all(w.start.date() >= date(2026, 12, 6) for w in found)
    assert all(w.start.date() < date(2026, 12, 6) + timedelta(weeks=8) for w in found)
    assert "Journée portes ouvertes" not in {w.title for w in found}     # 14 November: past
    saturdays = [w.start.date() for w in found if w.title.startswith("Permanence")]
    assert saturdays == [date(2027, 1, 2)]     # 5 December is past, 6 February too far


def test_a_broken_calendar_is_refused_with_what_to_fix() -> None:
    with pytest.raises(UsageError, match="t.ics: not a valid iCalendar file"):
        read("BEGIN:VCALENDAR\r\nthis is not ical\r\n", "t.ics")
    with pytest.raises(UsageError, match="the event 'Sans date' .* has no DTSTART"):
        read(ics("UID:x@test\nSUMMARY:Sans date"), "t.ics")
