"""Read from the registry who surrounds a drive: donor, donation, technician, machine."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from imager import __version__
from imager.certify.identity import StationProfile
from imager.certify.record import Parties
from imager.protocol.proof import fingerprint
from imager.store.models import Agent, Donation, Drive, Machine, Technician


def donor_block(donation: Donation | None) -> dict[str, Any] | None:
    if donation is None:
        return None
    d = donation.donor
    return {"name": d.name, "kind": d.kind, "siret": d.siret}


def donation_block(donation: Donation | None) -> dict[str, Any] | None:
    if donation is None:
        return None
    return {"reference": donation.reference, "received_on": donation.received_on.isoformat(),
            "intake_site": donation.intake_site}


def technician_block(tech: Technician | None) -> dict[str, Any] | None:
    if tech is None:
        return None
    return {"name": tech.name, "habilitation": tech.habilitation_level,
            "habilitation_date": tech.habilitation_date.isoformat()
            if tech.habilitation_date else None}


def machine_block(machine: Machine | None) -> dict[str, Any] | None:
    if machine is None:
        return None
    return {"vendor": machine.vendor, "model": machine.model, "serial": machine.serial,
            "asset_tag": machine.asset_tag}


def agent_block(agent: Agent | None) -> dict[str, Any] | None:
    """The agent that ran a job: its name, its key's fingerprint and how its machine was
    booted (station: the station's own dock; network: from the station, with a boot
    token; usb, installed: as the agent said; null: not said) and, as the agent said,
    whether its firmware ran Secure Boot (null: BIOS or not said)."""
    if agent is None:
        return None
    secure = (agent.info or {}).get("secure_boot")
    return {"name": agent.name, "key": fingerprint(agent.public_key) if agent.public_key
            else None, "boot": agent.boot,
            "secure_boot": secure if isinstance(secure, bool) else None}


def issuer_block(profile: StationProfile, key_fingerprint: str) -> dict[str, Any]:
    return {**profile.issuer(), "software": f"imager {__version__}", "key": key_fingerprint}


def parties(s: Session, profile: StationProfile, key_fingerprint: str, drive: Drive,
            donation: Donation | None, technician: Technician | None,
            agent_id: int | None = None) -> Parties:
    """The parties of a drive's record; the donation defaults to the drive's;
    `agent_id`: the agent that ran the job."""
    if donation is None and drive.donation_id is not None:
        donation = s.get(Donation, drive.donation_id)
    machine = s.get(Machine, drive.machine_id) if drive.machine_id is not None else None
    return Parties(issuer=issuer_block(profile, key_fingerprint),
                   validator=profile.validator(),
                   donor=donor_block(donation), donation=donation_block(donation),
                   technician=technician_block(technician),
                   machine=machine_block(machine),
                   agent=agent_block(s.get(Agent, agent_id) if agent_id is not None else None))
