"""Agents that stop talking: their running jobs are marked interrupted.

Every authenticated request of an agent counts as a sign of life; a working
agent long-polls for jobs every few seconds. An agent not heard for
`timeout` seconds (a laptop switched off, its network gone, the agent hung)
has its running jobs moved to `interrupted`, with the reason: they resume from
their checkpoint when the agent, or another agent holding the drive, is back.

If the agent was only cut off and its run went on, its next event about the
job revives it (interrupted -> running), but only when the event comes from
the very process that was running it (`same_run`): the late events of a run
that died never revive a job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imager.host.owner import Owner
    from imager.store.models import Job

DEFAULT_TIMEOUT = 120.0


class Liveness:
    """When each agent was last heard (monotonic clock, this process)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout, self._clock = timeout, clock
        self._since = clock()          # agents not heard yet: counted from our start
        self._heard: dict[int, float] = {}
        self._lock = threading.Lock()

    def heard(self, agent_id: int) -> None:
        with self._lock:
            self._heard[agent_id] = self._clock()

    def silent(self, agent_ids: Iterable[int]) -> dict[int, float]:
        """The agents among `agent_ids` not heard for longer than the timeout:
        agent id -> seconds of silence."""
        now = self._clock()
        with self._lock:
            quiet = {a: now - self._heard.get(a, self._since) for a in set(agent_ids)}
        return {a: round(q, 1) for a, q in quiet.items() if q > self.timeout}


def silence_reason(agent_name: str, seconds: float) -> str:
    return (f"agent {agent_name} silent for {seconds:.0f} s (machine switched off, network "
            "lost or agent stopped): the job resumes from its checkpoint when the agent, or "
            "another one with this drive, is back")


def same_run(job: Job, owner: Owner | None) -> bool:
    """True when `owner` (sent with an agent's event) is the process running `job`."""
    if owner is None:
        return False
    return (job.owner_host, job.owner_boot_id, job.owner_pid) == (
        owner.host, owner.boot_id, owner.pid)
