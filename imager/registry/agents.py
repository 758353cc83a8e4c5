"""Agents' identities: enrolled one at a time, each by its own public key.

No shared secret grants an identity. An agent that presents a new key is
enrolled in one of three ways:
- a **boot token**: single use, valid minutes, bound to the MAC address and
  SMBIOS serial of the laptop the station booted (the boot service puts it on
  the kernel command line) -> active at once;
- a **pairing code**: the station gives the pending agent a code it shows on
  its screen; a technician types it here -> active;
- **approval**: a technician approves a pending agent, having compared the
  fingerprint its screen shows -> active.
An agent is looked up by its key, never by the name it claims; technicians
rename and revoke agents, and a revoked agent is refused at its next request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.errors import NotFound, UsageError
from imager.protocol.proof import fingerprint, key_id
from imager.store.db import as_utc, utcnow
from imager.store.models import Agent, BootToken

PAIRING_MINUTES = 10
PAIRING_TRIES = 5            # wrong codes typed, after which a pending code is void
BOOT_TOKEN_MINUTES = 10      # at most
MAX_WAITING = 32             # new keys waiting for a person at once (a flood is refused)
KINDS = ("dock", "machine")
# How an agent may say its machine was booted; "network" and "station" are known, not said
DECLARED_BOOTS = ("usb", "installed")


@dataclass(frozen=True)
class Enrolled:
    """What an agent is told when it enrols: its number, its state, and for a
    pending agent the code to show a technician."""

    agent: int
    state: str
    fingerprint: str
    pairing_code: str | None = None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def by_key(s: Session, public_key_hex: str) -> Agent | None:
    return s.scalar(select(Agent).where(Agent.key_id == key_id(public_key_hex)))


def enrol(s: Session, public_key_hex: str, *, name: str, kind: str, host: str,
          info: dict[str, Any] | None, boot_token: str | None = None,
          macs: tuple[str, ...] = (), serial: str | None = None) -> Enrolled:
    """Enrol the agent holding `public_key_hex` (it proved it): active with a
    valid boot token, else pending with a pairing code. The same key enrols
    once: asked again, it is told its state (a pending one gets a new code)."""
    if kind not in KINDS:
        raise UsageError(f"agent kind {kind!r}: use dock or machine")
    agent = by_key(s, public_key_hex)
    if agent is None and not boot_token and _waiting(s) >= MAX_WAITING:
        raise PermissionError(f"{MAX_WAITING} agents already wait for a technician: pair or "
                              "approve them (imager agents list --pending), or let their codes "
                              f"expire ({PAIRING_MINUTES} minutes), then start this one again")
    if agent is None:
        agent = _new_agent(s, public_key_hex, name=name, kind=kind, host=host, info=info)
    if agent.state == "revoked":
        raise PermissionError(f"agent {agent.id} was revoked ({agent.revoked_reason}): a "
                              "revoked key never enrols again; start the agent with a new key")
    if agent.state == "pending" and boot_token:
        _use_boot_token(s, agent, boot_token, macs, serial)
    code = _new_pairing_code(agent) if agent.state == "pending" else None
    return Enrolled(agent.id, agent.state, fingerprint(public_key_hex), code)


def _new_agent(s: Session, public_key_hex: str, *, name: str, kind: str, host: str,
               info: dict[str, Any] | None) -> Agent:
    """A pending agent for a key seen for the first time."""
    declared = (info or {}).get("boot")
    agent = Agent(name=name, kind=kind, host=host, info=info, created_at=utcnow(),
                  boot=declared if declared in DECLARED_BOOTS else None,
                  public_key=public_key_hex, key_id=key_id(public_key_hex), state="pending",
                  pairing_failures=0)
    s.add(agent)
    s.flush()
    return agent


def _waiting(s: Session) -> int:
    """Pending agents whose pairing code still runs."""
    now = utcnow()
    return sum(1 for expires in s.scalars(select(Agent.pairing_expires_at).where(
        Agent.state == "pending")) if (as_utc(expires) or now) > now)


def enrol_local(s: Session, public_key_hex: str, *, name: str, kind: str, host: str) -> int:
    """The station's own dock agent (same process, same machine): active."""
    agent = by_key(s, public_key_hex) or _new_agent(s, public_key_hex, name=name, kind=kind,
                                                     host=host, info=None)
    if agent.state == "pending":
        _activate(agent, "the station's own process (local dock agent)")
        agent.boot = "station"
    s.flush()
    return agent.id


def _activate(agent: Agent, how: str) -> None:
    agent.state, agent.enrolled_by, agent.enrolled_at = "active", how[:300], utcnow()
    agent.pairing_sha256 = agent.pairing_expires_at = None


def _new_pairing_code(agent: Agent) -> str:
    code = f"{secrets.randbelow(10**8):08d}"
    agent.pairing_sha256 = _sha(code)
    agent.pairing_expires_at = utcnow() + timedelta(minutes=PAIRING_MINUTES)
    agent.pairing_failures = 0
    return f"{code[:4]}-{code[4:]}"


