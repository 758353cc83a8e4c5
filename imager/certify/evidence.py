"""What a certificate of erasure rests on: what the station proved itself, and
what rests on the drive's own report.

The station proves what it did and saw: the passes it wrote, the firmware
command it sent and waited for, the canary markers it wrote before and no
longer found after, the zero fill it wrote over an erase that leaves the
content undefined, and the read-back. What it cannot see rests on the drive's
word: the completion status the drive reports, that a firmware erase reached
areas the host cannot address (over-provisioning, spare and remapped
blocks), that a cryptographic erase replaced the key. The record keeps codes;
imager.certify.labels says them in words.
"""

from __future__ import annotations

from imager.model import EraseReport

PROVEN = ("overwrite", "command", "canaries", "zero-fill", "read-back")
REPORTED = ("sanitize-log", "sanitize-status", "sense-data", "command-status",
            "whole-media", "user-area", "key-replaced")
# How each firmware engine learns that the drive finished (the default: the
# command's own completion status).
COMPLETION = {"nvme-sanitize": "sanitize-log", "ata-sanitize": "sanitize-status",
              "scsi-sanitize": "sense-data"}


def _proven(report: EraseReport, firmware: bool) -> list[str]:
    if not firmware:
        return ["overwrite", "read-back"]
    out = ["command"]
    if report.canary is not None:
        out.append("canaries")
    if any(p.index == 1 for p in report.passes):   # firmware step 1: the station's zero fill
        out.append("zero-fill")
    return [*out, "read-back"]


def _reported(report: EraseReport) -> list[str]:
    plan = report.plan
    out = [COMPLETION.get(plan.engine, "command-status")]
    if plan.technique == "crypto-erase":
        out.append("key-replaced")
    out.append("whole-media" if plan.sanitization_class == "purge" else "user-area")
    return out


def evidence(report: EraseReport) -> dict[str, list[str]] | None:
    """The two lists of a verified erasure; None for any other outcome (a
    failed erasure proves nothing)."""
    if report.outcome != "erased":
        return None
    firmware = report.plan.engine != "overwrite"
    return {"proven": _proven(report, firmware),
            "reported": _reported(report) if firmware else []}

