"""The portal's accounts: donors (a company, a town hall, an association) and the
network's coordinators. No self sign-up: a coordinator invites (`invite`, from
`imager portal invite` or the coordinators' page), which gives a single-use link
that expires after INVITE_DAYS (only its token's SHA-256 is kept); the invited person
opens it, chooses a login and a password (`accept`), then signs in. A coordinator
can make a new link (`reinvite`: a link lost or expired, or a password forgotten; the
account's older links stop working) and disable or enable an account (`set_active`).

Passwords, tokens and the per-account lock are the station's (imager.store.passwords);
sessions live in the portal's database (the cookie holds a token whose SHA-256 is
the session's key) and end after SESSION_HOURS, at sign-out, or when the account
is disabled.

Which donations a donor sees: those whose donor SIRET is one of the account's, and
those of the (station, donor number) pairs it was given, across every station
(imager.portal.donors).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.errors import NotFound, UsageError
from imager.portal import models as m
from imager.store.db import utcnow
from imager.store.passwords import check_password, hash_secret, new_token, token_key, try_password
from imager.store.people import check_siret
from imager.web.i18n import N_

ROLES = ("donor", "coordinator")
INVITE_DAYS = 7
SESSION_HOURS = 8
MAX_SIRETS = 50
MAX_DONORS = 200
INVITATION_PATH = "/compte/invitation/"
_LOGIN = re.compile(r"[a-z0-9][a-z0-9._@+-]{1,199}")


@dataclass(frozen=True)
class Who:
    """Who a session is."""

    session: str        # the session's key (not the cookie's token)
    account_id: int
    name: str
    login: str
    role: str
    csrf: str


@dataclass(frozen=True)
class Invited:
    """An invitation just made: the account and the link's token (shown once)."""

    account_id: int
    name: str
    token: str
    new_password: bool = False     # the account was set up: the link renews its password

    def link(self, portal_url: str) -> str:
        return f"{portal_url.rstrip('/')}{INVITATION_PATH}{self.token}"


def workshop(station: m.Station) -> str:
    """The name a person knows a station by: its certificate's organisation, else its
    common name, else the whole subject."""
    try:
        name = x509.Name.from_rfc4514_string(station.name)
    except ValueError:
        return station.name
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        found = name.get_attributes_for_oid(oid)
        if found:
            return str(found[0].value)
    return station.name


def find_station(s: Session, wanted: str) -> m.Station:
    """A station by its key (sha256:…, or 12 hex digits of it or more), its certificate's
    subject, or its organisation's name (UsageError if none or several match)."""
    wanted = wanted.strip()
    hexa = wanted.removeprefix("sha256:").lower()
    stations = list(s.scalars(select(m.Station).order_by(m.Station.id)))
    found = [st for st in stations if st.key == wanted or st.name == wanted
             or (len(hexa) >= 12 and st.key.removeprefix("sha256:").startswith(hexa))]
    if not found:
        found = [st for st in stations if workshop(st).casefold() == wanted.casefold()]
    if len(found) == 1:
        return found[0]
    known = "; ".join(f"{workshop(st)} ({st.key})" for st in stations) or "none yet"
    if not found:
        raise UsageError(f"aucune station « {wanted} » / no station {wanted!r} has pushed to "
                         f"this portal: give the name or key of one of: {known}")
    raise UsageError(f"plusieurs stations « {wanted} » / several stations are {wanted!r}: "
                     f"give the key of one of: {known}")


def _donors(s: Session, pairs: list[str]) -> list[tuple[int, str]]:
    """(station id, donor number) of each "STATION:DONOR_REF" (the last ':' splits)."""
    found = []
    for pair in pairs:
        station, _, ref = pair.rpartition(":")
        if not station or not ref.strip():
            raise UsageError(f"--donor {pair!r}: give STATION:DONOR_REF, e.g. "
                             "\"Atelier de Gap:D-0042\" (the donor's number at that station)")
        found.append((find_station(s, station).id, ref.strip()[:64]))
    return list(dict.fromkeys(found))


