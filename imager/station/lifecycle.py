"""Legal state moves, as data (tested as data).

A job ends in exactly one terminal state. Only `erased` means the drive was
overwritten completely AND read back as expected; `unverified` (verification
skipped), `failed` and `interrupted` never count as erased.
"""

from __future__ import annotations

from imager.errors import UsageError

JOB_STATES = ("queued", "running", "interrupted", "erased", "unverified", "failed",
              "cancelled")

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"erased", "unverified", "failed", "interrupted"}),
    "interrupted": frozenset({"running", "failed", "cancelled"}),
    "erased": frozenset(),
    "unverified": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

TERMINAL = frozenset(s for s, moves in JOB_TRANSITIONS.items() if not moves)
RESUMABLE = frozenset({"interrupted"})

STATE_LABELS_FR = {
    "queued": "en attente", "running": "en cours", "interrupted": "interrompu",
    "erased": "effacé et vérifié", "unverified": "écrit, non vérifié",
    "failed": "échec", "cancelled": "annulé",
}


def check_move(job_id: int, current: str, target: str) -> None:
    """Raise UsageError if `current -> target` is not a legal move."""
    if target not in JOB_TRANSITIONS.get(current, frozenset()):
        raise UsageError(f"job {job_id} is {current}; it cannot become {target}")
