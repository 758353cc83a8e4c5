"""Records: what a certificate states, built from the registry and an erase report.

A record is plain JSON data (see certificates/schema/). Building one never
guesses: a field the station does not know is null. An erasure certificate
is only built for a job whose erasure completed and was verified; a failed
job gets a non-erasure record ("non effacé — à détruire"); an interrupted or
unfinished job gets nothing.

A record also carries the advice of the erase plan, whether the drive's
hidden areas (HPA/DCO) were checked, and what the result rests on (proven by
the station, or reported by the drive: imager.certify.evidence). A drive
that is, or may be, an ATA drive (a SATA disk behind a USB or SAS adapter
looks like any other) whose hidden areas could not be checked gets a
certificate of erasure only when a person accepted it
(imager.registry.decisions): who, when and why are then printed on it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from imager.certify.evidence import evidence
from imager.errors import UsageError
from imager.inventory.capabilities import NOT_ATA_TRANSPORTS
from imager.model import DriveIdentity, EraseReport

Kind = Literal["erasure", "non-erasure", "destruction"]
Destination = Literal["reuse", "parts", "recycling", "destruction"]
DESTINATIONS: tuple[str, ...] = ("reuse", "parts", "recycling", "destruction")
DRIVE_KINDS = ("erasure", "non-erasure", "destruction")
KIND_FR = {"erasure": "certificat d'effacement", "non-erasure": "constat de NON-effacement",
           "destruction": "procès-verbal de destruction", "donation": "certificat de don",
           "withdrawal": "retrait d'un document"}
PREFIX = {"erasure": "EFF", "non-erasure": "NEF", "destruction": "DES", "donation": "DON"}
DESTRUCTION_TECHNIQUES = ("shred", "disintegrate", "pulverize", "melt", "incinerate", "crush",
                          "drill", "degauss-and-destroy")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FLASH = {"nvme", "sata-ssd", "sas-ssd", "usb-flash", "emmc", "sd-card"}
MAGNETIC = {"sata-hdd", "sas-hdd"}
# Media whose drives are never ATA drives, so hide no sectors in an HPA or behind a DCO
# (any other may: a SATA disk in a USB dock or on a SAS HBA is usb-* or sas-*).
NOT_ATA_MEDIA = frozenset({"nvme", "emmc", "sd-card", "virtual"})
NEXT_STEP_FAILED = ("Le support n'a pas pu être effacé : le détruire physiquement (broyage) et "
                    "établir un procès-verbal de destruction. / The drive could not be erased: "
                    "destroy it physically (shredding) and record the destruction.")


def new_id(kind: str, when: datetime) -> str:
    """A certificate id such as EFF-2026-7K3M-9QXA (40 random bits, Crockford base32)."""
    n = secrets.randbits(40)
    code = "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in range(8))
    return f"{PREFIX[kind]}-{when.year:04d}-{code[:4]}-{code[4:]}"


def iso(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _none_if_empty(value: Any) -> Any:
    return value if value not in ("", None) else None


@dataclass(frozen=True)
class Parties:
    """Who and what surrounds a drive, read from the registry (see issue.py)."""

    issuer: dict[str, Any]            # StationProfile.issuer() + software + key
    validator: dict[str, Any]         # StationProfile.validator()
    donor: dict[str, Any] | None
    donation: dict[str, Any] | None
    technician: dict[str, Any] | None
    machine: dict[str, Any] | None
    agent: dict[str, Any] | None = None   # the agent that ran the job, and how it booted


def media_type(medium: str | None, rotational: bool) -> str:
    if medium in FLASH:
        return "flash"
    if medium in MAGNETIC:
        return "magnetic"
    if medium == "virtual":
        return "virtual"
    return "magnetic" if rotational else "unknown"


def _media(report_device: dict[str, Any], medium: str | None,
           machine: dict[str, Any] | None, identity: str) -> dict[str, Any]:
    d = report_device
    return {
        "manufacturer": _none_if_empty(d.get("vendor")), "model": _none_if_empty(d.get("model")),
        "serial": _none_if_empty(d.get("serial")), "wwn": _none_if_empty(d.get("wwn")),
        "capacity_bytes": int(d["size"]), "logical_sector": int(d.get("logical_sector") or 512),
        "transport": _none_if_empty(d.get("transport")), "medium": medium,
        "media_type": media_type(medium, bool(d.get("rotational"))), "identity": identity,
        "property_number": (machine or {}).get("asset_tag"),
    }


def _header(kind: str, rid: str, issued: datetime, language: str, parties: Parties,
            ledger: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "imager/drive-record/1", "kind": kind, "id": rid, "issued_at": iso(issued),
        "language": language, "issuer": parties.issuer, "ledger": ledger,
        "donor": parties.donor, "donation": parties.donation,
        "performed_by": parties.technician, "machine": parties.machine,
    }


def erasure_record(report: EraseReport, parties: Parties, *, ledger: dict[str, Any],
                   destination: str = "reuse", language: str = "fr",
                   confidentiality: tuple[str | None, str | None] = (None, None),
                   hidden_accepted: dict[str, str] | None = None,
                   issued: datetime | None = None, rid: str | None = None) -> dict[str, Any]:
    """The record of one erase job: a certificate of erasure when the erasure
    completed and was verified, a non-erasure record when it failed.

    `hidden_accepted` ({by, at, reason}) is the decision of a person to certify
    an ATA drive whose hidden areas could not be checked; without it such a
    drive gets no certificate of erasure."""
    kind = record_kind(report)
    if kind == "non-erasure":
        destination = "destruction"
    elif destination not in DESTINATIONS or destination == "destruction":
        raise UsageError(f"destination {destination!r} for an erased drive: use reuse, parts or "
                         "recycling (a drive to destroy gets `imager cert destroy`)")
    issued = issued or datetime.now(UTC)
    rid = rid or new_id(kind, issued)
    plan, ver = report.plan, report.verification
    data = report.to_dict()
    record = _header(kind, rid, issued, language, parties, ledger)
    record.update({
        "validated_by": {**parties.validator, "method": _validation_method(report)},
        "media": _media(data["device"], plan.medium, parties.machine, report.device.key),
        "confidentiality": {"before": confidentiality[0], "after": confidentiality[1]},
        "sanitization": {
            "method_type": report.achieved_class, "planned_type": plan.sanitization_class,
            "technique": plan.technique, "method": plan.method,
            "standard": _none_if_empty(plan.standard),
            "tool": report.tool or report.software or "imager",
            "passes": [{"index": p.index, "pattern": p.pattern, "bytes_written": p.bytes_written,
                        "seconds": round(p.seconds, 3)} for p in report.passes],
            "canary": {"planted": report.canary.planted,
                       "survivors": len(report.canary.survivors)} if report.canary else None,
            "policy": plan.policy,
            "refused_methods": [{"method": r.method, "reason": r.reason} for r in plan.refused],
            "witness": None,
        },
        "hidden_areas": data["hidden_areas"],
        "hidden_areas_check": hidden_areas_check(report, hidden_accepted),
        "evidence": evidence(report),
        "advice": [{"fr": n.fr, "en": n.en} for n in plan.advice],
        "verification": None if ver is None else {
            "mode": ver.mode, "pattern": ver.pattern, "coverage": round(ver.coverage, 6),
            "seed": ver.seed, "bytes_read": ver.bytes_read, "subsections": ver.subsections,
            "ok": ver.ok, "mismatched_sectors": ver.mismatched_sectors,
            "first_bad_offset": ver.first_bad_offset, "seconds": round(ver.seconds, 3)},
        "timing": {"started_at": iso(report.started_at), "ended_at": iso(report.ended_at),
                   "duration_seconds": round(data["duration_seconds"], 3),
                   "bytes_written": report.bytes_written,
                   "throughput_bytes_per_second": data["throughput_bytes_per_second"]},
        "errors": [{"offset": e.offset, "length": e.length, "error": e.error}
                   for e in report.errors],
        "outcome": {"result": "erased" if kind == "erasure" else "failed",
                    "reason": report.reason or "",
                    "next_step": "" if kind == "erasure" else NEXT_STEP_FAILED},
        "destination": destination, "job": report.job_id,
    })
    if parties.agent is not None:
        record["agent"] = parties.agent
    return record


def record_kind(report: EraseReport) -> Kind:
    """The kind of record a finished erase job gets; an unfinished one gets none."""
    ver = report.verification
    if report.outcome == "erased":
        if ver is None or not ver.ok or ver.mode == "none":
            raise UsageError(f"job {report.job_id}: the erasure has no passed read-back "
                             "verification, so no certificate can say it is erased")
        return "erasure"
    if report.outcome in ("failed", "unverified"):
        return "non-erasure"
    raise UsageError(f"job {report.job_id} is {report.outcome}: no document for an unfinished "
                     f"erasure; resume it (`imager jobs resume {report.job_id}`) or cancel it")


def hidden_areas_status(report: EraseReport) -> str:
    """checked (the station looked, and removed what it found), not-checked (an ATA
    drive, or one that may be, behind a USB or SAS adapter, whose hidden areas hdparm -N
    could not read) or not-applicable (known to be no ATA drive: NVMe, eMMC/SD, virtual,
    a SAS/SCSI drive that answered as one; see DriveCapabilities.ata_drive). A plan that
    does not say (made without probing the drive, or before plans said it) is judged
    by its medium, or else the drive's transport."""
    if report.hidden_areas is not None:
        return "checked"
    ata = report.plan.ata_drive
    if ata is None:
        medium = report.plan.medium
        ata = medium not in NOT_ATA_MEDIA if medium \
            else report.device.transport not in NOT_ATA_TRANSPORTS
    return "not-checked" if ata else "not-applicable"


