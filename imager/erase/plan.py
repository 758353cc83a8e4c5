"""The erase plan of one drive: policy + capabilities -> an ErasePlan value.

The plan is data: printed by `imager erase --plan`, stored with the job and
put on the report. It keeps the policy's order, drops (with the reason) each
method the drive's capabilities rule out, and notes the hidden areas (HPA,
DCO) the runner must remove before erasing, or, for a drive that is or may be
an ATA drive (behind a USB or SAS adapter), that they could not be checked.
"""

from __future__ import annotations

import dataclasses
import os

from imager.erase import catalogue
from imager.erase.catalogue import Station
from imager.erase.methods import METHODS, check_verify, resolve
from imager.erase.policy import Policy, PolicyMethod
from imager.errors import UsageError
from imager.inventory.capabilities import DriveCapabilities
from imager.model import (
    ErasePlan,
    HiddenAreas,
    MethodStep,
    Note,
    SanitizationClass,
    SkippedMethod,
    VerifyMode,
)


def medium_key(caps: DriveCapabilities) -> str:
    """The policy medium of a drive, from its transport and medium."""
    transport, medium = caps.transport, caps.medium
    spins = medium == "hdd"
    if transport == "nvme":
        return "nvme"
    if transport in ("sata", "ata"):
        return "sata-hdd" if spins else "sata-ssd"
    if transport == "usb":
        return "usb-disk" if spins else "usb-flash"
    if transport == "mmc":
        return "emmc" if caps.mmc is not None else "sd-card"
    if transport in ("virtio", "loop", "file"):
        return "virtual"
    scsi = transport in ("sas", "scsi") or (
        caps.smart is not None and caps.smart.protocol == "SCSI")
    if scsi:
        return "sas-hdd" if spins else "sas-ssd"
    return "unknown"


def _hidden(caps: DriveCapabilities) -> HiddenAreas | None:
    if caps.hpa is None:
        return None
    return HiddenAreas(visible_max=caps.hpa.current_max, native_max=caps.hpa.native_max,
                       dco_real_max=caps.dco_real_max)


HIDDEN_NOT_CHECKED_SATA = Note(
    "Zones cachées (HPA/DCO) non vérifiées : hdparm -N n'a pas répondu. Brancher le "
    "disque en SATA sur un dock pour les vérifier avant de certifier l'effacement.",
    "Hidden areas (HPA/DCO) not checked: hdparm -N did not answer. Dock the drive on "
    "SATA to check them before certifying the erasure.")
HIDDEN_NOT_CHECKED_BRIDGE = Note(
    "Zones cachées (HPA/DCO) non vérifiées : derrière son adaptateur (USB, SAS), ce support "
    "peut être un disque ATA (SATA), et hdparm -N n'a pas répondu à travers lui. Brancher "
    "le disque en SATA sur un dock pour les vérifier avant de certifier l'effacement ; un "
    "support qui n'est pas un disque ATA (clé USB, disque SAS) est certifié sur la décision "
    "d'une personne qui l'a vérifié.",
    "Hidden areas (HPA/DCO) not checked: behind its adapter (USB, SAS) this drive may be "
    "an ATA (SATA) drive, and hdparm -N did not answer through it. Dock the drive on SATA "
    "to check them before certifying the erasure; a drive that is no ATA drive (USB stick, "
    "SAS disk) is certified on the decision of a person who checked it.")


def _notes(caps: DriveCapabilities, rule_advice: Note | None,
           steps: list[MethodStep]) -> tuple[Note, ...]:
    notes = [rule_advice] if rule_advice else []
    if caps.hpa is None and caps.ata_drive is not False:
        notes.append(HIDDEN_NOT_CHECKED_SATA if caps.transport in ("sata", "ata")
                     else HIDDEN_NOT_CHECKED_BRIDGE)
    others = caps.nvme_other_namespaces
    if others and any(s.engine in ("nvme-sanitize", "nvme-format") for s in steps):
        names = ", ".join(others)
        notes.append(Note(
            f"Ce SSD NVMe porte d'autres espaces de noms ({names}) : la sanitisation (et le "
            "formatage quand le contrôleur l'applique à tous) les efface aussi. Ils ne doivent "
            "rien contenir à garder ; la station refuse s'ils sont montés ou ouverts.",
            f"This NVMe SSD has other namespaces ({names}): sanitize (and format when the "
            "controller applies it to all) erases them too. They must hold nothing to keep; "
            "the station refuses if they are mounted or open."))
    return tuple(notes)


