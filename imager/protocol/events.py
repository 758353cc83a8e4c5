"""The events an agent sends the station: one model per kind, versioned.

Every event is an envelope (`id`, `seq`, `at`, `v`, `kind`) around the data of
its kind. The agent builds its events with these models (`make_event`), so it
cannot spool one the station would refuse; the station reads them with the
same models (`parse_events`), so a malformed or unknown event is refused as a
whole, with the field named (`describe_errors`), before anything changes.

Version 2 (this one): a plugged-in drive is reported by its evidence, the raw
outputs of the tools (lsblk, hdparm, nvme-cli, smartctl, sg3_utils, mmc), and
no longer with a plan: the station parses the evidence and plans itself.
An event of another version (version 1 carried the agent's own plan; before
it, events had no `v`) is refused with the fix: update the agent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from imager.model import ErasePlan, JobState

PROTOCOL_VERSION = 2
MAX_INT = 2**63 - 1      # what the registry stores (BIGINT): larger numbers are refused
Count = Annotated[int, Field(ge=0, le=MAX_INT)]


class _Strict(BaseModel):
    """Unknown fields are refused: a field the station does not read is a mistake."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Identity(_Strict):
    """imager.model.DriveIdentity on the wire."""

    path: str = Field(min_length=1, max_length=4096)
    size: Count
    logical_sector: int = Field(default=512, gt=0, le=1 << 20)
    physical_sector: int = Field(default=512, gt=0, le=1 << 20)
    model: str | None = Field(default=None, max_length=200)
    vendor: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=200)
    wwn: str | None = Field(default=None, max_length=200)
    transport: str | None = Field(default=None, max_length=40)
    rotational: bool = False
    removable: bool = False
    backing_file: str | None = Field(default=None, max_length=4096)


class Owner(_Strict):
    """The process that runs a job (imager.host.owner.Owner)."""

    host: str = Field(max_length=200)
    boot_id: str = Field(max_length=200)
    pid: Count
    started: float