def invite(s: Session, *, name: str, by: str, role: str = "donor", sirets: Sequence[str] = (),
           donors: Sequence[str] = ()) -> Invited:
    """A new account for `name` and its invitation (`sirets` and `donors` say which
    donations it sees; "STATION:DONOR_REF" for `donors`)."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise UsageError("nom manquant ou trop long / name missing or too long: give the "
                         "organisation's name (200 characters at most)")
    if role not in ROLES:
        raise UsageError(f"rôle inconnu / unknown role {role!r}: use {' or '.join(ROLES)}")
    if len(sirets) > MAX_SIRETS or len(donors) > MAX_DONORS:
        raise UsageError(f"trop de numéros / too many: at most {MAX_SIRETS} SIRET and "
                         f"{MAX_DONORS} donors per account")
    checked = list(dict.fromkeys(str(check_siret(x)) for x in sirets if x.strip()))
    pairs = _donors(s, list(donors))
    now = utcnow()
    account = m.Account(name=name, role=role, sirets=checked, active=True, failed_logins=0,
                        created_at=now, created_by=by[:300])
    s.add(account)
    s.flush()
    for station_id, ref in pairs:
        s.add(m.AccountDonor(account_id=account.id, station_id=station_id, donor_ref=ref))
    return _new_invitation(s, account, by)


def _new_invitation(s: Session, account: m.Account, by: str) -> Invited:
    """A single-use link for `account`; the links it had still open stop working."""
    now = utcnow()
    _close_invitations(s, account.id, now)
    token = new_token()
    s.add(m.Invitation(account_id=account.id, token_sha256=token_key(token), created_at=now,
                       expires_at=now + timedelta(days=INVITE_DAYS), created_by=by[:300]))
    s.flush()
    return Invited(account.id, account.name, token, account.set_up_at is not None)


def _close_invitations(s: Session, account_id: int, now: datetime) -> None:
    for row in s.scalars(select(m.Invitation).where(m.Invitation.account_id == account_id,
                                                    m.Invitation.used_at.is_(None),
                                                    m.Invitation.expires_at > now)):
        row.expires_at = now


def _end_sessions(s: Session, account_id: int, now: datetime) -> None:
    for row in s.scalars(select(m.AccountSession).where(
            m.AccountSession.account_id == account_id, m.AccountSession.ended_at.is_(None))):
        row.ended_at = now


def _account(s: Session, account_id: int) -> m.Account:
    account = s.get(m.Account, account_id)
    if account is None:
        raise NotFound(f"aucun compte {account_id} / no account {account_id}")
    return account


def reinvite(s: Session, account_id: int, *, by: str) -> Invited:
    """A new link for the account (its invitation lost or expired, or its password
    forgotten: the person chooses a new one, and its open sessions end)."""
    account = _account(s, account_id)
    if not account.active:
        raise UsageError(f"le compte {account.name} est désactivé : réactivez-le d'abord / "
                         f"the account {account.name} is disabled: enable it first")
    return _new_invitation(s, account, by)


def set_active(s: Session, account_id: int, active: bool, *, by: Who) -> m.Account:
    """Enable or disable an account. Disabled, it can no longer sign in: its sessions
    and open links end now. A coordinator does not disable its own account."""
    account = _account(s, account_id)
    if not active and account.id == by.account_id:
        raise UsageError("vous ne pouvez pas désactiver votre propre compte : demandez-le à "
                         "une autre personne de la coordination / you cannot disable your "
                         "own account: ask another coordinator")
    account.active = active
    if not active:
        now = utcnow()
        _end_sessions(s, account.id, now)
        _close_invitations(s, account.id, now)
    return account


def invitation(s: Session, token: str) -> m.Account | None:
    """The account a still valid invitation token sets up (None: unknown, used, expired)."""
    row = s.scalar(select(m.Invitation).where(m.Invitation.token_sha256 == token_key(token)))
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    account = s.get(m.Account, row.account_id)
    return account if account is not None and account.active else None


def accept(s: Session, token: str, *, login: str, password: str) -> m.Account:
    """The invited person's login and password (PermissionError: the link is not valid;
    UsageError: the login or password is not)."""
    account = invitation(s, token)
    if account is None:
        raise PermissionError("lien d'invitation inconnu, déjà utilisé ou expiré / "
                              "invitation link unknown, used or expired: ask the network's "
                              "coordination for a new one")
    login = login.strip().lower()
    if not _LOGIN.fullmatch(login):
        raise UsageError("identifiant invalide / invalid login: 2 to 200 letters, digits, "
                         "'.', '-', '_', '@' or '+' (an e-mail address will do)")
    taken = s.scalar(select(m.Account.id).where(m.Account.login == login))
    if taken is not None and taken != account.id:
        raise UsageError(f"l'identifiant {login} existe déjà / login {login} is taken: "
                         "choose another")
    check_password(password)
    now = utcnow()
    if account.set_up_at is not None:
        _end_sessions(s, account.id, now)          # a new password: the old sessions end
    account.login, account.password_hash = login, hash_secret(password)
    account.set_up_at, account.failed_logins, account.locked_until = now, 0, None
    for row in s.scalars(select(m.Invitation).where(m.Invitation.account_id == account.id,
                                                    m.Invitation.used_at.is_(None))):
        row.used_at = now           # this one, and any other still open for the account
    return account


def sign_in(s: Session, login: str, password: str) -> tuple[str, Who] | str:
    """A new session (its cookie token and who it is), or why not (the same for an
    unknown login and a wrong password). A wrong password is counted in the same
    transaction, which must be committed."""
    account = s.scalar(select(m.Account).where(m.Account.login == login.strip().lower()))
    now = utcnow()
    usable = account is not None and account.active and account.password_hash is not None
    refused = try_password(account, password, usable=usable, now=now)
    if refused is not None:
        return refused
    assert account is not None
    token = new_token()
    row = m.AccountSession(id=token_key(token), account_id=account.id, csrf=new_token(),
                           created_at=now, last_seen_at=now,
                           expires_at=now + timedelta(hours=SESSION_HOURS))
    s.add(row)
    s.flush()
    return token, _who(row, account)


def session_for(s: Session, token: str | None) -> Who | None:
    """Who the cookie's token is, or None (no such session, ended, expired, account
    disabled)."""
    if not token or len(token) > 200:
        return None
    row = s.get(m.AccountSession, token_key(token))
    now = utcnow()
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    account = s.get(m.Account, row.account_id)
    if account is None or not account.active:
        row.ended_at = now
        return None
    row.last_seen_at = now
    return _who(row, account)


def _who(row: m.AccountSession, account: m.Account) -> Who:
    return Who(session=row.id, account_id=account.id, name=account.name,
               login=account.login or "", role=account.role, csrf=row.csrf)


def sign_out(s: Session, who: Who) -> None:
    row = s.get(m.AccountSession, who.session)
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()


@dataclass(frozen=True)
class Listed:
    id: int
    name: str
    role: str
    login: str | None
    active: bool
    sirets: list[str]
    donors: list[str]           # "workshop: donor number"
    state: str                  # invited | invitation expired | set up | disabled


def list_accounts(s: Session) -> list[Listed]:
    """Every account, for the coordinators."""
    stations = {st.id: workshop(st) for st in s.scalars(select(m.Station))}
    pairs: dict[int, list[str]] = {}
    for row in s.scalars(select(m.AccountDonor).order_by(m.AccountDonor.id)):
        pairs.setdefault(row.account_id, []).append(f"{stations[row.station_id]}: "
                                                    f"{row.donor_ref}")
    open_until: dict[int, datetime] = {}            # each account's latest link
    for link in s.scalars(select(m.Invitation).where(m.Invitation.used_at.is_(None))):
        open_until[link.account_id] = max(link.expires_at,
                                           open_until.get(link.account_id, link.expires_at))
    now, out = utcnow(), []
    for a in s.scalars(select(m.Account).order_by(m.Account.role, m.Account.name)):
        state = N_("disabled") if not a.active else N_("set up") if a.set_up_at else \
            N_("invited") if open_until.get(a.id, now) > now else N_("invitation expired")
        out.append(Listed(a.id, a.name, a.role, a.login, a.active, list(a.sirets),
                          pairs.get(a.id, []), state))
    return out
