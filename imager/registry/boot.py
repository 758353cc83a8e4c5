"""What the station answers a laptop that boots from the network: the decision is the
station's, never the laptop's.

For a boot request (the laptop's MAC address and its SMBIOS serial, as its boot
loader read them) the answer is one of:
- `live`: boot the station's live system with a fresh boot token bound to that
  MAC and serial. Only for the one machine of the registry with that serial
  that is tied to a donation and whose flow goes on (no successful deployment,
  not past imaging);
- `local`: boot the local disk at once. A machine whose OS image was deployed,
  or that is past imaging (no PXE loop), and every request whose MAC or serial
  is malformed (a hostile or broken client gets nothing else);
- `menu`: a machine the station does not tie to a donation (unknown serial,
  empty or placeholder serial, no donation, ambiguous, out of the flow). The
  menu boots the local disk after 10 seconds; its entry "Inventorier cet
  ordinateur" asks `inventory()`, which issues the token at that moment, so a
  token exists only when a person chose that entry.

Each decision about a machine the registry knows is an item event (`boot`) on
it, with who asked, the MAC, the serial and the decision; every decision is
returned for the caller to log (an unknown machine has no history to hold it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from imager.registry import items
from imager.registry.agents import issue_boot_token
from imager.store.db import utcnow
from imager.store.models import BootToken, Deployment, Drive, Machine

Action = Literal["live", "menu", "local"]
BY = "boot service"
MAX_SERIAL = 64
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# What a boot loader may send of a serial: letters, digits, space, dot, dash, underscore
# (iPXE sends any serial URI-encoded; GRUB sends only [A-Za-z0-9._-], else nothing).
_SERIAL = re.compile(r"[A-Za-z0-9 ._-]*")
# Serials that firmware makers leave in place of a real one: they name no machine.
PLACEHOLDERS = frozenset({
    "to be filled by o.e.m.", "default string", "0123456789", "system serial number",
    "not specified", "not applicable", "none", "n/a", "na", "oem", "123456789",
    "1234567890", "00000000", "000000000", "0000000000", "serial", "invalid",
    "chassis serial number", "unknown", "xxxxxxxxxx",
})
# Unused boot tokens a laptop may hold at once: more is a flood (anyone on the bench
# network can ask in a laptop's name), answered with the local disk until they expire.
MAX_OPEN_TOKENS = 10
# Where a machine is once its OS was written: its local disk boots from then on.
AFTER_IMAGING = frozenset({"imaged", "ready", "handed_over"})
# Where the flow goes on for a machine tied to a donation.
IN_FLOW = frozenset({"received", "inventoried", "erasing", "erased", "erase_failed",
                     "imaging", "image_failed", "certified"})


@dataclass(frozen=True)
class BootDecision:
    """The answer to one boot request, and why (English, for the log and history)."""

    action: Action
    reason: str
    mac: str
    serial: str
    machine_id: int | None = None
    token: str | None = None            # live only, when the serial can hold one

    def to_dict(self) -> dict[str, object]:
        """What is recorded (never the token)."""
        return {"action": self.action, "reason": self.reason, "mac": self.mac,
                "serial": self.serial, "machine": self.machine_id,
                "token": self.token is not None}


def clean_mac(text: str | None) -> str | None:
    """The MAC address in lower case with colons, or None if it is not one."""
    mac = (text or "").strip().lower().replace("-", ":")
    return mac if _MAC.fullmatch(mac) else None


def clean_serial(text: str | None) -> str | None:
    """The serial without surrounding spaces (empty allowed), or None when it is
    too long or holds a character no boot loader of ours sends (or is missing)."""
    if text is None:
        return None
    serial = text.strip()
    if len(serial) > MAX_SERIAL or not _SERIAL.fullmatch(serial):
        return None
    return serial


def is_placeholder(serial: str) -> bool:
    """Whether `serial` names no machine: empty, a firmware maker's filler, one
    repeated character."""
    text = " ".join(serial.lower().split())
    return not text or text in PLACEHOLDERS or len(set(text.replace(" ", ""))) <= 1


def refused(mac: str | None, serial: str | None, why: str) -> BootDecision:
    """The answer to a malformed request: the local disk."""
    return BootDecision("local", f"request refused: {why}", _shown(mac), _shown(serial))


def _shown(text: str | None) -> str:
    """A hostile value made safe to log: printable ASCII, 80 characters at most."""
    return "".join(c if " " <= c <= "~" else "?" for c in (text or ""))[:80]


def decide(s: Session, *, mac: str | None, serial: str | None, client: str) -> BootDecision:
    """The station's answer to a boot request from `client` (its address)."""
    mac_ok, serial_ok = clean_mac(mac), clean_serial(serial)
    if mac_ok is None:
        return refused(mac, serial, "malformed MAC address")
    if serial_ok is None:
        return refused(mac, serial, "malformed serial (at most 64 of A-Z a-z 0-9 space . _ -)")
    decision = _decide(s, mac_ok, serial_ok)
    _record(s, decision, client)
    return decision