def _erase_plan(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """An erase plan must read as one (ErasePlan.from_dict)."""
    if value is not None:
        try:
            ErasePlan.from_dict(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an erase plan ({type(exc).__name__}: {exc})") from exc
    return value


# -- the data of each kind --------------------------------------------------------


Text = Annotated[str, Field(max_length=4096)]


class ToolOutput(_Strict):
    """One tool as the agent ran it (imager.inventory.evidence.ToolRun)."""

    argv: list[Text] = Field(min_length=1, max_length=16)
    returncode: int = Field(ge=-255, le=255)
    stdout: str = Field(max_length=4 << 20)
    stderr: str = Field(default="", max_length=20000)


class HostFacts(_Strict):
    """imager.inventory.probe.HostFacts: what the agent read from sysfs."""

    exists: StrictBool = True
    nvme_others: list[Text] | None = Field(default=None, max_length=256)
    mmc_type: str | None = Field(default=None, max_length=40)


class Evidence(_Strict):
    """imager.inventory.evidence.DriveEvidence: what the station plans a drive from."""

    path: str = Field(min_length=1, max_length=4096)
    lsblk: str = Field(min_length=1, max_length=1 << 16)
    backing_file: str | None = Field(default=None, max_length=4096)
    label: dict[str, str | bool | None] | None = Field(default=None, max_length=10)
    facts: HostFacts = Field(default_factory=HostFacts)
    tools: list[ToolOutput] = Field(default_factory=list, max_length=32)


class DriveAttachedData(_Strict):
    evidence: Evidence


class OfflineErasureData(_Strict):
    """A drive an agent erased with no network, from the station's signed policy
    (imager.erase.offline_policy): what it saw, the policy, and the report."""

    evidence: Evidence
    policy: str = Field(min_length=1, max_length=1 << 20)   # the signed policy file
    report: dict[str, Any]


class DriveDetachedData(_Strict):
    identity: str = Field(min_length=1, max_length=4096)   # DriveIdentity.key
    path: str | None = Field(default=None, max_length=4096)
    reason: str = Field(default="", max_length=2000)


class StickSeenData(_Strict):
    """An imager USB stick (IMAGER-DATA) plugged into a dock agent's machine: never a
    drive; its spool synced by the agent (imager.agent.stick_sync), and how that went,
    in plain French for the board and in English."""

    path: str = Field(min_length=1, max_length=4096)
    stick: str = Field(min_length=1, max_length=4096)        # DriveIdentity.key, or path
    outcome: Literal["sent", "partial", "nothing", "waiting", "unreachable", "failed",
                     "written", "read_only", "off"]
    text: str = Field(min_length=1, max_length=2000)
    text_en: str = Field(min_length=1, max_length=4000)
    pending: Count = 0
    sent: Count = 0
    left: Count = 0
    agent: str | None = Field(default=None, max_length=200)


class MachineFacts(BaseModel):
    """The part of an inventory the registry files a machine under; the rest of
    the inventory is kept as evidence, as reported."""

    model_config = ConfigDict(extra="allow", frozen=True)
    vendor: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=200)
    uuid: str | None = Field(default=None, max_length=200)


class Inventory(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    machine: MachineFacts = Field(default_factory=MachineFacts)


class MachineInventoryData(_Strict):
    """What the agent found; the station makes the machine's key and its triage."""

    inventory: Inventory


class HeartbeatData(_Strict):
    pass


class _JobData(_Strict):
    job: int = Field(ge=1, le=MAX_INT)
    owner: Owner | None = None      # the process running the job; None: not said


class JobMoveData(_JobData):
    target: JobState
    reason: str = Field(default="", max_length=20000)
    report: dict[str, Any] | None = None       # EraseReport.to_dict() on a final move
    data: dict[str, Any] | None = None


class TargetResult(_Strict):
    """imager.imaging.deploy.TargetResult on the wire: one drive's deployment."""

    path: str = Field(max_length=4096)
    ok: StrictBool
    written_bytes: Count
    ranges: Count
    verify: Literal["full", "sample", "none"]
    verified_bytes: Count
    mismatches: list[tuple[Count, Count]] = Field(max_length=100_000)
    error: str | None = Field(max_length=20000)
    write_seconds: float = Field(ge=0)
    verify_seconds: float = Field(ge=0)
    sample_seed: str | None = Field(default=None, max_length=200)


class Deployment(_Strict):
    """The data of a `deployment` job event: the result, and the after-steps run
    on the written system (None when it did not pass)."""

    result: TargetResult
    after: dict[str, Any] | None = None


class KitImage(_Strict):
    """The catalogue image an offline kit carried: the station finds it by these."""

    name: str = Field(min_length=1, max_length=100)
    version: str = Field(min_length=1, max_length=50)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")     # the compressed file's


class OfflineDeploymentData(Deployment):
    """A system an agent wrote with no network (imager.agent.offline_image) on the
    drive it had just erased offline: which drive, which image, how it went."""

    identity: str = Field(min_length=1, max_length=4096)   # DriveIdentity.key
    image: KitImage


class JobEventData(_JobData):
    kind: str = Field(min_length=1, max_length=40)
    message: str = Field(default="", max_length=20000)
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _deployment(self) -> JobEventData:
        """A `deployment` event carries a Deployment (the station records it)."""
        if self.kind == "deployment":
            try:
                Deployment.model_validate(self.data or {})
            except ValidationError as exc:
                raise ValueError("not a deployment: " + describe_errors(exc.errors(),
                                                                        within="data")) from exc
        return self


class JobPlanData(_JobData):
    plan: dict[str, Any]
    kind: str = Field(min_length=1, max_length=40)
    message: str = Field(default="", max_length=20000)

    _plan = field_validator("plan")(_erase_plan)


class JobCheckpointData(_JobData):
    checkpoint: dict[str, Any]


class JobDriveData(_JobData):
    identity: Identity


class ProgressData(_JobData):
    phase: str = Field(max_length=40)
    index: Count
    done: Count
    total: Count


# -- the envelopes --------------------------------------------------------------


class _Envelope(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    seq: int = Field(default=0, ge=0, le=MAX_INT)
    at: datetime
    v: Literal[2] = 2               # PROTOCOL_VERSION

    @model_validator(mode="before")
    @classmethod
    def _version(cls, data: Any) -> Any:
        """An event of another version is refused with the fix."""
        if isinstance(data, dict) and data.get("v", 1) != PROTOCOL_VERSION:
            raise ValueError(
                f"protocol version {data.get('v', 1)}: this station speaks version "
                f"{PROTOCOL_VERSION} (drives reported by their tools' outputs); update the "
                "agent to the station's imager version and let it report its drives again")
        return data


class DriveAttached(_Envelope):
    kind: Literal["drive_attached"]
    data: DriveAttachedData


class OfflineErasure(_Envelope):
    kind: Literal["offline_erasure"]
    data: OfflineErasureData


class OfflineDeployment(_Envelope):
    kind: Literal["offline_deployment"]
    data: OfflineDeploymentData


class DriveDetached(_Envelope):
    kind: Literal["drive_detached"]
    data: DriveDetachedData


class StickSeen(_Envelope):
    kind: Literal["stick_seen"]
    data: StickSeenData


class MachineInventory(_Envelope):
    kind: Literal["machine_inventory"]
    data: MachineInventoryData


class Heartbeat(_Envelope):
    kind: Literal["heartbeat"]
    data: HeartbeatData = Field(default_factory=HeartbeatData)


class JobMove(_Envelope):
    kind: Literal["job_move"]
    data: JobMoveData


class JobEvent(_Envelope):
    kind: Literal["job_event"]
    data: JobEventData


class JobPlan(_Envelope):
    kind: Literal["job_plan"]
    data: JobPlanData


class JobCheckpoint(_Envelope):
    kind: Literal["job_checkpoint"]
    data: JobCheckpointData


class JobDrive(_Envelope):
    kind: Literal["job_drive"]
    data: JobDriveData


class Progress(_Envelope):
    kind: Literal["progress"]
    data: ProgressData


JobEnvelope = JobMove | JobEvent | JobPlan | JobCheckpoint | JobDrive | Progress
Event = Annotated[DriveAttached | DriveDetached | MachineInventory | Heartbeat |
                  OfflineErasure | OfflineDeployment | StickSeen | JobEnvelope,
                  Field(discriminator="kind")]
# The kinds, read from the models (the one place they are written).
KINDS: tuple[str, ...] = tuple(get_args(model.model_fields["kind"].annotation)[0]
                               for model in get_args(get_args(Event)[0]))
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)
_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


class BadEvent(ValueError):
    """An event that does not fit the protocol; the message names the field."""


def make_event(kind: str, data: dict[str, Any], *, id: str, seq: int,
               at: datetime) -> dict[str, Any]:
    """An event as JSON, checked against its kind's model (BadEvent otherwise)."""
    try:
        event = _EVENT.validate_python({"id": id, "seq": seq, "at": at, "kind": kind,
                                        "v": PROTOCOL_VERSION, "data": data})
    except ValidationError as exc:
        raise BadEvent(describe_errors(exc.errors())) from exc
    return event.model_dump(mode="json")


def parse_events(raw: list[Any]) -> list[Event]:
    """Events as received (JSON values); BadEvent names the first bad fields."""
    try:
        return _EVENTS.validate_python(raw)
    except ValidationError as exc:
        raise BadEvent(describe_errors(exc.errors())) from exc


def describe_errors(errors: Any, *, within: str = "") -> str:
    """Validation errors as one sentence per field: where, what, and the fix."""
    return "; ".join(_describe(e, within) for e in errors[:10]) + (
        f"; and {len(errors) - 10} more" if len(errors) > 10 else "")


def _describe(error: dict[str, Any], within: str = "") -> str:
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    where = ".".join([within, *loc] if within else loc)
    if error.get("type") == "union_tag_invalid":
        return (f"{where}: unknown event kind {error.get('input', {}).get('kind')!r}: "
                f"use one of {', '.join(KINDS)}")
    if error.get("type") == "union_tag_not_found":
        return f"{where}: the event has no 'kind': give one of {', '.join(KINDS)}"
    return f"{where or 'event'}: {error.get('msg', 'invalid')}"
