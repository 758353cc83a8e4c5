"""What the station does on its own: the service policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imager.errors import UsageError
from imager.station.liveness import DEFAULT_TIMEOUT

if TYPE_CHECKING:       # the CLI reads this module to build its options: keep it light
    from imager.store.models import Drive

AUTO_ERASE = ("never", "known-donation", "always")


@dataclass(frozen=True)
class ServicePolicy:
    """What the station does on its own.

    auto_erase: start erasing a drive as soon as it is plugged in: "never"
    (wait for the technician), "known-donation" (only a drive that intake tied
    to a donation) or "always" (the lab bench). auto_resume: resume jobs an
    interruption stopped (station restart, power cut). auto_certify: issue the
    certificate of every erased and verified drive. agent_timeout: seconds of
    silence after which an agent's running jobs are marked interrupted.
    laptop_image: the catalogue image a laptop of a donation receives once its
    drive's erasure is certified (None: a technician installs it);
    confirm_triage: only once a person confirmed the laptop's triage as reuse
    (else triage's proposal is enough)."""

    auto_erase: str = "known-donation"
    auto_resume: bool = True
    auto_certify: bool = True
    agent_timeout: float = DEFAULT_TIMEOUT
    laptop_image: str | None = None
    confirm_triage: bool = True

    def __post_init__(self) -> None:
        if self.agent_timeout <= 0:
            raise UsageError(f"agent timeout {self.agent_timeout}: give seconds above 0")
        if self.auto_erase not in AUTO_ERASE:
            raise UsageError(f"auto-erase {self.auto_erase!r}: use one of "
                             f"{', '.join(AUTO_ERASE)}")

    def wants_erase(self, drive: Drive) -> bool:
        """True when this drive should be erased without waiting for a person."""
        return self.auto_erase == "always" or (
            self.auto_erase == "known-donation" and drive.donation_id is not None)

