"""Who is calling: an agent (its own token), an operator (the technicians'
tools), or either of them (the image store)."""

# No `from __future__ import annotations`: FastAPI reads these dependencies'
# parameters from their live annotations.
from collections.abc import Callable
from typing import Annotated

from fastapi import Header, HTTPException

from imager.station.service import Station

Check = Callable[..., object]


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer TOKEN` header (401 without one)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "jeton manquant / missing token: send "
                                 "'Authorization: Bearer TOKEN'")
    return authorization.removeprefix("Bearer ").strip()


def agent_check(station: Station) -> Callable[..., int]:
    """A dependency giving the calling agent's id."""
    def agent(authorization: Annotated[str | None, Header()] = None) -> int:
        try:
            return station.agent_of(bearer(authorization))
        except PermissionError as exc:
            raise HTTPException(401, str(exc)) from exc
    return agent


def operator_check(station: Station) -> Callable[..., None]:
    """A dependency letting only the operator token through."""
    def operator(authorization: Annotated[str | None, Header()] = None) -> None:
        if not station.tokens.is_operator(bearer(authorization)):
            raise HTTPException(401, "jeton opérateur invalide / wrong operator token: see "
                                     f"{station.tokens.path(station.settings)}")
    return operator


def reader_check(station: Station) -> Callable[..., None]:
    """A dependency letting agents and operators through (both read the image store)."""
    def reader(authorization: Annotated[str | None, Header()] = None) -> None:
        token = bearer(authorization)
        if station.tokens.is_operator(token):
            return
        try:
            station.agent_of(token)
        except PermissionError as exc:
            raise HTTPException(401, f"{exc}: use an agent or operator token") from exc
    return reader
