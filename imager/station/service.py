"""The station service: agents, their events, job assignment, auto-certify.

Agents send events with ids. Each event is applied in one transaction that
also records its id (table agent_events): an event sent twice (the answer was
lost, the agent restarted, a spool was synced again) is applied once and
answered "duplicate". An event the registry refuses (an illegal move) is
recorded as refused with the reason and not retried.

Jobs are assigned to the agent that reported their drive. The station
creates them (a technician's request, or the auto-erase policy); the agent
runs them and reports every step as events.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imager.erase import policy as erase_policy
from imager.errors import ImagerError, NotFound, UsageError
from imager.host.owner import Owner
from imager.model import DriveIdentity, ErasePlan, ImagePlan
from imager.protocol.jobs import view_to_dict
from imager.registry import items
from imager.registry.intake import attach_all
from imager.registry.jobs import RegistryJobStore, upsert_drive
from imager.settings import Settings
from imager.station.liveness import DEFAULT_TIMEOUT, Liveness, same_run, silence_reason
from imager.station.tokens import Tokens
from imager.store import people
from imager.store.db import Registry, utcnow
from imager.store.models import Agent, AgentEvent, Document, Drive, Job, Machine

log = logging.getLogger(__name__)

AUTO_ERASE = ("never", "known-donation", "always")
JOB_KINDS = ("job_move", "job_event", "job_plan", "job_checkpoint", "job_drive", "progress")


@dataclass(frozen=True)
class ServicePolicy:
    """What the station does on its own.

    auto_erase: start erasing a drive as soon as it is plugged in: "never"
    (wait for the technician), "known-donation" (only a drive that intake tied
    to a donation) or "always" (the lab bench). auto_resume: resume jobs an
    interruption stopped (station restart, power cut). auto_certify: issue the
    certificate of every erased and verified drive. agent_timeout: seconds of
    silence after which an agent's running jobs are marked interrupted."""

    auto_erase: str = "known-donation"
    auto_resume: bool = True
    auto_certify: bool = True
    agent_timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.agent_timeout <= 0:
            raise UsageError(f"agent timeout {self.agent_timeout}: give seconds above 0")
        if self.auto_erase not in AUTO_ERASE:
            raise UsageError(f"auto-erase {self.auto_erase!r}: use one of "
                             f"{', '.join(AUTO_ERASE)}")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Station:
    settings: Settings
    registry: Registry
    policy: ServicePolicy = field(default_factory=ServicePolicy)

    def __post_init__(self) -> None:
        self.store = RegistryJobStore(self.registry)
        self.tokens = Tokens.open(self.settings)
        self.progress: dict[int, dict[str, Any]] = {}
        self._jobs_ready = threading.Condition()
        self._resume: set[int] = set()
        self._certify: queue.Queue[int | None] = queue.Queue()
        self._certifier: threading.Thread | None = None
        self.certified: list[str] = []
        self.liveness = Liveness(self.policy.agent_timeout)
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

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

    def register(self, enrol_token: str, *, name: str, kind: str, host: str,
                 info: dict[str, Any] | None) -> tuple[int, str]:
        """A new agent (or the same one restarted): its id and a fresh token."""
        if not self.tokens.is_enrol(enrol_token):
            raise PermissionError("wrong enrolment token")
        if kind not in ("dock", "machine"):
            raise UsageError(f"agent kind {kind!r}: use dock or machine")
        token = secrets.token_urlsafe(32)
        with self.registry.session() as s:
            agent = s.scalar(select(Agent).where(Agent.host == host, Agent.name == name))
            if agent is None:
                agent = Agent(name=name, kind=kind, host=host, created_at=utcnow(),
                              token_sha256="")
                s.add(agent)
            agent.token_sha256, agent.info, agent.kind = token_hash(token), info, kind
            agent.last_seen_at = utcnow()
            s.flush()
            self.liveness.heard(agent.id)
            return agent.id, token

    def agent_of(self, token: str) -> int:
        with self.registry.session(readonly=True) as s:
            agent_id = s.scalar(select(Agent.id).where(Agent.token_sha256 == token_hash(token)))
        if agent_id is None:
            raise PermissionError("unknown agent token: register again")
        self.liveness.heard(agent_id)
        return agent_id

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
        silent = self.liveness.silent(agent_id for _, agent_id, _ in rows)
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

    def receive(self, agent_id: int, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply events in their order; each answer: applied, duplicate or refused."""
        answers = [self._receive_one(agent_id, ev) for ev in
                   sorted(events, key=lambda e: int(e.get("seq") or 0))]
        return answers

    def _receive_one(self, agent_id: int, ev: dict[str, Any]) -> dict[str, Any]:
        ev_id = str(ev.get("id") or "")
        if not ev_id or len(ev_id) > 64:
            return {"id": ev_id, "outcome": "refused", "detail": "an event needs an id"}
        after: list[tuple[str, int]] = []
        try:
            with self.registry.session() as s:
                if s.get(AgentEvent, ev_id) is not None:
                    return {"id": ev_id, "outcome": "duplicate"}
                outcome, detail = self._apply(s, agent_id, ev, after)
                s.add(AgentEvent(id=ev_id, agent_id=agent_id, seq=int(ev.get("seq") or 0),
                                 at=_when(ev.get("at")), received_at=utcnow(),
                                 kind=str(ev.get("kind"))[:40], job_id=_job_of(ev),
                                 outcome=outcome, detail=detail))
        except IntegrityError:  # the same event, applied meanwhile by another request
            return {"id": ev_id, "outcome": "duplicate"}
        self._after(after)
        return {"id": ev_id, "outcome": outcome, **({"detail": detail} if detail else {})}

    def _apply(self, s: Session, agent_id: int, ev: dict[str, Any],
               after: list[tuple[str, int]]) -> tuple[str, str | None]:
        kind, data = ev.get("kind"), ev.get("data") or {}
        agent = s.get(Agent, agent_id)
        assert agent is not None
        agent.last_seen_at = utcnow()
        try:
            with s.begin_nested():
                self._dispatch(s, agent, str(kind), data, after)
        except (ImagerError, KeyError, TypeError, ValueError) as exc:
            log.warning("event %s from agent %s refused: %s", ev.get("id"), agent_id, exc)
            return "refused", f"{type(exc).__name__}: {exc}"
        return "applied", None

    def _dispatch(self, s: Session, agent: Agent, kind: str, data: dict[str, Any],
                  after: list[tuple[str, int]]) -> None:
        actor = f"agent {agent.name}"
        if kind == "drive_attached":
            self._attached(s, agent, data, after)
        elif kind == "drive_detached":
            drive = s.scalar(select(Drive).where(Drive.identity == data["identity"]))
            if drive is not None and drive.present:
                drive.present = False
                items.note(s, drive, "unplugged", actor=actor, reason=data.get("reason", ""),
                           data={"path": data.get("path")})
        elif kind == "machine_inventory":
            self._machine(s, agent, data)
        elif kind in JOB_KINDS:
            self._job_event(s, agent, kind, data, after)
        elif kind != "heartbeat":
            raise UsageError(f"unknown event kind {kind!r}")

    def _attached(self, s: Session, agent: Agent, data: dict[str, Any],
                  after: list[tuple[str, int]]) -> None:
        ident = DriveIdentity(**data["identity"])
        drive = upsert_drive(s, ident, actor=f"agent {agent.name}")
        drive.present, drive.agent_id, drive.last_seen_at = True, agent.id, utcnow()
        drive.plan = {"identity": data["identity"], "plan": data.get("plan"),
                      "problems": data.get("problems", [])}
        items.note(s, drive, "plugged_in", actor=f"agent {agent.name}",
                   reason=f"{ident.path} on {agent.name}", data={"path": ident.path})
        if agent.kind == "machine":            # a laptop's agent: the drive is the laptop's
            machine = s.scalar(select(Machine).where(Machine.agent_id == agent.id)
                               .order_by(Machine.id.desc()))
            if machine is not None:
                _belongs(s, drive, machine, actor=f"agent {agent.name}")
        self._follow_drive(s, drive, agent, after)
        self._maybe_auto_erase(s, drive, after)

    def _follow_drive(self, s: Session, drive: Drive, agent: Agent,
                      after: list[tuple[str, int]]) -> None:
        """A queued or interrupted job goes to the agent that now holds its drive
        (another dock, or the same laptop booted again): that agent runs it."""
        for job in s.scalars(select(Job).where(Job.drive_id == drive.id,
                                               Job.state.in_(("queued", "interrupted")),
                                               Job.agent_id != agent.id)):
            self.store.bound(s).event(job.id, "reassigned",
                                      f"drive now on agent {agent.name}: it resumes there",
                                      {"from_agent": job.agent_id, "to_agent": agent.id})
            job.agent_id = agent.id
            after.append(("job", job.id))

    def _maybe_auto_erase(self, s: Session, drive: Drive, after: list[tuple[str, int]]) -> None:
        wanted = self.policy.auto_erase == "always" or (
            self.policy.auto_erase == "known-donation" and drive.donation_id is not None)
        if not wanted or not drive.present or drive.state not in ("inventoried",):
            return
        if (drive.plan or {}).get("plan") is None:
            return
        job_id = self._create_job(s, drive, technician_id=None, donation_id=drive.donation_id)
        after.append(("job", job_id))

    def _create_job(self, s: Session, drive: Drive, *, technician_id: int | None,
                    donation_id: int | None) -> int:
        ident = _ready_for_a_job(s, drive)
        probe = drive.plan or {}
        plan = ErasePlan.from_dict(probe["plan"])
        return self.store.bound(s).create_erase(ident, plan, donation_id=donation_id,
                                                technician_id=technician_id,
                                                agent_id=drive.agent_id)

    def _machine(self, s: Session, agent: Agent, data: dict[str, Any]) -> None:
        key = data.get("key")
        machine = s.scalar(select(Machine).where(Machine.identity == key)) if key else None
        serial = (data.get("inventory") or {}).get("machine", {}).get("serial")
        if machine is None and serial:
            machine = s.scalar(select(Machine).where(Machine.serial == serial,
                                                     Machine.state == "received"))
        if machine is None:
            machine = Machine(state="received", created_at=utcnow())
            s.add(machine)
        inv = data.get("inventory") or {}
        info = inv.get("machine") or {}
        machine.identity = key or machine.identity
        machine.vendor, machine.model = info.get("vendor"), info.get("model")
        machine.serial, machine.uuid = info.get("serial") or machine.serial, info.get("uuid")
        machine.inventory, machine.proposal = inv, data.get("proposal")
        machine.agent_id, machine.last_seen_at = agent.id, utcnow()
        s.flush()
        items.note(s, machine, "inventory", actor=f"agent {agent.name}",
                   reason="inventory reported", data={"proposal": data.get("proposal")})
        if machine.state == "received":
            items.move(s, machine, "inventoried", actor=f"agent {agent.name}",
                       reason="inventory reported")
        if agent.kind == "machine":            # the drives its agent already reported
            for drive in s.scalars(select(Drive).where(Drive.agent_id == agent.id,
                                                       Drive.present.is_(True))):
                _belongs(s, drive, machine, actor=f"agent {agent.name}")

    def _job_event(self, s: Session, agent: Agent, kind: str, data: dict[str, Any],
                   after: list[tuple[str, int]]) -> None:
        job_id = int(data["job"])
        job = s.get(Job, job_id)
        if job is None or job.agent_id != agent.id:
            raise NotFound(f"job {job_id} is not a job of agent {agent.name}")
        store = self.store.bound(s)
        if job.state == "interrupted" and not (
                kind == "job_move" and data.get("target") == "running") and same_run(
                job, data.get("owner")):
            store.move(job_id, "running", owner=Owner(**data["owner"]),
                       reason=f"agent {agent.name} is back: its run of the job went on")
        if kind == "progress":
            self.progress[job_id] = {k: data.get(k) for k in ("phase", "index", "done",
                                                               "total")}
        elif kind == "job_move":
            owner = Owner(**data["owner"]) if data.get("owner") else None
            store.move(job_id, data["target"], reason=data.get("reason", ""),
                       report=data.get("report"), data=data.get("data"), owner=owner)
            if data["target"] == "running":
                self._resume.discard(job_id)
            if data["target"] == "erased":
                after.append(("certify", job_id))
        elif kind == "job_event":
            store.event(job_id, data["kind"], data.get("message", ""), data.get("data"))
            if data["kind"] == "deployment" and job.kind == "image":
                self._deployment(s, agent, job, data.get("data") or {})
        elif kind == "job_plan":
            store.replace_plan(job_id, ErasePlan.from_dict(data["plan"]), kind=data["kind"],
                               message=data.get("message", ""))
        elif kind == "job_checkpoint":
            store.save_checkpoint(job_id, data["checkpoint"])
        else:
            store.record_drive(DriveIdentity(**data["identity"]))

    def _after(self, after: list[tuple[str, int]]) -> None:
        for what, job_id in after:
            if what == "certify" and self.policy.auto_certify:
                self._certify.put(job_id)
            elif what == "job":
                self._wake()

    def _wake(self) -> None:
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
        """Auto-erase drives of this agent that became eligible (e.g. intake by the CLI).
        Looks without the write lock: most polls find nothing to do."""
        if self.policy.auto_erase == "never":
            return
        waiting = select(Job.drive_id).where(Job.state.in_(("queued", "running",
                                                              "interrupted")))
        eligible = select(Drive.id).where(Drive.agent_id == agent_id, Drive.present.is_(True),
                                          Drive.state == "inventoried",
                                          Drive.id.not_in(waiting))
        with self.registry.session(readonly=True) as s:
            if not s.scalars(eligible).first():
                return
        with self.registry.session() as s:
            for drive in s.scalars(select(Drive).where(Drive.id.in_(eligible))):
                self._maybe_auto_erase(s, drive, [])

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
              donation: str | None = None) -> int:
        """Erase a plugged-in drive with the plan its agent made (job id)."""
        with self.registry.session() as s:
            drive = items.find_drive(s, drive_ref)
            tech = people.find_technician(s, technician).id if technician else None
            don = people.find_donation(s, donation).id if donation else drive.donation_id
            job_id = self._create_job(s, drive, technician_id=tech, donation_id=don)
        self._wake()
        return job_id

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
                ident = _ready_for_a_job(s, drive)
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

    def _deployment(self, s: Session, agent: Agent, job: Job, data: dict[str, Any]) -> None:
        """An agent's image job reported its deployment: record it, move the drive."""
        from imager.imaging.deploy import TargetResult
        from imager.registry import deployments
        plan = ImagePlan.from_dict(job.plan)
        result = TargetResult(**{**data["result"], "mismatches": [
            tuple(m) for m in data["result"]["mismatches"]]})
        info = deployments.ImageInfo(plan.name, plan.version, plan.sha256, plan.image_size,
                                     plan.mapped_bytes)
        deployments.finish(s, job.drive_id, info, result, actor=f"agent {agent.name}",
                           started_at=job.started_at or utcnow(),
                           erasure_job_id=plan.erasure_job, after=data.get("after"),
                           hostname=plan.hostname, job_id=job.id)

    def resume(self, job_id: int) -> None:
        job = self.store.get(job_id)
        if job.state != "interrupted":
            raise UsageError(f"job {job_id} is {job.state}: only an interrupted job resumes")
        self._resume.add(job_id)
        self._wake()

    def intake(self, donation: str, *, drives: list[str], machines: list[str],
               actor: str) -> list[dict[str, Any]]:
        after: list[tuple[str, int]] = []
        with self.registry.session() as s:
            out = attach_all(s, donation, drives=drives, machines=machines, actor=actor)
            for a in out:
                if a.kind == "drive":
                    drive = s.get(Drive, a.id)
                    if drive is not None:
                        self._maybe_auto_erase(s, drive, after)
            answer = [a.to_dict() for a in out]
        self._after(after)
        return answer

    # -- certificates ----------------------------------------------------------

    def _uncertified(self) -> list[int]:
        with self.registry.session(readonly=True) as s:
            done = select(Document.job_id).where(Document.job_id.is_not(None))
            return list(s.scalars(select(Job.id).where(Job.state == "erased",
                                                       Job.agent_id.is_not(None),
                                                       Job.id.not_in(done))))

    def _certify_loop(self) -> None:
        from imager.certify.issue import Issuer
        issuer: Issuer | None = None
        while (job_id := self._certify.get()) is not None:
            try:
                issuer = issuer or Issuer(self.settings, self.registry)
                issued = issuer.for_job(job_id)
                self.certified.append(issued.id)
                log.info("job %s: %s issued", job_id, issued.id)
            except Exception as exc:  # a certificate that fails must not stop the next
                log.error("job %s: no certificate: %s", job_id, exc)


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return utcnow()


def _job_of(ev: dict[str, Any]) -> int | None:
    job = (ev.get("data") or {}).get("job")
    return int(job) if isinstance(job, int | str) and str(job).isdigit() else None


def _belongs(s: Session, drive: Drive, machine: Machine, *, actor: str) -> None:
    """`drive` is found inside `machine` (its agent booted there): tie them, and
    the machine follows its drives' states from then on."""
    if drive.machine_id == machine.id:
        return
    drive.machine_id = machine.id
    items.note(s, drive, "in_machine", actor=actor, reason=f"found in machine {machine.id}",
               data={"machine": machine.id})
    items.follow_drives(s, machine, actor=actor,
                        reason=f"drive {drive.id} is {drive.state}: the machine follows "
                               "its drives")


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


def _ready_for_a_job(s: Session, drive: Drive) -> DriveIdentity:
    """A drive with no open job, plugged in and probed: its identity as probed."""
    open_job = s.scalar(select(Job).where(Job.drive_id == drive.id, Job.state.in_(
        ("queued", "running", "interrupted"))))
    if open_job is not None:
        raise UsageError(f"drive {drive.id} already has job {open_job.id} ({open_job.state})")
    probe = drive.plan or {}
    if not drive.present or probe.get("plan") is None:
        raise UsageError(f"le disque {drive.id} n'est pas branché / drive {drive.id} is "
                         "not plugged in: plug it into a dock first")
    return DriveIdentity(**probe["identity"])
