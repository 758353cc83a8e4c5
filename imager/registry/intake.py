"""Intake: tie drives and machines to a donation by what is written on them.

A technician scans or types serial numbers, WWNs or asset tags from the
labels. A drive or machine the registry already knows (it was plugged in, or
an agent reported it) is attached to the donation; one it does not know yet
is recorded as `received`, and its first probe will find it by serial. A
drive already given to another donation is refused (the error names both):
mixing two donors' drives would put one donor's drive on the other's
certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from imager.errors import UsageError
from imager.registry import items
from imager.store import people
from imager.store.db import utcnow
from imager.store.models import Donation, Drive, ItemEvent, Machine, Technician


@dataclass(frozen=True)
class Attached:
    kind: str        # "drive" | "machine"
    id: int
    label: str       # what was scanned
    state: str
    new: bool        # recorded now as `received`

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "id": self.id, "label": self.label, "state": self.state,
                "new": self.new}


def _clean(label: str) -> str:
    text = " ".join(str(label).split())
    if not text:
        raise UsageError("étiquette vide / empty label: scan or type a serial, WWN or "
                         "asset tag")
    return text


def _drive_by_label(s: Session, label: str) -> Drive | None:
    found = list(s.scalars(select(Drive).where(or_(
        Drive.serial == label, Drive.wwn == label, Drive.identity == label))))
    if len(found) > 1:
        raise UsageError(f"{label!r} names {len(found)} drives: type the drive number "
                         f"instead ({', '.join(str(d.id) for d in found)})")
    return found[0] if found else None


def _check_donation(item: Drive | Machine, donation: Donation, label: str) -> None:
    if item.donation_id is not None and item.donation_id != donation.id:
        other = item.donation.reference if item.donation else item.donation_id
        raise UsageError(f"{label!r} appartient déjà au don {other} / already belongs to "
                         f"donation {other}: check the label, or correct the other donation")


def attach_drive(s: Session, donation: Donation, label: str, *, actor: str) -> Attached:
    label = _clean(label)
    drive = _drive_by_label(s, label)
    new = drive is None
    if drive is None:
        drive = Drive(identity=f"serial::{label}", serial=label, size_bytes=0,
                      state="received", created_at=utcnow())
        s.add(drive)
        s.flush()
        items.note(s, drive, "received", actor=actor, reason=f"intake of {donation.reference}")
    _check_donation(drive, donation, label)
    if drive.donation_id != donation.id:
        drive.donation_id = donation.id
        items.note(s, drive, "donation", actor=actor, reason=f"attached to {donation.reference}",
                   data={"donation": donation.reference})
    return Attached("drive", drive.id, label, drive.state, new)


def attach_machine(s: Session, donation: Donation, label: str, *, actor: str) -> Attached:
    label = _clean(label)
    machine = s.scalar(select(Machine).where(or_(Machine.asset_tag == label,
                                                 Machine.serial == label)))
    new = machine is None
    if machine is None:
        machine = Machine(serial=label, state="received", created_at=utcnow())
        s.add(machine)
        s.flush()
        items.note(s, machine, "received", actor=actor,
                   reason=f"intake of {donation.reference}")
    _check_donation(machine, donation, label)
    if machine.donation_id != donation.id:
        machine.donation_id = donation.id
        items.note(s, machine, "donation", actor=actor,
                   reason=f"attached to {donation.reference}",
                   data={"donation": donation.reference})
    return Attached("machine", machine.id, label, machine.state, new)


def attach_all(s: Session, donation: str, *, drives: list[str], machines: list[str],
               actor: str) -> list[Attached]:
    """Attach every scanned drive, then every machine, to donation `donation`."""
    don = people.find_donation(s, donation)
    out = [attach_drive(s, don, label, actor=actor) for label in drives]
    return out + [attach_machine(s, don, label, actor=actor) for label in machines]


def on_duty(s: Session, drive: Drive) -> int | None:
    """The technician on duty for a drive the policy erases on its own: the person
    who took it in (its last intake event), when the station knows them as one."""
    actor = s.scalar(select(ItemEvent.actor).where(
        ItemEvent.drive_id == drive.id, ItemEvent.kind.in_(("received", "donation")))
        .order_by(ItemEvent.id.desc()))
    tech = s.scalar(select(Technician).where(Technician.name == actor)) if actor else None
    return tech.id if tech is not None else None

