"""The donation record: one line per drive, each naming the drive's own signed record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from imager.certify.record import Parties, iso, new_id


def drive_line(record: dict[str, Any], sha256: str) -> dict[str, Any]:
    """What the donation certificate says of one drive, from its signed record."""
    media, san, ver = record["media"], record["sanitization"], record["verification"]
    return {
        "certificate": record["id"], "kind": record["kind"], "sha256": sha256,
        "manufacturer": media["manufacturer"], "model": media["model"],
        "serial": media["serial"], "capacity_bytes": media["capacity_bytes"],
        "media_type": media["media_type"], "method_type": san["method_type"],
        "technique": san["technique"], "method": san["method"],
        "verification": ver["mode"] if ver else None, "result": record["outcome"]["result"],
        "destination": record["destination"], "date": record["timing"]["ended_at"],
    }


def summary(lines: list[dict[str, Any]]) -> dict[str, int]:
    erased = [x for x in lines if x["result"] == "erased"]
    return {"drives": len(lines), "erased": len(erased),
            "clear": sum(x["method_type"] == "clear" for x in erased),
            "purge": sum(x["method_type"] == "purge" for x in erased),
            "not_erased": sum(x["result"] == "failed" for x in lines),
            "destroyed": sum(x["result"] == "destroyed" for x in lines)}


def donation_record(parties: Parties, lines: list[dict[str, Any]], *, ledger: dict[str, Any],
                    language: str = "fr", issued: datetime | None = None) -> dict[str, Any]:
    """The donation certificate's record (csv_sha256 is set by the caller)."""
    issued = issued or datetime.now(UTC)
    ordered = sorted(lines, key=lambda x: (x["date"], x["certificate"]))
    return {
        "schema": "imager/donation-record/1", "kind": "donation",
        "id": new_id("donation", issued), "issued_at": iso(issued), "language": language,
        "issuer": parties.issuer, "ledger": ledger, "donor": parties.donor,
        "donation": parties.donation,
        "validated_by": {k: parties.validator[k] for k in ("name", "title", "organisation")},
        "summary": summary(ordered), "drives": ordered, "csv_sha256": "0" * 64,
    }
