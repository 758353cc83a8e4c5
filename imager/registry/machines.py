"""Machines: what the registry tells of a laptop, and the technician's orientation.

Triage only proposes (imager.inventory.triage): reuse, parts or recycling. A
person confirms. Confirming the proposal needs no more; choosing otherwise
(or orienting a machine whose triage is missing or incomplete) needs a
reason, kept in the machine's history with the proposal it overrode. Parts
and recycling move the machine (to_parts, to_recycling); reuse keeps it on
its way (erase, image, certify).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.errors import UsageError
from imager.inventory.triage import ORIENTATIONS
from imager.registry import deployments, items
from imager.registry.lifecycle import ITEM_LABELS_FR
from imager.store.models import Agent, Drive, Machine

ORIENTATION_TO_STATE = {"parts": "to_parts", "recycling": "to_recycling"}
ORIENTATION_FR = {"reuse": "réemploi", "parts": "pièces", "recycling": "recyclage"}


def find_machine(s: Session, ref: str) -> Machine:
    """A machine by registry number, serial, asset tag, UUID or identity."""
    return items.find_item(
        s, Machine, ref, (Machine.serial, Machine.asset_tag, Machine.uuid, Machine.identity),
        missing=f"aucune machine {ref.strip()!r} / no machine {ref.strip()!r}: give its "
                "number, serial, asset tag or UUID as listed by `imager machines list`")


def orient(s: Session, machine: Machine, choice: str, *, actor: str, why: str = "") -> None:
    """Record the technician's orientation; move the machine when it leaves reuse."""
    if choice not in ORIENTATIONS:
        raise UsageError(f"orientation {choice!r}: use {', '.join(ORIENTATIONS)}")
    proposal = machine.proposal or {}
    proposed = proposal.get("orientation")
    agrees = proposed == choice and proposal.get("complete", False)
    if not agrees and not why.strip():
        raise UsageError(_why_needed(machine, proposed, proposal, choice))
    target = ORIENTATION_TO_STATE.get(choice)
    data = {"choice": choice, "proposed": proposed, "agrees": agrees,
            "reasons": proposal.get("reasons", []), "notes": proposal.get("notes", [])}
    reason = why.strip() or f"triage proposal confirmed: {choice}"
    if target is not None and machine.state != target:
        items.move(s, machine, target, actor=actor, reason=reason, data=data)
    items.note(s, machine, "orientation", actor=actor, reason=reason, data=data)
    machine.orientation = choice


def _why_needed(machine: Machine, proposed: str | None, proposal: dict[str, Any],
                choice: str) -> str:
    if proposed is None:
        fr = "aucune proposition de tri (machine non inventoriée)"
        en = "no triage proposal (the machine was not inventoried)"
    elif not proposal.get("complete", False):
        fr = f"la proposition ({proposed}) est incomplète : {', '.join(proposal['unknown'])}"
        en = f"the proposal ({proposed}) is incomplete: {', '.join(proposal['unknown'])} unknown"
    else:
        fr = f"le tri propose {ORIENTATION_FR[proposed]}, pas {ORIENTATION_FR[choice]}"
        en = f"triage proposed {proposed}, not {choice}"
    return (f"machine {machine.id} : {fr} ; donnez la raison avec --why / machine "
            f"{machine.id}: {en}; give the reason with --why")


def machine_summary(s: Session, machine: Machine, *,
                    with_history: bool = False) -> dict[str, Any]:
    """What a technician (or the API) is told of a machine."""
    inv = machine.inventory or {}
    drives = s.scalars(select(Drive).where(Drive.machine_id == machine.id)
                       .order_by(Drive.id))
    out: dict[str, Any] = {
        "id": machine.id, "vendor": machine.vendor, "model": machine.model,
        "serial": machine.serial, "asset_tag": machine.asset_tag, "uuid": machine.uuid,
        "identity": machine.identity, "state": machine.state,
        "state_fr": ITEM_LABELS_FR.get(machine.state, machine.state),
        "donation": machine.donation.reference if machine.donation else None,
        "proposal": machine.proposal, "orientation": machine.orientation,
        "agent": machine.agent_id,
        "last_seen": machine.last_seen_at.isoformat() if machine.last_seen_at else None,
        "next_step": items.next_step(machine.state),
        "drives": [d.id for d in drives],
        "cpu": (inv.get("cpu") or {}).get("model"),
        "ram_bytes": inv.get("ram_bytes"),
        "deployments": [deployments.deployment_summary(d)
                        for d in deployments.deployments_of(s, machine_id=machine.id)],
    }
    if with_history:
        out["inventory"] = inv
        out["history"] = [items.event_summary(e) for e in items.history(s, machine)]
    return out