def drive_name(device: DriveIdentity) -> str:
    """A drive as a person finds it: model, serial, and the station's key."""
    shown = ", ".join(x for x in (device.model, f"n° série / serial {device.serial}"
                                  if device.serial else None) if x)
    return f"{shown} ({device.key})" if shown else device.key


def hidden_areas_check(report: EraseReport, accepted: dict[str, str] | None,
                       ) -> dict[str, Any]:
    """The record's hidden_areas_check block. Refuses a certificate of erasure
    for a drive whose hidden areas were not checked, unless a person accepted it."""
    status = hidden_areas_status(report)
    if status != "not-checked":
        return {"status": status, "accepted": None}
    if accepted is None and record_kind(report) == "erasure":
        job = report.job_id
        raise UsageError(
            f"{drive_name(report.device)}, tâche {job} : zones cachées (HPA/DCO) non vérifiées, "
            "pas de certificat d'effacement sans la décision d'une personne / job "
            f"{job}: the hidden areas (HPA/DCO) of this drive were not checked (hdparm -N did "
            "not answer, on SATA or through the drive's USB or SAS adapter), so it gets no "
            "certificate of erasure without a person's decision. Dock the drive on SATA and "
            "erase it again so that the station checks them, or record who accepts it (e.g. "
            "having checked it is no ATA drive) and why: "
            f"`imager cert accept-hidden {job} --by NAME --reason TEXT`")
    return {"status": status, "accepted": accepted}


