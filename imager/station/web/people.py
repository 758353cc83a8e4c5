"""The people who sign in: a coordinator creates and disables accounts; a
supervisor (or the coordinator) sets each person's habilitation level."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from imager.errors import ImagerError, NotFound
from imager.registry import accounts, activity
from imager.registry.habilitations import ACTIONS, Habilitations
from imager.station.service import Station
from imager.station.web.auth import posted, require_role, signed_in
from imager.station.web.i18n import N_
from imager.station.web.pages import not_found, render

MANAGERS = ("supervisor", "coordinator")


def router(station: Station, habilitations: Habilitations) -> APIRouter:
    web = APIRouter()

    def page(request: Request, status: int = 200, **context: object) -> Response:
        person = signed_in(station, request)
        require_role(person, *MANAGERS)
        with station.registry.session(readonly=True) as s:
            users = [{"login": u.login, "name": u.name, "role": u.role, "level": u.level,
                      "active": u.active} for u in accounts.list_users(s)]
            done = [{"at": a.at, "actor": a.actor, "action": a.action, "target": a.target}
                    for a in accounts.actions(s, limit=50)]
        actions = [{"action": a, "level": habilitations.needed[a], "fr": fr, "en": en}
                   for a, (_, fr, en) in ACTIONS.items()]
        return render(request, "people.html", {"csrf": person.csrf, "users": users,
                                               "roles": accounts.ROLES, "actions": actions,
                                               "levels": accounts.LEVELS, "done": done,
                                               **context},
                      person=person, status=status)

    @web.get("/people", include_in_schema=False)
    def people(request: Request) -> Response:
        return page(request)

    @web.get("/people/{login}", include_in_schema=False)
    def one(login: str, request: Request) -> Response:
        """A person and what they did: for managers, and for the person."""
        person = signed_in(station, request)
        if login != person.login:
            require_role(person, *MANAGERS)
        with station.registry.session(readonly=True) as s:
            try:
                user = accounts.find_user(s, login)
            except NotFound:
                return not_found(request, person, N_("No such person on this station."))
            shown: dict[str, Any] = {"login": user.login, "name": user.name, "role": user.role,
                     "level": user.level, "active": user.active}
            done = activity.of_person(s, user)
        can = [{"fr": fr, "en": en} for a, (_, fr, en) in ACTIONS.items()
               if habilitations.allows(shown["level"], a)]
        return render(request, "person.html", {"u": shown, "done": done, "can": can},
                      person=person)

    @web.post("/people", include_in_schema=False)
    async def create(request: Request) -> Response:
        person, form = await posted(station, request, roles=("coordinator",))
        try:
            with station.registry.session() as s:
                user = accounts.create_user(
                    s, login=form.get("login", ""), name=form.get("name", ""),
                    role=form.get("role", ""), password=form.get("password", ""),
                    pin=form.get("pin") or None, level=int(form.get("level") or 1),
                    by=person.name)
                accounts.record(s, person, "account_created", user.login,
                                {"role": user.role, "level": user.level})
        except (ImagerError, ValueError) as exc:
            return page(request, 400, error=str(exc))
        return RedirectResponse("/people", 303)

    @web.post("/people/{login}/level", include_in_schema=False)
    async def level(login: str, request: Request) -> Response:
        person, form = await posted(station, request, roles=MANAGERS)
        try:
            with station.registry.session() as s:
                user = accounts.set_level(s, login, int(form.get("level") or 0))
                accounts.record(s, person, "level_set", user.login, {"level": user.level})
        except (ImagerError, ValueError) as exc:
            return page(request, 400, error=str(exc))
        return RedirectResponse("/people", 303)

    @web.post("/people/{login}/disable", include_in_schema=False)
    async def disable(login: str, request: Request) -> Response:
        person, _ = await posted(station, request, roles=("coordinator",))
        try:
            with station.registry.session() as s:
                accounts.disable(s, login)
                accounts.record(s, person, "account_disabled", login)
        except ImagerError as exc:
            return page(request, 400, error=str(exc))
        return RedirectResponse("/people", 303)

    return web
