"""The board: the technician's home, one card per drive an agent sees, with its
state in words, its job's progress (speed, time left), the next step and what
may be done now. The page keeps itself up to date: `/board/events` sends, as
Server-Sent Events, each card that changed, rendered by the same template."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.erase.engines import ENGINES
from imager.model import ErasePlan
from imager.registry import items, machines
from imager.registry.accounts import Person
from imager.registry.habilitations import Habilitations
from imager.station.push import PushStatus
from imager.station.service import Station
from imager.station.web.auth import posted, signed_in
from imager.station.web.detail import images
from imager.station.web.drive_actions import job_started
from imager.station.web.netboot import boots
from imager.station.web.offers import LIVE, offers
from imager.station.web.pages import fragment, render
from imager.station.web.sticks import sticks
from imager.store.models import Agent, Deployment, Drive, Job, Machine

# What to do next, said for the board (no command line at the bench).
NEXT: dict[str, tuple[str, str]] = {
    "inventoried": ("Lancer l'effacement avec le bouton.", "Start the erasure with the button."),
    "erasing": ("Attendre : la page montre l'avancement.", "Wait: the page shows the progress."),
    "erased": ("Le certificat arrive dans un instant.", "The certificate comes in a moment."),
    "erase_failed": ("Relancer l'effacement. S'il échoue encore, demander à un superviseur "
                     "la destruction du disque.", "Erase again. If it fails again, ask a "
                     "supervisor to have the drive destroyed."),
    "certified": ("Installer le système, ou ranger le disque pour le réemploi.",
                  "Install the system, or store the drive for reuse."),
    "to_destroy": ("Détruire le disque devant un témoin ; un superviseur l'enregistre.",
                   "Destroy the drive in front of a witness; a supervisor records it."),
    "imaging": ("Attendre : le système s'installe.", "Wait: the system is being installed."),
    "imaged": ("Le système est installé : remettre le disque dans son ordinateur.",
               "The system is installed: put the drive back in its computer."),
    "image_failed": ("Relancer l'installation. Si elle échoue encore, effacer le disque "
                     "puis réinstaller.", "Install again. If it fails again, erase the "
                     "drive, then install again."),
}
MIN_INTERVAL = 0.1         # seconds between two updates sent to one page
# Seconds between two looks at the board's panels (the boot service, another process,
# writes the network boots); without any change, a comment then keeps the stream open.
PANELS_EVERY = 5.0


class Meter:
    """Speed and time left of each job, from the successive progress it reports."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, int, int, float]] = {}   # job: t, index, done, rate

    def read(self, job: int, progress: dict[str, Any], phases: int = 1) -> dict[str, Any]:
        """The progress of `job` with its speed and the time left for its `phases`
        (write passes, then the read-back) from the one it is in."""
        now, index, done = time.monotonic(), int(progress["index"]), int(progress["done"])
        total = int(progress["total"]) or 1
        t0, index0, done0, rate = self._last.get(job, (now, index, done, 0.0))
        if index == index0 and done > done0 and now > t0:
            fresh = (done - done0) / (now - t0)
            rate = fresh if rate == 0 else 0.7 * rate + 0.3 * fresh
        if (index, done) != (index0, done0) or job not in self._last:
            self._last[job] = (now, index, done, rate)
        remaining = max(0, phases - index) * total - done
        left = remaining / rate if rate > 0 else None
        return {**progress, "percent": round(100 * done / total), "rate": rate,
                "left": left, "phases": max(phases, index + 1)}


def phases(plan: dict[str, Any] | None) -> int:
    """How many phases an erase plan has: its engine's steps, then its read-back."""
    if not plan or "steps" not in plan:
        return 1
    try:
        erase = ErasePlan.from_dict(plan)
        steps = ENGINES[erase.engine].for_plan(erase).steps(erase)
    except (KeyError, TypeError, ValueError):
        return 1
    return steps + (erase.verify != "none")


def cards(station: Station, meter: Meter) -> list[dict[str, Any]]:
    """The drives, those plugged in first."""
    with station.registry.session(readonly=True) as s:
        drives = [items.drive_summary(s, d) for d in s.scalars(
            select(Drive).order_by(Drive.present.desc(), Drive.id))]
        live = {c["job"]["id"] for c in drives if c["job"] and c["job"]["state"] in LIVE}
        plans: dict[int, Any] = dict(s.execute(select(Job.id, Job.plan).where(
            Job.id.in_(live))).all()) \
            if live else {}
        systems = {drive: f"{name} {version}" for drive, name, version in s.execute(
            select(Deployment.drive_id, Deployment.image_name, Deployment.image_version)
            .where(Deployment.ok.is_(True)).order_by(Deployment.id))}
        laptops = {m.id: _laptop_line(s, m) for m in s.scalars(select(Machine).where(
            Machine.id.in_({c["machine"] for c in drives if c["machine"]})))}
        held = {d.id: machines.HELD_BACK[why] for d in s.scalars(select(Drive).where(
            Drive.present.is_(True), Drive.state == "inventoried", Drive.agent_id.is_not(None)))
            if (why := machines.held_back(s, d))}
    for card in drives:
        job = card["job"]
        progress = station.progress.get(job["id"]) if job and job["state"] in LIVE else None
        card["progress"] = meter.read(job["id"], progress, phases(plans.get(job["id"]))) \
            if job and progress else None
        card["waiting"] = bool(job and job["state"] == "queued")
        card["system"] = systems.get(card["id"])
        card["laptop"] = laptops.get(card["machine"])
        said = held.get(card["id"]) or NEXT.get(
            "imaged" if card["system"] and card["state"] == "certified" else card["state"])
        card["next_step"] = {"fr": said[0], "en": said[1]} if said else card["next_step"]
    return drives