def _validation_method(report: EraseReport) -> str:
    """How the result was validated (codes; the PDF prints them in words)."""
    ver = report.verification
    if ver is None or ver.mode == "none":
        return "none"
    return f"read-back-{ver.mode}" + ("+canaries" if report.canary else "")


def destruction_record(drive: dict[str, Any], parties: Parties, *, ledger: dict[str, Any],
                       technique: str, witness: dict[str, Any], destroyed_at: datetime,
                       medium: str | None = None, reason: str = "", language: str = "fr",
                       issued: datetime | None = None, rid: str | None = None) -> dict[str, Any]:
    """A physical destruction record (method type Destroy) with its witness."""
    if technique not in DESTRUCTION_TECHNIQUES:
        raise UsageError(f"destruction technique {technique!r}: use one of "
                         f"{', '.join(DESTRUCTION_TECHNIQUES)}")
    if not (witness.get("name") or "").strip():
        raise UsageError("a destruction needs a witness: give --witness NAME")
    issued = issued or datetime.now(UTC)
    rid = rid or new_id("destruction", issued)
    record = _header("destruction", rid, issued, language, parties, ledger)
    when = iso(destroyed_at)
    record.update({
        "validated_by": {**parties.validator, "method": "witnessed"},
        "media": _media(drive, medium, parties.machine, drive["identity"]),
        "confidentiality": {"before": None, "after": None},
        "sanitization": {
            "method_type": "destroy", "planned_type": "destroy", "technique": technique,
            "method": f"destruction-{technique}",
            "standard": "NIST SP 800-88 Rev. 2 Destroy; IEEE 2883-2022; DIN 66399 (2012)",
            "tool": "destruction physique / physical destruction", "passes": [], "canary": None,
            "policy": None, "refused_methods": [], "witness": witness},
        "hidden_areas": None, "hidden_areas_check": None, "evidence": None, "advice": [],
        "verification": {"mode": "visual", "pattern": None, "coverage": 1, "seed": None,
                         "bytes_read": 0, "subsections": 0, "ok": True, "mismatched_sectors": 0,
                         "first_bad_offset": None, "seconds": 0},
        "timing": {"started_at": when, "ended_at": when, "duration_seconds": 0,
                   "bytes_written": 0, "throughput_bytes_per_second": 0},
        "errors": [],
        "outcome": {"result": "destroyed", "reason": reason, "next_step": ""},
        "destination": "destruction", "job": None,
    })
    return record
