"""The people who sign in to the station's web pages, and their sessions.

Passwords and bench PINs are kept as argon2id hashes (imager.store.passwords,
shared with the portal's accounts). A session lives on the station: the
browser's cookie holds a random token whose SHA-256 is the session's key, so a
copy of the registry opens no session; disabling a user ends its sessions at
their next request. A user who gets a password wrong LOCK_AFTER times in a row
is locked for LOCK_MINUTES (a person, not a script, signs in at the bench).

The first coordinator is made through a one-time setup link (SETUP_MINUTES),
printed on the station's console at start while no coordinator exists.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from imager.errors import NotFound, UsageError
from imager.store.db import utcnow
from imager.store.models import SetupLink, Technician, User, WebAction, WebSession
from imager.store.passwords import LOCK_AFTER as LOCK_AFTER
from imager.store.passwords import LOCK_MINUTES as LOCK_MINUTES
from imager.store.passwords import MIN_PASSWORD as MIN_PASSWORD
from imager.store.passwords import WRONG as WRONG
from imager.store.passwords import (
    check_password,
    hash_secret,
    token_key,
    try_password,
    verified,
)

ROLES = ("technician", "supervisor", "coordinator")
ROLE_NAMES = {"technician": ("technicien ou technicienne", "technician"),
              "supervisor": ("superviseur ou superviseuse", "supervisor"),
              "coordinator": ("coordination", "coordinator")}
PIN_DIGITS = (4, 8)
SESSION_HOURS = 12          # a working day at the bench
SETUP_MINUTES = 60

_sha = token_key


@dataclass(frozen=True)
class Person:
    """Who a session is: the user who signed in, and who acts now (the PIN switch)."""

    session: str          # the session's key (not the cookie's token)
    user_id: int
    acting_id: int
    login: str
    name: str             # who acts: the name every action is recorded with
    role: str
    level: int            # habilitation (imager.registry.habilitations)
    technician_id: int | None
    csrf: str
    shared: bool          # someone switched in with a PIN on this session


LEVELS = (1, 2, 3)


def check_level(level: int) -> None:
    if level not in LEVELS:
        raise UsageError(f"niveau d'habilitation {level} / habilitation level: use 1, 2 or 3")


def find_user(s: Session, login: str) -> User:
    """The account of `login` (NotFound otherwise)."""
    user = s.scalar(select(User).where(User.login == login.strip().lower()))
    if user is None:
        raise NotFound(f"aucun utilisateur / no user {login!r}")
    return user


def set_level(s: Session, login: str, level: int) -> User:
    """A person's habilitation level, as a supervisor decides it."""
    check_level(level)
    user = find_user(s, login)
    user.level = level
    return user


def _check_pin(pin: str) -> None:
    if not pin.isdigit() or not PIN_DIGITS[0] <= len(pin) <= PIN_DIGITS[1]:
        raise UsageError(f"le code PIN a {PIN_DIGITS[0]} à {PIN_DIGITS[1]} chiffres / the PIN "
                         f"has {PIN_DIGITS[0]} to {PIN_DIGITS[1]} digits")


def create_user(s: Session, *, login: str, name: str, role: str, password: str,
                by: str, pin: str | None = None, level: int = 1) -> User:
    """A new user (habilitation `level`, 1 to 3); a person gets the technicians' record
    certificates name."""
    check_level(level)
    login, name = login.strip().lower(), " ".join(name.split())
    if role not in ROLES:
        raise UsageError(f"rôle inconnu / unknown role {role!r}: use {', '.join(ROLES)}")
    if not login or not login.replace(".", "").replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"identifiant {login!r} / login: letters, digits, '.', '-', '_'")
    if not name:
        raise UsageError("nom manquant / name missing: give the person's name")
    if s.scalar(select(User).where(User.login == login)) is not None:
        raise UsageError(f"l'identifiant {login} existe déjà / login {login} is taken")
    check_password(password)
    tech = s.scalar(select(Technician).where(Technician.name == name))
    if tech is None:
        tech = Technician(name=name, created_at=utcnow())
        s.add(tech)
        s.flush()
    user = User(login=login, name=name, role=role, password_hash=hash_secret(password),
                level=level, technician_id=tech.id, active=True, failed_logins=0,
                created_at=utcnow(), created_by=by)
    if pin is not None:
        _check_pin(pin)
        user.pin_hash = hash_secret(pin)
    s.add(user)
    s.flush()
    return user


