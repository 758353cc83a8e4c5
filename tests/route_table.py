"""The station's route table, read from its app (`create_app`): for the tests
that must reach every route, so that a new route cannot be forgotten."""

from __future__ import annotations

from pathlib import Path

import fastapi.routing

from imager.settings import Settings
from imager.station.api import create_app
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.store.db import Registry


def routes(folder: Path) -> list[tuple[str, str]]:
    """Every (method, path) of the station's app, read from its route table (an
    empty registry in `folder`); the pages' assets are GET /static/style.css."""
    settings = Settings(data_dir=folder)
    registry = Registry.open(settings)
    try:
        app = create_app(Station(settings, registry, ServicePolicy()))
    finally:
        registry.close()
    # FastAPI >= 0.165 keeps included routers as such: iter_route_contexts flattens
    # them; before, app.routes was flat already.
    flatten = getattr(fastapi.routing, "iter_route_contexts", list)
    found = []
    for route in flatten(app.routes):
        methods, path = getattr(route, "methods", None), getattr(route, "path", None)
        if path == "/static":                 # the pages' assets: their files, public
            found.append(("GET", "/static/style.css"))
            continue
        assert methods and path, f"{route!r}: a route the walk cannot call"
        found += [(method, path) for method in sorted(methods)]
    return sorted(found)