def issue_boot_token(s: Session, *, mac: str, serial: str, by: str,
                     minutes: int = BOOT_TOKEN_MINUTES) -> str:
    """A single-use boot token for the laptop with `mac` and `serial`."""
    mac, serial = _mac(mac), serial.strip()
    if not serial:
        raise UsageError("a boot token is bound to the laptop's SMBIOS serial: give --serial")
    if not 0 < minutes <= BOOT_TOKEN_MINUTES:
        raise UsageError(f"a boot token is valid 1 to {BOOT_TOKEN_MINUTES} minutes")
    token = secrets.token_urlsafe(24)
    now = utcnow()
    s.add(BootToken(token_sha256=_sha(token), mac=mac, serial=serial, created_at=now,
                    expires_at=now + timedelta(minutes=minutes), created_by=by))
    return token


def _mac(text: str) -> str:
    mac = text.strip().lower().replace("-", ":")
    if len(mac) != 17 or any(c not in "0123456789abcdef:" for c in mac):
        raise UsageError(f"{text!r} is not a MAC address: write it as 52:54:00:12:34:56")
    return mac


def _use_boot_token(s: Session, agent: Agent, token: str, macs: tuple[str, ...],
                    serial: str | None) -> None:
    """Activate `agent` with a boot token; PermissionError says why it is refused."""
    row = s.scalar(select(BootToken).where(BootToken.token_sha256 == _sha(token)))
    if row is None:
        raise PermissionError("unknown boot token: boot the laptop from the station again")
    if row.used_at is not None:
        raise PermissionError(f"boot token {row.id} was already used: a boot token enrols "
                              "one agent; boot the laptop from the station again")
    if row.expires_at < utcnow():           # loaded aware (imager.store.db)
        raise PermissionError(f"boot token {row.id} expired: boot the laptop again")
    if row.mac not in {m.strip().lower() for m in macs} or (
            (serial or "").strip().lower() != row.serial.lower()):
        raise PermissionError(f"boot token {row.id} belongs to another laptop (MAC, serial)")
    row.used_at, row.agent_id = utcnow(), agent.id
    _activate(agent, f"boot token {row.id} ({row.mac}, serial {row.serial}, "
                     f"issued by {row.created_by})")
    agent.boot = "network"


WRONG_CODE = ("code d'appairage inconnu ou expiré / unknown or expired pairing code: check "
              f"the code on the agent's screen (codes last {PAIRING_MINUTES} minutes and "
              f"allow {PAIRING_TRIES} wrong tries; restart the agent for a new one)")


def pair(s: Session, code: str, *, by: str) -> Agent | None:
    """Activate the pending agent showing `code`; None for a wrong code, which
    counts against every pending code (void after PAIRING_TRIES): the caller
    commits that count, then refuses with WRONG_CODE."""
    digits = "".join(c for c in code if c.isdigit())
    now = utcnow()
    pending = list(s.scalars(select(Agent).where(Agent.state == "pending",
                                                 Agent.pairing_sha256.is_not(None))))
    live = [a for a in pending if a.pairing_expires_at and a.pairing_expires_at > now
            and a.pairing_failures < PAIRING_TRIES]
    for agent in live:
        if hmac.compare_digest(agent.pairing_sha256 or "", _sha(digits)):
            _activate(agent, f"pairing code typed by {by}")
            return agent
    for agent in live:
        agent.pairing_failures += 1
    return None


def find_agent(s: Session, ref: str) -> Agent:
    """An agent by number or by (the start of) its key fingerprint."""
    ref = ref.strip().lstrip("#")
    if ref.isdigit() and (agent := s.get(Agent, int(ref))) is not None:
        return agent
    wanted = ref.replace("-", "").lower()
    found = [a for a in s.scalars(select(Agent).where(Agent.key_id.is_not(None)))
             if len(wanted) >= 8 and (a.key_id or "").startswith(wanted)]
    if len(found) == 1:
        return found[0]
    raise NotFound(f"aucun agent {ref!r} / no agent {ref!r}: give its number or its "
                   "fingerprint as listed by `imager agents list`")


def approve(s: Session, agent: Agent, *, by: str) -> None:
    if agent.state != "pending":
        raise UsageError(f"agent {agent.id} is {agent.state}: only a pending agent is approved")
    _activate(agent, f"approved by {by}")


def rename(agent: Agent, name: str) -> None:
    name = name.strip()
    if not 0 < len(name) <= 200:
        raise UsageError("give a name of 1 to 200 characters")
    agent.name = name


def revoke(agent: Agent, *, reason: str, by: str) -> bool:
    """Refuse the agent from its next request on, for good; False when it was
    already revoked (its first revocation, when and why, is kept)."""
    if not reason.strip():
        raise UsageError("say why the agent is revoked (--reason): it is kept with it")
    if agent.state == "revoked":
        return False
    agent.state, agent.revoked_at = "revoked", utcnow()
    agent.revoked_reason = f"{reason.strip()} (by {by})"
    return True


def summary(agent: Agent) -> dict[str, Any]:
    """What a technician is told of an agent."""
    return {"id": agent.id, "name": agent.name, "kind": agent.kind, "host": agent.host,
            "state": agent.state,
            "fingerprint": fingerprint(agent.public_key) if agent.public_key else None,
            "enrolled_by": agent.enrolled_by,
            "last_seen_at": agent.last_seen_at.isoformat() if agent.last_seen_at else None,
            "revoked": agent.revoked_reason,
            "stick": (agent.info or {}).get("stick")}     # the last imager stick it saw