def sign_in(s: Session, login: str, password: str) -> tuple[str, Person] | str:
    """A new session for `login` (its cookie token and who it is), or why not (the
    same for an unknown login and a wrong password). Not an exception: a wrong
    password is counted in the same transaction, which must be committed."""
    user = s.scalar(select(User).where(User.login == login.strip().lower()))
    now = utcnow()
    refused = try_password(user, password, usable=user is not None and user.active, now=now)
    if refused is not None:
        return refused
    assert user is not None
    token = secrets.token_urlsafe(32)
    row = WebSession(id=_sha(token), user_id=user.id, acting_id=None,
                     csrf=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
                     expires_at=now + timedelta(hours=SESSION_HOURS))
    s.add(row)
    s.flush()
    return token, _person(row, user, user)


def session_for(s: Session, token: str | None) -> Person | None:
    """Who the cookie's token is, or None (no such session, ended, expired, its user
    disabled): seen now."""
    if not token:
        return None
    row = s.get(WebSession, _sha(token))
    now = utcnow()
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    user = s.get(User, row.user_id)
    acting = s.get(User, row.acting_id) if row.acting_id is not None else user
    if user is None or acting is None or not user.active or not acting.active:
        row.ended_at = now
        return None
    row.last_seen_at = now
    return _person(row, user, acting)


def _person(row: WebSession, user: User, acting: User) -> Person:
    return Person(session=row.id, user_id=user.id, acting_id=acting.id, login=acting.login,
                  name=acting.name, role=acting.role, level=acting.level,
                  technician_id=acting.technician_id,
                  csrf=row.csrf, shared=row.acting_id is not None)


def switch(s: Session, person: Person, login: str, pin: str) -> None:
    """On a shared tablet: `login` acts from now on, proven by their PIN; the session
    stays open (nobody is signed out of the record)."""
    user = s.scalar(select(User).where(User.login == login.strip().lower()))
    if user is None or not user.active or not verified(user.pin_hash, pin):
        raise PermissionError("identifiant ou code PIN incorrect / wrong login or PIN")
    row = s.get(WebSession, person.session)
    if row is None:
        raise NotFound("session ended: sign in again")
    row.acting_id = user.id
    row.csrf = secrets.token_urlsafe(32)      # a new person, a new form token


def sign_out(s: Session, person: Person) -> None:
    row = s.get(WebSession, person.session)
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()


def disable(s: Session, login: str) -> None:
    """The user can no longer sign in; their sessions end at their next request."""
    user = s.scalar(select(User).where(User.login == login.strip().lower()))
    if user is None:
        raise NotFound(f"aucun utilisateur / no user {login!r}")
    user.active = False


def needs_setup(s: Session) -> bool:
    return not s.scalar(select(func.count()).select_from(User).where(
        User.role == "coordinator", User.active.is_(True)))


def new_setup_link(s: Session) -> str:
    """A one-time token for the first coordinator (earlier ones are void)."""
    now = utcnow()
    for old in s.scalars(select(SetupLink).where(SetupLink.used_at.is_(None))):
        old.used_at = now
    token = secrets.token_urlsafe(24)
    s.add(SetupLink(token_sha256=_sha(token), created_at=now,
                    expires_at=now + timedelta(minutes=SETUP_MINUTES)))
    return token


def setup_valid(s: Session, token: str) -> bool:
    row = s.scalar(select(SetupLink).where(SetupLink.token_sha256 == _sha(token)))
    return row is not None and row.used_at is None and row.expires_at > utcnow() \
        and needs_setup(s)


def complete_setup(s: Session, token: str, *, login: str, name: str, password: str) -> User:
    """The first coordinator, made with the setup link (which is then used up)."""
    row = s.scalar(select(SetupLink).where(SetupLink.token_sha256 == _sha(token)))
    if row is None or row.used_at is not None or row.expires_at <= utcnow() \
            or not needs_setup(s):
        raise PermissionError("lien de configuration inconnu, déjà utilisé ou expiré / setup "
                              "link unknown, used or expired: restart the station for a new "
                              "one")
    row.used_at = utcnow()
    return create_user(s, login=login, name=name, role="coordinator", password=password,
                       by="setup link", level=LEVELS[-1])


def list_users(s: Session) -> list[User]:
    return list(s.scalars(select(User).order_by(User.role, User.name)))


def record(s: Session, person: Person, action: str, target: str,
           detail: dict[str, object] | None = None) -> None:
    """Who did `action` on `target` (an account, an agent), kept for the record."""
    s.add(WebAction(at=utcnow(), actor=f"{person.name} ({person.login})", action=action,
                    target=target, detail=detail))


def actions(s: Session, limit: int = 200) -> list[WebAction]:
    return list(s.scalars(select(WebAction).order_by(WebAction.id.desc()).limit(limit)))

