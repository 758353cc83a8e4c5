"""Legal state moves, as data (tested as data).

A job ends in exactly one terminal state. Only `erased` means the drive was
overwritten completely AND read back as expected; `unverified` (verification
skipped), `failed` and `interrupted` never count as erased. An image job's
success is `imaged`: written, fsynced and read back.
"""

from __future__ import annotations

from typing import get_args

from imager.errors import UsageError
from imager.model import JobState

JOB_STATES: tuple[str, ...] = get_args(JobState)
# The state that says a job of this kind did its work.
SUCCESS = {"erase": "erased", "image": "imaged"}

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"erased", "imaged", "unverified", "failed", "interrupted"}),
    "interrupted": frozenset({"running", "failed", "cancelled"}),
    "erased": frozenset(),
    "imaged": frozenset(),
    "unverified": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

TERMINAL = frozenset(s for s, moves in JOB_TRANSITIONS.items() if not moves)
RESUMABLE = frozenset({"interrupted"})

STATE_LABELS_FR = {
    "queued": "en attente", "running": "en cours", "interrupted": "interrompu",
    "erased": "effacé et vérifié", "imaged": "système installé et vérifié",
    "unverified": "écrit, non vérifié",
    "failed": "échec", "cancelled": "annulé",
}


def check_move(job_id: int, current: str, target: str, *, kind: str = "erase") -> None:
    """Raise UsageError if `current -> target` is not a legal move for a `kind` job."""
    wrong_success = target in SUCCESS.values() and SUCCESS.get(kind) != target
    if wrong_success or target not in JOB_TRANSITIONS.get(current, frozenset()):
        raise UsageError(f"{kind} job {job_id} is {current}; it cannot become {target}")


# --------------------------------------------------------------------------
# Drives and machines: where each one is between intake and hand-over.
#
# A failure is a state of its own (erase_failed, image_failed) with a next step
# (NEXT_STEPS), never a silent skip. Whether a drive is plugged in is not a
# state: it is its presence (a drive unplugged mid-erase fails its job, so it
# moves erasing -> erase_failed, "drive removed"), and a drive plugged in again
# is where it was. A state that could "come back" to any other would be a way
# around the erasure; the one way back, to inventoried, is toward it: a drive whose
# erasure is no longer trusted (its agent revoked as compromised) is erased again.

ITEM_KINDS = ("drive", "machine")

DRIVE_TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"inventoried", "to_destroy"}),
    "inventoried": frozenset({"erasing", "to_destroy", "to_parts", "to_recycling"}),
    "erasing": frozenset({"erased", "erase_failed", "inventoried"}),
    "erased": frozenset({"imaging", "certified", "erasing", "inventoried"}),
    "erase_failed": frozenset({"erasing", "to_destroy"}),
    "imaging": frozenset({"imaged", "image_failed", "erased"}),
    "imaged": frozenset({"certified", "imaging", "inventoried"}),
    "image_failed": frozenset({"imaging", "erasing", "to_parts"}),
    "certified": frozenset({"ready", "imaging", "erasing", "to_parts", "to_recycling",
                            "inventoried"}),
    "ready": frozenset({"handed_over", "erasing", "to_parts", "to_recycling",
                        "inventoried"}),
    "to_destroy": frozenset({"destroyed"}),
    "to_parts": frozenset({"erasing", "to_recycling"}),
    "to_recycling": frozenset(),
    "destroyed": frozenset(),
    "handed_over": frozenset(),
}

MACHINE_TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"inventoried"}),
    "inventoried": frozenset({"erasing", "to_parts", "to_recycling"}),
    "erasing": frozenset({"erased", "erase_failed", "inventoried"}),
    "erased": frozenset({"imaging", "certified", "erasing", "inventoried"}),
    "erase_failed": frozenset({"erasing", "to_parts", "to_recycling"}),
    "imaging": frozenset({"imaged", "image_failed", "erased"}),
    "imaged": frozenset({"certified", "imaging", "inventoried"}),
    "image_failed": frozenset({"imaging", "erasing", "to_parts"}),
    "certified": frozenset({"ready", "imaging", "to_parts", "to_recycling", "inventoried"}),
    "ready": frozenset({"handed_over", "to_parts", "to_recycling", "inventoried"}),
    "handed_over": frozenset(),
    "to_parts": frozenset({"to_recycling"}),
    "to_recycling": frozenset(),
}

TRANSITIONS = {"drive": DRIVE_TRANSITIONS, "machine": MACHINE_TRANSITIONS}

# What the technician does next, for every state that needs a person.
NEXT_STEPS: dict[str, tuple[str, str]] = {
    "erase_failed": ("relancer l'effacement (autre méthode) ou envoyer le support à la "
                     "destruction (`imager cert issue`, puis `imager cert destroy`)",
                     "retry the erasure (another method) or send the drive to destruction "
                     "(`imager cert issue`, then `imager cert destroy`)"),
    "image_failed": ("relancer l'installation du système ; si elle échoue encore, effacer "
                     "puis réinstaller, ou orienter vers les pièces",
                     "retry the deployment; if it fails again, erase and redeploy, or send "
                     "to parts"),
    "to_destroy": ("détruire physiquement le support devant un témoin, puis "
                   "`imager cert destroy`",
                   "destroy the drive physically in front of a witness, then "
                   "`imager cert destroy`"),
}

ITEM_LABELS_FR = {
    "received": "reçu", "inventoried": "inventorié", "erasing": "effacement en cours",
    "erased": "effacé", "erase_failed": "effacement en échec", "imaging": "installation en cours",
    "imaged": "système installé", "image_failed": "installation en échec",
    "certified": "certifié", "ready": "prêt", "handed_over": "remis",
    "to_parts": "pour pièces", "to_recycling": "au recyclage", "to_destroy": "à détruire",
    "destroyed": "détruit",
}


def check_item_move(kind: str, item_id: int, current: str, target: str) -> None:
    """Raise UsageError (naming the legal moves) if `current -> target` is not legal."""
    table = TRANSITIONS.get(kind)
    if table is None:
        raise UsageError(f"unknown item kind {kind!r}: use {' or '.join(ITEM_KINDS)}")
    if target not in table.get(current, frozenset()):
        legal = ", ".join(sorted(table.get(current, ()))) or "none: it is final"
        raise UsageError(f"{kind} {item_id} is {current} ({ITEM_LABELS_FR.get(current, '?')}); "
                         f"it cannot become {target}; legal moves: {legal}")
