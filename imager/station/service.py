"""The station service: agents, their events, job assignment, auto-certify.

Agents send typed events with ids (imager.protocol.events). Each event is
applied (imager.station.events) in one transaction that also records its id
(table agent_events, whose key it is): an event sent twice (the answer was
lost, the agent restarted, a spool was synced again) fails on that key when
its transaction commits, all rolled back, so it is applied once and answered
"duplicate". An event the registry refuses (an illegal move) is recorded as
refused with the reason and not retried; what an applied event asks of the
station (wake the long polls, certify a job) happens once it is committed.

Jobs are assigned to the agent that reported their drive. The station
creates them (a technician's request, or the auto-erase policy); the agent
runs them and reports every step as events.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imager.erase import policy as erase_policy
from imager.erase.plan import Choice, choices, plan_for
from imager.errors import ImagerError, NotFound, Unfit, UsageError
from imager.inventory import evidence
from imager.inventory.capabilities import DriveCapabilities
from imager.model import ImagePlan
from imager.protocol import events as ev
from imager.protocol.jobs import view_to_dict
from imager.registry import agents, items, machines
from imager.registry.intake import attach_all
from imager.registry.jobs import RegistryJobStore, erase_job_for, ready_for_a_job
from imager.settings import Settings
from imager.station.events import Applier, Effects, auto_erase, for_an_agent
from imager.station.identity import AgentAuth
from imager.station.liveness import Liveness, silence_reason
from imager.station.policy import ServicePolicy
from imager.station.tokens import Tokens
from imager.store import people
from imager.store.db import Registry, utcnow
from imager.store.models import Agent, AgentEvent, Document, Drive, Job, Machine

if TYPE_CHECKING:
    from imager.registry.issue import Issued, Issuer  # loads pyHanko: only when issuing
    from imager.station.push import Pusher

log = logging.getLogger(__name__)


@dataclass
class Station:
    settings: Settings
    registry: Registry
    policy: ServicePolicy = field(default_factory=ServicePolicy)

    def __post_init__(self) -> None:
        self.store = RegistryJobStore(self.registry)
        self.progress: dict[int, dict[str, Any]] = {}
        self.liveness = Liveness(self.policy.agent_timeout)
        self.applier = Applier(self.store, self.policy, erase_policy.load(
            self.settings.erase_policy), self.settings,
            lambda agent_id: not self.liveness.silent([agent_id]), self.progress)
        self.tokens = Tokens.open(self.settings)
        self._jobs_ready = threading.Condition()
        self._changes = threading.Condition()
        self.version = 0                # bumped at every change the board shows
        self._resume: set[int] = set()
        self._certify: queue.Queue[int | None] = queue.Queue()
        self._certifier: threading.Thread | None = None
        self.certified: list[str] = []
        self.auth = AgentAuth(self.registry, self.liveness)
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._issuer: Issuer | None = None
        self._issuer_lock = threading.Lock()
        self._on_issued: list[Callable[[Issued], None]] = []
        self.pusher: Pusher | None = None       # the portal's pushes, shown on the board

    # -- life ----------------------------------------------------------------

    def start(self, *, reconcile: bool = True) -> list[int]:
        """Reconcile jobs whose process died (marked interrupted); start the certifier.

        With a local agent, reconcile only once its spool is sent (`reconcile()`):
        a job it finished just before a crash is then recorded as finished, not
        marked interrupted and done again."""
        stale = self.reconcile() if reconcile else []
        if self.policy.auto_certify:
            self._certifier = threading.Thread(target=self._certify_loop, name="certifier",
                                               daemon=True)
            self._certifier.start()
            for job_id in self._uncertified():
                self._certify.put(job_id)
        self._watchdog = threading.Thread(target=self._watch_agents, name="agent-watchdog",
                                          daemon=True)
        self._watchdog.start()
        return stale

    def reconcile(self) -> list[int]:
        stale = self.store.reconcile()
        if stale:
            log.warning("jobs interrupted by the last stop: %s", stale)
            self._wake()
        return stale

    def stop(self) -> None:
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=30)
        if self._certifier is not None:
            self._certify.put(None)
            self._certifier.join(timeout=30)
        with self._jobs_ready:
            self._jobs_ready.notify_all()

    # -- agents --------------------------------------------------------------

    def policy_text(self) -> str:
        """The erase policy agents plan with (checked now: a bad one stops the station)."""
        path = self.settings.erase_policy or erase_policy.SHIPPED
        text = path.read_text(encoding="utf-8")
        erase_policy.parse(text, source=str(path))
        return text

    def enrol_local(self, public_key: str, *, name: str, host: str, kind: str = "dock") -> int:
        """An agent of this very process (the station's own dock agent): active."""
        with self.registry.session() as s:
            return agents.enrol_local(s, public_key, name=name, kind=kind, host=host)

    def _watch_agents(self) -> None:
        period = min(5.0, self.policy.agent_timeout / 4)
        while not self._stopping.wait(period):
            try:
                self.check_agents()
            except Exception:   # noqa: BLE001 - the watchdog must outlive one bad pass
                log.exception("checking the agents failed; trying again")

    def check_agents(self) -> list[int]:
        """Running jobs of agents gone silent -> interrupted; their ids."""
        with self.registry.session(readonly=True) as s:
            rows = s.execute(select(Job.id, Job.agent_id, Agent.name)
                             .join(Agent, Job.agent_id == Agent.id)
                             .where(Job.state == "running")).all()
        silent = self.liveness.silent(agent_id for _, agent_id, _ in rows
                                      if agent_id is not None)
        stopped = []
        for job_id, agent_id, name in rows:
            if agent_id not in silent:
                continue
            try:
                self.store.move(job_id, "interrupted",
                                reason=silence_reason(name, silent[agent_id]),
                                data={"silent_agent": agent_id})
            except UsageError:
                continue    # it ended meanwhile
            stopped.append(job_id)
        if stopped:
            log.warning("jobs of silent agents interrupted: %s", stopped)
            self._wake()
        return stopped

    # -- events --------------------------------------------------------------

    def receive(self, agent_id: int, events: Sequence[ev.Event]) -> list[dict[str, Any]]:
        """Apply events in their order; each answer: applied, duplicate or refused."""
        return [self._receive_one(agent_id, e) for e in sorted(events, key=lambda e: e.seq)]

    def _receive_one(self, agent_id: int, event: ev.Event) -> dict[str, Any]:
        try:   # an event seen before fails on its id (the key) at commit: all rolled back
            with self.registry.session() as s:
                effects, detail = self._apply(s, agent_id, event)
                outcome = "refused" if detail else "applied"
                s.add(AgentEvent(id=event.id, agent_id=agent_id, seq=event.seq, at=event.at,
                                 received_at=utcnow(), kind=event.kind,
                                 job_id=getattr(event.data, "job", None), outcome=outcome,
                                 detail=detail))
        except IntegrityError:  # the same event, applied meanwhile by another request
            return {"id": event.id, "outcome": "duplicate"}
        self._after(effects)
        return {"id": event.id, "outcome": outcome, **({"detail": detail} if detail else {})}

    def _apply(self, s: Session, agent_id: int, event: ev.Event) -> tuple[Effects, str | None]:
        """The event applied in a savepoint: its effects, or why it was refused."""
        agent = s.get(Agent, agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id}: register again")
        agent.last_seen_at = utcnow()
        try:
            with s.begin_nested():
                return self.applier.apply(s, agent, event), None
        except (ImagerError, KeyError, TypeError, ValueError) as exc:
            log.warning("event %s from agent %s refused: %s", event.id, agent_id, exc)
            if isinstance(exc, Unfit) and exc.job_id is not None:
                self._fail_unfit(s, exc.job_id, str(exc))
            return Effects(), f"{type(exc).__name__}: {exc}"

    def _fail_unfit(self, s: Session, job_id: int, reason: str) -> None:
        """The agent's own job whose event did not fit fails with the reason (never
        certified); a job already over stays as it is."""
        job = s.get(Job, job_id)
        if job is not None and job.state in ("queued", "running", "interrupted"):
            self.store.bound(s).move(job_id, "failed", reason=reason)

    def changed(self) -> None:
        """Something the board shows changed (an event applied, a job started, a
        document issued): wake the pages waiting in `wait_change`."""
        with self._changes:
            self.version += 1
            self._changes.notify_all()

    def wait_change(self, seen: int, timeout: float) -> int:
        """The version after `seen`, waiting up to `timeout` seconds for one."""
        with self._changes:
            if self.version == seen:
                self._changes.wait(timeout)
            return self.version

    def _after(self, effects: Effects) -> None:
        for job_id in effects.restarted:
            self.progress.pop(job_id, None)
        self.progress.update(effects.progress)
        self._resume.difference_update(effects.running)
        if self.policy.auto_certify:
            for job_id in effects.certify:
                self._certify.put(job_id)
        if effects.wake:
            self._wake()
        self.changed()                  # last: the pages read what is above

    def _wake(self) -> None:
        self.changed()
        with self._jobs_ready:
            self._jobs_ready.notify_all()

    # -- jobs for agents -----------------------------------------------------

    def jobs_for(self, agent_id: int, *, wait: float = 0.0) -> list[dict[str, Any]]:
        """Jobs the agent should run now (queued, or interrupted to resume);
        waits up to `wait` seconds for one."""
        with self._jobs_ready:
            jobs = self._jobs_now(agent_id)
            if not jobs and wait > 0:
                self._jobs_ready.wait(timeout=wait)
                jobs = self._jobs_now(agent_id)
        return jobs

    def _sweep(self, agent_id: int) -> None:
        """Start what the policy wants for this agent's drives that became eligible:
        erase (e.g. intake by the CLI), then a laptop's system (e.g. its triage
        confirmed). Looks without the write lock: most polls find nothing to do."""
        if self.policy.auto_erase != "never":
            with self.registry.session(readonly=True) as s:
                found = s.scalars(_eligible(agent_id, "inventoried")).first()
            if found:
                with self.registry.session() as s:
                    for drive in s.scalars(select(Drive).where(Drive.id.in_(
                            _eligible(agent_id, "inventoried")))):
                        auto_erase(s, drive, self.policy, self.store)
        if self.policy.laptop_image:
            self._laptop_systems(agent_id)

    def _laptop_systems(self, agent_id: int) -> None:
        """Deploy the policy's laptop image on this laptop's drives ready for it
        (imager.registry.machines.to_image), host name from the laptop's asset tag."""
        from imager.imaging.after import hostname_for
        with self.registry.session(readonly=True) as s:
            ready = [(d.id, m.asset_tag) for d in s.scalars(select(Drive).where(
                Drive.id.in_(_eligible(agent_id, "certified"))))
                if machines.to_image(s, d, confirm_triage=self.policy.confirm_triage)
                and (m := s.get(Machine, d.machine_id)) is not None]
        for drive_id, tag in ready:
            try:
                self.image(str(drive_id), str(self.policy.laptop_image),
                           hostname=hostname_for(tag, prefix="poste") if tag else None)
            except ImagerError as exc:        # e.g. no such image: said once per poll
                log.warning("laptop drive %s: no system installed: %s", drive_id, exc)

    def laptop_next(self, agent_id: int) -> str | None:
        """What a laptop's live system does next: "restart" once the laptop is done
        (imager.registry.machines.laptop_done), else None (go on)."""
        with self.registry.session(readonly=True) as s:
            agent = s.get(Agent, agent_id)
            if agent is None or agent.kind != "machine":
                return None
            return "restart" if machines.laptop_done(s, agent_id) else None

    def _jobs_now(self, agent_id: int) -> list[dict[str, Any]]:
        self._sweep(agent_id)
        with self.registry.session(readonly=True) as s:
            rows = s.execute(select(Job.id, Job.state).where(
                Job.agent_id == agent_id, Job.state.in_(("queued", "interrupted")))
                .order_by(Job.id)).all()
        wanted = [j for j, state in rows
                  if state == "queued" or self.policy.auto_resume or j in self._resume]
        return [view_to_dict(self.store.get(j)) for j in wanted]

    # -- what a technician asks ----------------------------------------------

    def erase(self, drive_ref: str, *, technician: str | None = None,
              donation: str | None = None, method: str | None = None) -> int:
        """Erase a plugged-in drive with the station's plan for it (job id); with
        `method`, a plan of that one method instead of the policy's, made here from
        the tools' outputs the drive was reported with (a person's choice: the
        drive's history names who made it)."""
        with self.registry.session() as s:
            drive = items.find_drive(s, drive_ref)
            tech = people.find_technician(s, technician) if technician else None
            don = people.find_donation(s, donation).id if donation else drive.donation_id
            plan = None
            if method is not None:
                plan = for_an_agent(plan_for(self._capabilities(drive), self.applier.plans,
                                             method=method))
                items.note(s, drive, "method_chosen", actor=tech.name if tech else "imager",
                           reason=f"{method} instead of the policy's plan",
                           data={"method": method})
            job_id = erase_job_for(self.store, s, drive, technician_id=tech.id if tech else None,
                                   donation_id=don, plan=plan)
        self._wake()
        return job_id

    def erase_choices(self, drive_ref: str) -> list[Choice]:
        """The methods a person may choose for a drive instead of the policy's."""
        with self.registry.session(readonly=True) as s:
            return choices(self._capabilities(items.find_drive(s, drive_ref)),
                           self.applier.plans)

    def _capabilities(self, drive: Drive) -> DriveCapabilities:
        proof = (drive.plan or {}).get("evidence")
        if proof is None:
            raise UsageError(f"drive {drive.id}: no tools' outputs on record to plan from; "
                             "plug it in again so that its agent reports it")
        return evidence.read(evidence.DriveEvidence.from_dict(proof), self.settings)

    def image(self, drive_ref: str, name: str, *, version: str | None = None,
              technician: str | None = None, hostname: str | None = None,
              verify: str = "full", grow: str = "now") -> int:
        """Deploy image `name` onto one plugged-in drive (see image_drives): its job."""
        return self.image_drives([drive_ref], name, version=version, technician=technician,
                                 hostname=hostname, verify=verify, grow=grow)[0]

    def image_drives(self, drive_refs: Sequence[str], name: str, *,
                     version: str | None = None, technician: str | None = None,
                     hostname: str | None = None, verify: str = "full",
                     grow: str = "now") -> list[int]:
        """Deploy image `name` onto plugged-in drives, by their agents: one job
        each (their ids, in order). Every drive is checked (a verified erasure on
        record, its state) before any job exists: one refused drive refuses them
        all. The jobs of one agent form a batch, which it writes from one stream."""
        from imager.jobs.image import image_info
        from imager.registry import deployments
        from imager.station import image_store
        refs = [str(ref) for ref in drive_refs]
        if not refs:
            raise UsageError("no drive given: name at least one drive to image")
        if hostname and len(refs) > 1:
            raise UsageError("a hostname names one machine: give one drive with it")
        _check_image_options(verify, grow)
        entry = image_store.catalogue(self.settings).get(name, version)
        info = image_info(entry)
        urls = image_store.describe(entry)["urls"]
        jobs: list[int] = []
        with self.registry.session() as s:
            tech = people.find_technician(s, technician) if technician else None
            drives = [items.find_drive(s, ref) for ref in refs]
            if len({d.id for d in drives}) < len(drives):
                raise UsageError("the same drive is named twice: give it once")
            begun = []
            for drive in drives:             # any refusal rolls the whole session back
                ident = ready_for_a_job(s, drive)
                begun.append((drive, ident, *deployments.begin(
                    s, ident, info, actor=tech.name if tech else "imager")))
            batches = _batches(d.agent_id for d in drives)
            for drive, ident, drive_id, erasure in begun:
                plan = ImagePlan(name=info.name, version=info.version,
                                 sha256=info.sha256 or "", image_size=info.image_size,
                                 mapped_bytes=info.mapped_bytes, urls=urls, verify=verify,
                                 grow=grow, hostname=hostname, erasure_job=erasure,
                                 batch=batches[drive.agent_id])
                jobs.append(self.store.bound(s).create_image(
                    drive_id, ident.path, plan, donation_id=drive.donation_id,
                    technician_id=tech.id if tech else None, agent_id=drive.agent_id))
        self._wake()
        return jobs

    def verify_seed(self, agent_id: int, job_id: int) -> str:
        """The seed of agent `agent_id`'s job's sampled verification (drawn now, once
        its write passes are reported)."""
        with self.registry.session(readonly=True) as s:
            job = s.get(Job, job_id)
            if job is None or job.agent_id != agent_id:
                raise NotFound(f"job {job_id} is not a job of agent {agent_id}")
        return self.store.verify_seed(job_id)

    def resume(self, job_id: int) -> None:
        job = self.store.get(job_id)
        if job.state != "interrupted":
            raise UsageError(f"job {job_id} is {job.state}: only an interrupted job resumes")
        self._resume.add(job_id)
        self._wake()

    def intake(self, donation: str, *, drives: list[str], machines: list[str],
               actor: str) -> list[dict[str, Any]]:
        started = False
        with self.registry.session() as s:
            out = attach_all(s, donation, drives=drives, machines=machines, actor=actor)
            for a in out:
                drive = s.get(Drive, a.id) if a.kind == "drive" else None
                if drive is not None:
                    started |= auto_erase(s, drive, self.policy, self.store) is not None
            answer = [a.to_dict() for a in out]
        if started:
            self._wake()
        else:
            self.changed()              # the cards show their donation
        return answer

    # -- certificates ----------------------------------------------------------

    def _uncertified(self) -> list[int]:
        with self.registry.session(readonly=True) as s:
            done = select(Document.job_id).where(Document.job_id.is_not(None))
            return list(s.scalars(select(Job.id).where(Job.state == "erased",
                                                       Job.agent_id.is_not(None),
                                                       Job.id.not_in(done))))

    def issuer(self) -> Issuer:
        """The station's issuer of documents, made once (it loads the signing keys);
        the ledger's lock orders its documents, whichever thread issues them."""
        from imager.registry.issue import Issuer
        with self._issuer_lock:
            if self._issuer is None:
                self._issuer = Issuer(self.settings, self.registry, issued=self._issued)
            return self._issuer

    def on_issued(self, listener: Callable[[Issued], None]) -> None:
        """Call `listener` with every document this station's issuer files."""
        self._on_issued.append(listener)

    def attach_pusher(self, pusher: Pusher) -> None:
        """The background pushes to the portal (`imager serve --portal`): nudged as
        soon as a document is issued, their status on the board."""
        self.pusher = pusher
        pusher.on_change = self.changed
        self.on_issued(lambda _issued: pusher.nudge())

    def _issued(self, issued: Issued) -> None:
        for listener in self._on_issued:
            try:
                listener(issued)
            except Exception as exc:  # noqa: BLE001 - the document is issued whatever
                log.warning("after %s was issued: %s", issued.id, exc)

    def _certify_loop(self) -> None:
        while (job_id := self._certify.get()) is not None:
            try:
                issued = self.issuer().for_job(job_id)
                self.certified.append(issued.id)
                self.changed()
                log.info("job %s: %s issued", job_id, issued.id)
            except Exception as exc:  # a certificate that fails must not stop the next
                log.error("job %s: no certificate: %s", job_id, exc)


def _eligible(agent_id: int, state: str) -> Select[Any]:
    """This agent's present drives in `state` with no job to run or running."""
    open_jobs = select(Job.drive_id).where(Job.state.in_(("queued", "running",
                                                            "interrupted")))
    return select(Drive.id).where(Drive.agent_id == agent_id, Drive.present.is_(True),
                                  Drive.state == state, Drive.id.not_in(open_jobs))


def _check_image_options(verify: str, grow: str) -> None:
    from imager.imaging.after import GROW_MODES
    from imager.imaging.readback import MODES
    if verify not in MODES:
        raise UsageError(f"verify={verify!r}: choose one of {', '.join(MODES)}")
    if grow not in GROW_MODES:
        raise UsageError(f"grow={grow!r}: choose one of {', '.join(GROW_MODES)}")


def _batches(agent_ids: Iterable[int | None]) -> dict[int | None, str | None]:
    """The batch id of the image jobs of each agent: one batch per agent with two
    drives or more (its agent writes them from one stream), none for one."""
    counts = Counter(agent_ids)
    return {agent: secrets.token_hex(6) if n > 1 else None for agent, n in counts.items()}
