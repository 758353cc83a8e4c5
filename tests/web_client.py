"""The station's web pages in-process (FastAPI's TestClient over a real registry):
a station that waits for people (no automatic erase or certificate), accounts,
sign-in, the form token, and a dock agent reporting drives by their evidence."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence
from fastapi.testclient import TestClient

from imager.protocol import events as ev
from imager.protocol.proof import public_hex
from imager.registry import accounts
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.store.db import Registry

PASSWORD = "correct horse battery"
_ids = itertools.count(1)


def quiet_station(settings: Settings, registry: Registry) -> Station:
    """A station that starts nothing by itself: people decide."""
    return Station(settings, registry, ServicePolicy(auto_erase="never", auto_certify=False))


@contextmanager
def browser(station: Station) -> Iterator[TestClient]:
    with TestClient(create_app(station), base_url="https://station.test") as client:
        yield client


def token_of(html: str) -> str:
    """The form token of a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def user(station: Station, login: str, role: str = "technician", pin: str | None = None,
         level: int = 1) -> str:
    """An account (its display name)."""
    with station.registry.session() as s:
        made = accounts.create_user(s, login=login, name=f"{login.title()} Martin", role=role,
                                    password=PASSWORD, by="test", pin=pin, level=level)
        return made.name


def sign_in(web: TestClient, login: str, password: str = PASSWORD) -> int:
    """Sign in through the form: the answer's status (303 when it worked)."""
    page = web.get("/login")
    resp = web.post("/login", data={"csrf": token_of(page.text), "login": login,
                                    "password": password}, follow_redirects=False)
    return resp.status_code


def send(station: Station, agent: int, kind: str, data: dict[str, Any],
         at: str = "2026-12-06T09:00:00Z") -> None:
    """One event of `agent` (said at `at`), which the station must apply."""
    n = next(_ids)
    (answer,) = station.receive(agent, ev.parse_events([{
        "id": f"b{n}", "seq": n, "at": at, "v": 2, "kind": kind,
        "data": data}]))
    assert answer["outcome"] == "applied", answer


def dock(station: Station, serial: str = "S4DX01", **drive: Any) -> int:
    """A dock agent of the station with one drive plugged in (a Samsung SSD unless
    told): the agent's id."""
    agent = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="dock-1",
                                host="bench")
    send(station, agent, "drive_attached", {"evidence": evidence(
        drive.pop("path", "/dev/sdb"), drive.pop("size", 1 << 30), serial=serial,
        model=drive.pop("model", "Samsung SSD 860"), **drive)})
    return agent
