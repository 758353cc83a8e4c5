"""What a job runner needs of the place its job lives.

On the station and in the CLI it is the registry (imager.registry.jobs.
RegistryJobStore); in an agent it is the agent's remote store
(imager.agent.remote.RemoteJobStore), which turns every write into an event
for the station. The runners only know this protocol.
"""

from __future__ import annotations

from typing import Any, Protocol

from imager.host.owner import Owner
from imager.model import DriveIdentity, ErasePlan
from imager.protocol.jobs import JobView


class JobStore(Protocol):
    """Reads and writes of one job's runner (every method is one durable step)."""

    def get(self, job_id: int, *, with_events: bool = False) -> JobView:
        """The job as it is now."""

    def move(self, job_id: int, target: str, *, reason: str = "",
             report: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
             owner: Owner | None = None) -> None:
        """A state move checked against the lifecycle table, with its event."""

    def event(self, job_id: int, kind: str, message: str = "",
              data: dict[str, Any] | None = None) -> None:
        """An event in the job's history."""

    def replace_plan(self, job_id: int, plan: ErasePlan, *, kind: str, message: str) -> None:
        """The job goes on with another plan; the old checkpoint no longer applies."""

    def record_drive(self, ident: DriveIdentity) -> None:
        """The drive as it is now (e.g. its size once its HPA is removed)."""

    def save_checkpoint(self, job_id: int, checkpoint: dict[str, Any]) -> None:
        """Where the job can resume from."""

    def verify_seed(self, job_id: int) -> str:
        """The seed of the job's sampled verification, drawn by the registry once
        the write passes are recorded (the same seed when asked again)."""
