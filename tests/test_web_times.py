"""Times on the web pages: Paris time, as on the certificates, whatever the host's
own zone (the portal's public host often runs on UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from imager.web.pages import local_time


def test_winter_and_summer_instants_are_shown_in_paris_time() -> None:
    assert local_time(datetime(2026, 12, 6, 16, 50, tzinfo=UTC)) == "2026-12-06 17:50"
    assert local_time(datetime(2026, 7, 14, 10, 0, tzinfo=UTC)) == "2026-07-14 12:00"


def test_the_stations_iso_text_and_other_forms() -> None:
    assert local_time("2026-12-06T23:30:00+00:00") == "2026-12-07 00:30"
    assert local_time("2026-12-06T23:30:00Z", "%H:%M:%S") == "00:30:00"
    assert local_time(datetime(2026, 12, 6, 8, 5)) == "2026-12-06 09:05"   # naive: UTC


def test_nothing_or_text_that_is_no_date_is_shown_as_it_is() -> None:
    assert local_time(None) == ""
    assert local_time("hier") == "hier"
