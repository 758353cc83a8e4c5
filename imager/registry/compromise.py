"""An agent revoked as compromised, and the documents that rest on its work.

An agent's word is in every document of an erase job it took part in: the job's
agent, an agent the job was reassigned from or to when its drive moved (the
job's `reassigned` events), or an agent whose events about the job the station
applied (table agent_events). The donation certificates that list one of those
documents rest on it too. Revoking an agent as compromised lists them, the ones
already withdrawn as such, and withdraws the others on request: each through
`Issuer.withdraw`, the one path of `imager cert withdraw` (a signed withdrawal
record and a ledger entry of its own).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.certify.record import DRIVE_KINDS
from imager.errors import UsageError
from imager.registry import agents, items
from imager.registry.decisions import REASON, who_and_why
from imager.registry.issue import listed_in, withdrawals
from imager.registry.jobs import REASSIGNED
from imager.store.db import Registry
from imager.store.models import Agent, AgentEvent, Document, Donation, Drive, Job, JobEvent

if TYPE_CHECKING:
    from imager.registry.issue import Issued, Issuer



@dataclass(frozen=True)
class Resting:
    """A document resting on the agent's work, and its withdrawal if it has one."""

    id: str
    kind: str
    issued_at: datetime
    job: int | None
    drive: str | None                     # the drive's serial (else its identity)
    donation: str | None                  # the donation's reference
    withdrawn: dict[str, Any] | None      # {withdrawal, at, by, reason}: see `withdrawals`

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "issued_at": self.issued_at.isoformat()}


@dataclass(frozen=True)
class Revocation:
    """An agent revoked (now or before), with what rests on its work when it was
    revoked as compromised, and the reason its withdrawals would carry."""

    agent: dict[str, Any]                 # imager.registry.agents.summary
    newly: bool                           # False: it had been revoked before
    by: str
    reason: str                           # of the withdrawals ("" unless compromised)
    resting: list[Resting]

    @property
    def to_withdraw(self) -> list[Resting]:
        return [d for d in self.resting if d.withdrawn is None]


def jobs_of(s: Session, agent_id: int) -> set[int]:
    """The jobs agent `agent_id` took part in: ran, was handed or left, or reported on."""
    ids = set(s.scalars(select(Job.id).where(Job.agent_id == agent_id)))
    for event in s.scalars(select(JobEvent).where(JobEvent.kind == REASSIGNED)):
        data = event.data or {}
        if agent_id in (data.get("from_agent"), data.get("to_agent")):
            ids.add(event.job_id)
    ids.update(s.scalars(select(AgentEvent.job_id).where(
        AgentEvent.agent_id == agent_id, AgentEvent.outcome == "applied",
        AgentEvent.job_id.is_not(None))))
    return ids


def resting_on(s: Session, agent_id: int, documents_dir: Path) -> list[Resting]:
    """The documents of the jobs of `agent_id`, then the donation certificates listing
    them, in the order they were issued; withdrawn ones say so."""
    drive_docs = list(s.scalars(select(Document).where(
        Document.job_id.in_(jobs_of(s, agent_id)), Document.kind.in_(DRIVE_KINDS)).order_by(
        Document.issued_at, Document.id)))
    listing = dict.fromkeys(i for d in drive_docs for i in listed_in(s, documents_dir, d.id))
    donations = sorted((d for i in listing if (d := s.get(Document, i)) is not None),
                       key=lambda d: (d.issued_at, d.id))
    docs = drive_docs + donations
    withdrawn = withdrawals(s, [d.id for d in docs])
    return [_resting(s, d, withdrawn.get(d.id)) for d in docs]


def _resting(s: Session, doc: Document, withdrawn: dict[str, Any] | None) -> Resting:
    drive = s.get(Drive, doc.drive_id) if doc.drive_id is not None else None
    donation = s.get(Donation, doc.donation_id) if doc.donation_id is not None else None
    return Resting(doc.id, doc.kind, doc.issued_at, doc.job_id,
                   (drive.serial or drive.identity) if drive else None,
                   donation.reference if donation else None, withdrawn)


def withdrawal_reason(agent: Agent, reason: str) -> str:
    """The reason every document resting on `agent` is withdrawn with."""
    return (f"agent {agent.name} (n° {agent.id}) révoqué comme compromis / revoked as "
            f"compromised: {' '.join(reason.split())}")


def _checked(agent: Agent, reason: str, by: str) -> tuple[str, str]:
    """Who decides and the withdrawals' reason, checked before anything is revoked."""
    by, reason = who_and_why(by, reason, asking="who revokes it?",
                             printed="on every document withdrawn")
    full = withdrawal_reason(agent, reason)
    if len(full) > REASON[1]:
        raise UsageError(f"motif trop long / reason too long: each withdrawal prints "
                         f"« {withdrawal_reason(agent, '')}» before it, {len(full)} characters "
                         f"in all, at most {REASON[1]}: shorten --reason to "
                         f"{REASON[1] - len(full) + len(reason)} characters")
    return by, full


def revoke(registry: Registry, ref: str, *, reason: str, by: str, compromised: bool,
           documents_dir: Path) -> Revocation:
    """Revoke the agent `ref` (number or fingerprint); as compromised, list the
    documents resting on its work. An agent revoked before keeps its first
    revocation, and is listed again."""
    with registry.session() as s:
        agent = agents.find_agent(s, ref)
        why = ""
        if compromised:
            by, why = _checked(agent, reason, by)
            reason = f"compromis / compromised: {reason}"
        newly = agents.revoke(agent, reason=reason, by=by)
        resting = resting_on(s, agent.id, documents_dir) if compromised else []
        return Revocation(agents.summary(agent), newly, by, why, resting)


def withdraw(issuer: Issuer, revocation: Revocation) -> list[Issued]:
    """Withdraw the documents of `revocation` not withdrawn yet, one by one, as
    `imager cert withdraw` does; a failure stops there (the ones before stay
    withdrawn, and a new run goes on with the rest)."""
    if not revocation.reason:
        raise UsageError("only an agent revoked as compromised has its documents withdrawn: "
                         "give --compromised")
    done = [issuer.withdraw(d.id, reason=revocation.reason, by=revocation.by)
            for d in revocation.to_withdraw]
    _erase_again(issuer.registry, [d.id for d in revocation.to_withdraw], revocation.by)
    return done


AGAIN = ("inventoried", "l'effacement fait par un agent révoqué comme compromis ne compte plus : "
         "l'effacer à nouveau / the erasure by an agent revoked as compromised no longer "
         "counts: erase it again")
BACK_FROM = ("erased", "certified", "imaged", "ready")      # erased, not yet handed over


def _erase_again(registry: Registry, doc_ids: list[str], by: str) -> None:
    """The drives whose erasure certificate was withdrawn go back to be erased (a drive
    already handed over, destroyed or on its way out keeps its state: its history says
    the certificate was withdrawn)."""
    with registry.session() as s:
        for doc in s.scalars(select(Document).where(Document.id.in_(doc_ids),
                                                    Document.kind == "erasure")):
            drive = s.get(Drive, doc.drive_id) if doc.drive_id is not None else None
            if drive is not None and drive.state in BACK_FROM:
                items.move(s, drive, AGAIN[0], actor=by, reason=AGAIN[1],
                           data={"document": doc.id})