def _decide(s: Session, mac: str, serial: str) -> BootDecision:
    if is_placeholder(serial):
        return BootDecision("menu", "no usable SMBIOS serial", mac, serial)
    machines = list(s.scalars(select(Machine).where(Machine.serial == serial)))
    if not machines:
        return BootDecision("menu", "serial unknown to the registry", mac, serial)
    if len(machines) > 1:
        return BootDecision("menu", f"{len(machines)} machines have this serial", mac, serial)
    machine = machines[0]
    if _deployed(s, machine) or machine.state in AFTER_IMAGING:
        return BootDecision("local", f"machine {machine.id} is {machine.state}, its OS was "
                            "deployed: boot its disk", mac, serial, machine.id)
    if machine.donation_id is None:
        return BootDecision("menu", f"machine {machine.id} is tied to no donation", mac,
                            serial, machine.id)
    if machine.state not in IN_FLOW:
        return BootDecision("menu", f"machine {machine.id} is {machine.state}: out of the "
                            "flow", mac, serial, machine.id)
    if _open_tokens(s, serial) >= MAX_OPEN_TOKENS:
        return BootDecision("local", f"{MAX_OPEN_TOKENS} boot tokens of this serial are "
                            "unused and valid: no more until they expire", mac, serial,
                            machine.id)
    token = issue_boot_token(s, mac=mac, serial=serial, by=BY)
    return BootDecision("live", f"machine {machine.id} is {machine.state}, tied to a "
                        "donation: the flow goes on", mac, serial, machine.id, token)


def _open_tokens(s: Session, serial: str) -> int:
    """Boot tokens of `serial` not used and not expired."""
    return len(list(s.scalars(select(BootToken.id).where(
        BootToken.serial == serial, BootToken.used_at.is_(None),
        BootToken.expires_at > utcnow()))))


def _deployed(s: Session, machine: Machine) -> bool:
    """Whether an OS image was written and verified on this machine (or its drives)."""
    drives = select(Drive.id).where(Drive.machine_id == machine.id)
    return s.scalar(select(Deployment.id).where(
        Deployment.ok.is_(True),
        or_(Deployment.machine_id == machine.id, Deployment.drive_id.in_(drives)))) is not None


def inventory(s: Session, *, mac: str | None, serial: str | None,
              client: str) -> BootDecision:
    """The menu's "Inventorier cet ordinateur" entry, chosen by a person: the live
    system with a boot token issued now (without one when the serial is empty:
    the agent then waits for a technician's pairing code). A machine the station
    boots to its disk (deployed) gets the disk; a malformed request too."""
    mac_ok, serial_ok = clean_mac(mac), clean_serial(serial)
    if mac_ok is None or serial_ok is None:
        return refused(mac, serial, "malformed MAC address or serial")
    decision = _decide(s, mac_ok, serial_ok)
    if decision.action == "menu":
        if serial_ok and _open_tokens(s, serial_ok) >= MAX_OPEN_TOKENS:
            return refused(mac, serial, "too many unused boot tokens for this serial")
        token = issue_boot_token(s, mac=mac_ok, serial=serial_ok, by=BY) if serial_ok else None
        decision = BootDecision("live", f"inventory chosen at the menu ({decision.reason}); "
                                "nothing is erased without a donation", mac_ok, serial_ok,
                                decision.machine_id, token)
    _record(s, decision, client)
    return decision


def _record(s: Session, decision: BootDecision, client: str) -> None:
    """An item event on the machine, when the registry knows it."""
    if decision.machine_id is None:
        return
    machine = s.get(Machine, decision.machine_id)
    if machine is not None:
        items.note(s, machine, "boot", actor=f"{BY} ({_shown(client)})",
                   reason=f"boot served: {decision.action} ({decision.reason})",
                   data={**decision.to_dict(), "client": _shown(client)})