def _step(entry: PolicyMethod, caps: DriveCapabilities, medium: str,
          station: Station) -> MethodStep:
    step = catalogue.step_for(entry.name, caps, medium, station)
    if entry.sanitization_class is None:
        return step
    standard = step.standard + (f" — policy: {entry.basis}" if entry.basis else "")
    return dataclasses.replace(step, sanitization_class=entry.sanitization_class,
                               standard=standard)


def _explicit(method: str, caps: DriveCapabilities, medium: str,
              station: Station) -> tuple[PolicyMethod, ...]:
    if method not in catalogue.FIRMWARE:
        resolve(method)   # an unknown name: UsageError listing the known ones
    if medium not in catalogue.media_of(method):
        raise UsageError(f"{caps.identity.path}: {method} cannot run on a {medium} drive "
                         f"(it runs on {', '.join(sorted(catalogue.media_of(method)))})")
    reason = catalogue.why_not(method, caps, station)
    if reason:
        raise UsageError(f"{caps.identity.path}: {method} cannot run on this drive: {reason}")
    return (PolicyMethod(method),)


def plan_for(caps: DriveCapabilities, policy: Policy, *, verify: VerifyMode | None = None,
             method: str | None = None) -> ErasePlan:
    """The plan for one drive: the policy's methods for its medium (or the one
    `method` asked for), those the drive cannot do set aside with the reason."""
    medium = medium_key(caps)
    station = Station(unfreeze=policy.unfreeze)
    rule = policy.media.get(medium)
    entries = _explicit(method, caps, medium, station) if method else \
        (rule.methods if rule else ())
    steps, skipped = [], []
    for entry in entries:
        reason = catalogue.why_not(entry.name, caps, station)
        if reason:
            skipped.append(SkippedMethod(entry.name, reason))
        else:
            steps.append(_step(entry, caps, medium, station))
    if not steps:
        why = "; ".join(f"{s.method}: {s.reason}" for s in skipped) or "no method listed"
        raise UsageError(f"{caps.identity.path}: no method of erase policy {policy.source} "
                         f"for {medium} drives can run on it ({why}); end media.{medium} "
                         "with an overwrite method such as nist-clear")
    mode = verify or policy.verify
    check_verify(mode)
    return ErasePlan(steps=tuple(steps), verify=mode, verify_seed=os.urandom(16).hex(),
                     medium=medium, policy=policy.label, skipped=tuple(skipped),
                     advice=_notes(caps, rule.advice if rule else None, steps),
                     hidden=_hidden(caps), ata_drive=caps.ata_drive)


@dataclasses.dataclass(frozen=True)
class Choice:
    """A method a person may choose instead of the policy's, for one drive."""
    method: str
    sanitization_class: SanitizationClass
    what: str                          # the standard's words (firmware) or the passes
    why_not: str | None                # None: the drive can run it


def choices(caps: DriveCapabilities, policy: Policy) -> list[Choice]:
    """The firmware methods of the drive's medium (with why not, when it cannot run
    them), then the host overwrite methods (Clear), for a person choosing another
    method than the policy's."""
    medium = medium_key(caps)
    station = Station(unfreeze=policy.unfreeze)
    firmware = [Choice(d.name, d.class_on(medium), d.standard,
                       catalogue.why_not(d.name, caps, station))
                for d in catalogue.FIRMWARE.values() if medium in d.media]
    return firmware + [Choice(m.name, "clear", m.standard, None) for m in METHODS.values()]