def belongs(s: Session, drive: Drive, machine: Machine, *, actor: str) -> None:
    """`drive` is found inside `machine` (its agent booted there): tie them, and
    the machine follows its drives' states from then on. A drive of the machine
    (not a USB key or SD card left in it) comes from the machine's donation."""
    if (machine.donation_id is not None and drive.donation_id is None
            and not items.removable_medium(drive)):
        drive.donation_id = machine.donation_id
        items.note(s, drive, "donation", actor=actor,
                   reason=f"inside machine {machine.id}, of its donation",
                   data={"machine": machine.id, "donation": machine.donation_id})
    if drive.machine_id == machine.id:
        return
    drive.machine_id = machine.id
    items.note(s, drive, "in_machine", actor=actor, reason=f"found in machine {machine.id}",
               data={"machine": machine.id})
    items.follow_drives(s, machine, actor=actor,
                        reason=f"drive {drive.id} is {drive.state}: the machine follows "
                               "its drives")


def held_back(s: Session, drive: Drive) -> str | None:
    """Why the policy must not erase `drive` on its own, or None: "removable" or
    "no_donation" (HELD_BACK says it). A drive a laptop's agent reports is erased by
    policy only when the laptop is tied to a donation (any other machine on the bench
    network is only inventoried), and never a USB key or SD card left in it: a
    person decides."""
    agent = s.get(Agent, drive.agent_id) if drive.agent_id is not None else None
    if agent is None or agent.kind != "machine":
        return None
    if items.removable_medium(drive):
        return "removable"
    machine = s.get(Machine, drive.machine_id) if drive.machine_id is not None else None
    if machine is None or machine.donation_id is None:
        return "no_donation"
    return None


# Why a drive of a laptop waits for a person (held_back), and what to do, for the board.
HELD_BACK = {
    "removable": ("Clé USB ou carte SD laissée dans l'ordinateur : la rendre au donneur, "
                  "ou l'effacer si le donneur l'a donnée.",
                  "USB key or SD card left in the computer: give it back to the donor, or "
                  "erase it if the donor gave it."),
    "no_donation": ("Ordinateur lié à aucun don : inventaire seulement. Pour l'effacer, "
                    "scanner son numéro de série à l'accueil du don.",
                    "Computer tied to no donation: inventory only. To erase it, scan its "
                    "serial number at the donation's intake."),
}


def _laptop(s: Session, agent_id: int) -> Machine | None:
    """The machine a laptop's agent inventoried (its latest), if any."""
    return s.scalar(select(Machine).where(Machine.agent_id == agent_id)
                    .order_by(Machine.id.desc()))


def _own_drives(s: Session, machine: Machine) -> list[Drive]:
    """The machine's drives present now, not USB keys or SD cards left in it."""
    return [d for d in s.scalars(select(Drive).where(Drive.machine_id == machine.id,
                                                     Drive.present.is_(True)))
            if not items.removable_medium(d)]


def to_image(s: Session, drive: Drive, *, confirm_triage: bool) -> bool:
    """True when `drive`, erased and certified in a laptop of a donation, may receive
    the laptop's system now: the laptop is to be reused — as a person confirmed it,
    or, without `confirm_triage`, as a complete triage proposed — and the drive has no system
    on record yet."""
    if drive.state != "certified" or items.removable_medium(drive):
        return False
    machine = s.get(Machine, drive.machine_id) if drive.machine_id is not None else None
    if machine is None or machine.donation_id is None:
        return False
    proposal = machine.proposal or {}
    orientation = machine.orientation or (
        proposal.get("orientation") if not confirm_triage and proposal.get("complete")
        else None)
    return orientation == "reuse" and not deployments.deployed(s, drive)


def laptop_done(s: Session, agent_id: int) -> bool:
    """True when the live system of agent `agent_id` may restart the laptop: it was
    inventoried and is tied to no donation (inventory only: it boots its own disk
    again), or each of its own drives received its system and none has a job left."""
    machine = _laptop(s, agent_id)
    if machine is None:
        return False
    if machine.donation_id is None:
        return True
    drives = _own_drives(s, machine)
    return bool(drives) and all(d.state in ("imaged", "certified")
                                and deployments.deployed(s, d)
                                for d in drives) and not items.open_jobs(s, drives)