def _card(key: str, html: str) -> str:
    """A Server-Sent Event replacing the page's element `key` by `html`."""
    return f"event: card\ndata: {json.dumps({'id': key, 'html': html})}\n\n"


def portal_status(station: Station) -> PushStatus | None:
    """Where the pushes to the network's portal stand (None: this station does not
    push: no `--portal`)."""
    return station.pusher.status() if station.pusher is not None else None


# The board's panels beside the cards: template variable -> (template, reader); the
# page's element ids
PANELS: dict[str, tuple[str, Callable[[Station], Any]]] = {
    "boots": ("_boots.html", boots), "sticks": ("_sticks.html", sticks),
    "portal": ("_portal.html", portal_status)}
PANEL_IDS = {"boots": "boots", "sticks": "sticks", "portal": "portal-status"}


def _laptop_line(s: Session, machine: Machine) -> dict[str, Any]:
    """The laptop a drive is in, for its card: what it is, and how its live system
    was booted (network or USB, Secure Boot) as its agent is known."""
    agent = s.get(Agent, machine.agent_id) if machine.agent_id is not None else None
    secure = (agent.info or {}).get("secure_boot") if agent is not None else None
    return {"id": machine.id, "name": " ".join(filter(None, (machine.vendor, machine.model)))
            or None, "serial": machine.serial, "boot": agent.boot if agent else None,
            "secure_boot": secure if isinstance(secure, bool) else None}


class Snapshot:
    """The cards at the station's current version, read once for every open page
    (48 bays watched from several pages read the registry once per change)."""

    def __init__(self, station: Station) -> None:
        self._station, self._meter = station, Meter()
        self._lock = threading.Lock()
        self._version, self._cards = -1, list[dict[str, Any]]()

    def cards(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The cards at the current version; `fresh`: read again whatever the version
        (a page loaded by a person sees what another process, the CLI, changed too)."""
        with self._lock:
            version = self._station.version       # read first: a later change reads again
            if fresh or version != self._version:
                self._cards, self._version = cards(self._station, self._meter), version
            return self._cards


def router(station: Station, habilitations: Habilitations) -> APIRouter:
    web = APIRouter()
    snapshot = Snapshot(station)

    def context(person: Person) -> dict[str, Any]:
        """What every card needs beside its drive: who looks, what they may do."""
        return {"csrf": person.csrf, "can": habilitations.granted(person.level),
                "offers": offers, "images": images(station)}

    @web.get("/board", include_in_schema=False)
    def board(request: Request) -> Response:
        person = signed_in(station, request)
        return render(request, "board.html", {"cards": snapshot.cards(fresh=True),
                                              **{name: read(station) for name, (_, read)
                                                 in PANELS.items()},
                                              **context(person)}, person=person)

    @web.get("/board/events", include_in_schema=False)
    def events(request: Request) -> Response:
        person = signed_in(station, request)
        around = context(person)

        async def stream() -> AsyncIterator[str]:
            seen, sent = -1, dict[str, Any]()
            while not await request.is_disconnected():
                version = await anyio.to_thread.run_sync(station.wait_change, seen,
                                                         PANELS_EVERY)
                for name, (template, read) in PANELS.items():
                    # other processes write some (the boot service): looked at each
                    # time; all sent first (the page may be older than this stream)
                    data = await anyio.to_thread.run_sync(read, station)
                    if data is not None and sent.get(name, ()) != data:
                        sent[name] = data
                        yield _card(PANEL_IDS[name], fragment(
                            request, template, {name: data}, person=person))
                if version == seen:
                    yield ": still here\n\n"
                    continue
                seen = version
                now = await anyio.to_thread.run_sync(snapshot.cards)
                for card in now:            # only the cards whose data changed are rendered
                    key = f"drive-{card['id']}"
                    if sent.get(key) == card:
                        continue
                    sent[key] = card
                    yield _card(key, fragment(request, "_card.html", {"c": card, **around},
                                              person=person))
                await asyncio.sleep(MIN_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    @web.post("/board/drives/{drive_id}/erase", include_in_schema=False)
    async def erase(drive_id: int, request: Request) -> Response:
        person, _ = await posted(station, request, habilitations=habilitations,
                                  action="erase")
        return job_started(request, person,
                           lambda: station.erase(str(drive_id), technician=person.name))

    return web
