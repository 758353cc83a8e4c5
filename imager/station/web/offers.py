"""What may be done now to a drive, for a person: one table for the board's cards
and the drive's page (the routes check the same habilitations again on a POST)."""

from __future__ import annotations

from typing import Any

LIVE = ("queued", "running", "interrupted")          # a job under way
ERASABLE = ("inventoried", "erase_failed")
IMAGEABLE = ("erased", "certified", "imaged", "image_failed")
SENDABLE = ("received", "inventoried", "erase_failed")   # may go to destruction


def offers(drive: dict[str, Any], can: dict[str, bool]) -> dict[str, bool]:
    """For a drive's summary (`items.drive_summary`) and what the person may do
    (`Habilitations.granted`): erase (by policy, another method), install the
    system, send to destruction, record the destruction."""
    job = drive.get("job") or {}
    idle = job.get("state") not in LIVE
    here = bool(drive["present"]) and idle
    state = drive["state"]
    return {"erase": can["erase"] and here and state in ERASABLE,
            "erase_method": can["erase_method"] and here and state in ERASABLE,
            "image": can["image"] and here and state in IMAGEABLE,
            "to_destruction": can["send_to_destruction"] and idle and state in SENDABLE,
            "destroy": can["destroy"] and state == "to_destroy"}
