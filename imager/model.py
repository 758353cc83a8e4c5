"""Frozen values shared by every part of the station.

They are plain data: the erase plan is a value you can print, store and put on
a certificate; the erase report is what the certificate work signs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

PassKind = Literal["zero", "ones", "pattern", "random"]
VerifyMode = Literal["full", "sample", "none"]
Outcome = Literal["erased", "unverified", "failed", "interrupted"]
# Every state a job can be in (the moves between them: imager.registry.lifecycle).
JobState = Literal["queued", "running", "interrupted", "erased", "imaged", "unverified",
                   "failed", "cancelled"]


# Transports of media a laptop holds only for a while: USB sticks and drives, SD cards.
REMOVABLE_TRANSPORTS = ("usb", "mmc")


@dataclass(frozen=True)
class DriveIdentity:
    """Who a drive is, independent of the device name it has today."""

    path: str
    size: int
    logical_sector: int = 512
    physical_sector: int = 512
    model: str | None = None
    vendor: str | None = None
    serial: str | None = None
    wwn: str | None = None
    transport: str | None = None
    rotational: bool = False
    removable: bool = False
    backing_file: str | None = None

    @property
    def removable_medium(self) -> bool:
        """A USB stick or drive, an SD card, a medium the kernel calls removable: in a
        laptop, something left there, erased only when a person decides."""
        return self.removable or self.transport in REMOVABLE_TRANSPORTS

    @property
    def provable(self) -> bool:
        """True when the key names this drive, not just the place it sits in."""
        return not self.key.startswith("path:")

    @property
    def key(self) -> str:
        """Stable identity: WWN, else model+serial, else backing file, else path."""
        if self.wwn:
            return f"wwn:{self.wwn}"
        if self.serial:
            return f"serial:{self.model or ''}:{self.serial}"
        if self.backing_file:
            kind = "file" if self.transport == "file" else "loop"
            return f"{kind}:{self.backing_file}"
        return f"path:{self.path}"


@dataclass(frozen=True)
class PassSpec:
    """One overwrite pass. `seed` (hex) is set for random passes."""

    kind: PassKind
    pattern: str | None = None
    seed: str | None = None

    def describe(self) -> str:
        if self.kind == "pattern":
            return f"pattern:{self.pattern}"
        return self.kind


SanitizationClass = Literal["clear", "purge"]


@dataclass(frozen=True)
class MethodStep:
    """One erase method as the plan will run it on one drive."""

    method: str                                # catalogue name: nist-clear, nvme-sanitize-block...
    passes: tuple[PassSpec, ...] = ()          # host overwrite passes (overwrite engine only)
    standard: str = ""                         # the standard / table the method follows
    engine: str = "overwrite"                  # key of erase.engines.ENGINES
    options: dict[str, Any] = field(default_factory=dict)  # engine settings, e.g. ses
    sanitization_class: SanitizationClass = "clear"        # NIST SP 800-88 Rev. 2 category
    technique: str = "overwrite"               # overwrite, block-erase, crypto-erase...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodStep:
        return cls(**{**data, "passes": tuple(PassSpec(**p) for p in data.get("passes", ()))})


@dataclass(frozen=True)
class SkippedMethod:
    """A method of the policy not used on this drive, and why."""

    method: str
    reason: str


@dataclass(frozen=True)
class Note:
    """Advice for the technician and the certificate, in French and English."""

    fr: str
    en: str


@dataclass(frozen=True)
class HiddenAreas:
    """Sectors a drive may hide from the host (ATA HPA and DCO), in sectors."""

    visible_max: int | None = None     # hdparm -N: current max
    native_max: int | None = None      # hdparm -N: native max (HPA removed)
    dco_real_max: int | None = None    # hdparm --dco-identify: real max (DCO removed)

    @property
    def hpa_hidden(self) -> int:
        if self.visible_max is None or self.native_max is None:
            return 0
        return max(0, self.native_max - self.visible_max)

    @property
    def dco_hidden(self) -> int:
        if self.dco_real_max is None or self.native_max is None:
            return 0
        return max(0, self.dco_real_max - self.native_max)

    @property
    def any_hidden(self) -> bool:
        return self.hpa_hidden > 0 or self.dco_hidden > 0


@dataclass(frozen=True)
class HiddenAreaChange:
    """HPA/DCO state before and after the station removed them."""

    before: HiddenAreas
    after: HiddenAreas
    actions: tuple[str, ...] = ()      # the commands that were run

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HiddenAreaChange:
        return cls(HiddenAreas(**data["before"]), HiddenAreas(**data["after"]),
                   tuple(data.get("actions", ())))


@dataclass(frozen=True)
class ImagePlan:
    """What an image job writes onto one drive: an image of the station's store
    (its manifest's sha256, its files' URLs on the station), read back as
    `verify` says, then customised."""

    name: str
    version: str
    sha256: str
    image_size: int
    mapped_bytes: int
    urls: dict[str, str]            # "image", "bmap": paths on the station
    verify: str = "full"
    sample: float = 0.05
    grow: str = "now"
    hostname: str | None = None
    erasure_job: int | None = None  # the erase job that cleaned the drive first
    batch: str | None = None        # jobs of one agent written from one stream

    @property
    def method(self) -> str:
        return f"image {self.name} {self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "image", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePlan:
        return cls(**{k: v for k, v in data.items() if k != "kind"})


@dataclass(frozen=True)
class ErasePlan:
    """What will be done to one drive: the first method its firmware accepts
    among `steps` (in order), then a read-back verification.

    The properties name the method that runs now (steps[0]); `fallback()` is
    the plan once the drive refused it."""

    steps: tuple[MethodStep, ...]
    verify: VerifyMode
    verify_seed: str | None = None
    medium: str | None = None                  # policy medium key: nvme, sata-ssd, hdd...
    policy: str | None = None                  # policy name, version and digest
    skipped: tuple[SkippedMethod, ...] = ()    # policy methods this drive cannot do
    refused: tuple[SkippedMethod, ...] = ()    # methods the drive refused when run
    advice: tuple[Note, ...] = ()              # e.g. "destroy the stick for Purge"
    hidden: HiddenAreas | None = None          # HPA/DCO seen at planning: removed first
    ata_drive: bool | None = None              # may hide sectors (HPA/DCO); None: not known

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("an erase plan needs at least one method")

    @property
    def step(self) -> MethodStep:
        return self.steps[0]

    @property
    def method(self) -> str:
        return self.step.method

    @property
    def passes(self) -> tuple[PassSpec, ...]:
        return self.step.passes

    @property
    def standard(self) -> str:
        return self.step.standard

    @property
    def engine(self) -> str:
        return self.step.engine

    @property
    def options(self) -> dict[str, Any]:
        return self.step.options

    @property
    def sanitization_class(self) -> SanitizationClass:
        return self.step.sanitization_class

    @property
    def technique(self) -> str:
        return self.step.technique

    def fallback(self) -> ErasePlan | None:
        """The plan without its first method, or None when none is left."""
        if len(self.steps) == 1:
            return None
        return dataclasses.replace(self, steps=self.steps[1:])

    def refuse(self, reason: str) -> ErasePlan:
        """The drive refused the current method: record it (steps unchanged)."""
        return dataclasses.replace(self, refused=(*self.refused,
                                                  SkippedMethod(self.method, reason)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErasePlan:
        hidden = data.get("hidden")
        if "steps" not in data:  # stored before plans had steps: one method, flat
            names = {f.name for f in dataclasses.fields(MethodStep)}
            data = {**data, "steps": [{k: v for k, v in data.items() if k in names}]}
        return cls(
            steps=tuple(MethodStep.from_dict(st) for st in data["steps"]),
            verify=data["verify"], verify_seed=data.get("verify_seed"),
            medium=data.get("medium"), policy=data.get("policy"),
            skipped=tuple(SkippedMethod(**k) for k in data.get("skipped", ())),
            refused=tuple(SkippedMethod(**k) for k in data.get("refused", ())),
            advice=tuple(Note(**n) for n in data.get("advice", ())),
            hidden=HiddenAreas(**hidden) if hidden else None, ata_drive=data.get("ata_drive"))


@dataclass(frozen=True)
class Extent:
    """A byte range of the device, e.g. one that returned I/O errors."""

    offset: int
    length: int
    error: str = ""


@dataclass(frozen=True)
class CanaryCheck:
    """Markers written before a firmware erase, and those found after it.

    Where they were is recomputed from the plan's seed, the size and the
    block (imager.erase.canary.offsets), so only their number is kept."""

    planted: int
    survivors: tuple[int, ...]
    block: int = 512

    @property
    def ok(self) -> bool:
        return not self.survivors

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanaryCheck:
        planted = data["planted"] if "planted" in data else len(data["offsets"])
        return cls(planted, tuple(data["survivors"]), data.get("block", 512))


@dataclass(frozen=True)
class PassResult:
    """One step of an erasure: a host overwrite pass or a firmware command
    (`canary` then holds what the markers planted around it showed)."""

    index: int
    pattern: str
    bytes_written: int
    seconds: float
    failed_extents: tuple[Extent, ...] = ()
    canary: CanaryCheck | None = None

    @classmethod
    def from_dict(cls, p: dict[str, Any]) -> PassResult:
        ext = tuple(Extent(**e) for e in p.get("failed_extents", ()))
        can = p.get("canary")
        return cls(**{**p, "failed_extents": ext,
                      "canary": CanaryCheck.from_dict(can) if can else None})


@dataclass(frozen=True)
class VerifyResult:
    mode: VerifyMode
    pattern: str
    bytes_read: int
    coverage: float
    seconds: float
    ok: bool
    seed: str | None = None
    subsections: int = 0
    first_bad_offset: int | None = None
    mismatched_sectors: int = 0
    failed_extents: tuple[Extent, ...] = ()


@dataclass(frozen=True)
class EraseReport:
    """The result of one erase job; the certificate work signs this."""

    job_id: int | None
    device: DriveIdentity
    plan: ErasePlan
    started_at: datetime
    ended_at: datetime
    passes: tuple[PassResult, ...]
    verification: VerifyResult | None
    outcome: Outcome
    reason: str = ""
    technician: str | None = None
    donation: str | None = None
    software: str = ""
    errors: tuple[Extent, ...] = field(default=())
    tool: str = ""                  # the tool that ran the method and its version
    canary: CanaryCheck | None = None
    hidden_areas: HiddenAreaChange | None = None

    @property
    def achieved_class(self) -> SanitizationClass | None:
        """The NIST SP 800-88 Rev. 2 category reached: only a verified erasure reaches one."""
        return self.plan.sanitization_class if self.outcome == "erased" else None

    @property
    def bytes_written(self) -> int:
        return sum(p.bytes_written for p in self.passes)

    @property
    def throughput(self) -> float:
        """Bytes written per second of writing, over all passes."""
        secs = sum(p.seconds for p in self.passes)
        return self.bytes_written / secs if secs > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat()
        data["duration_seconds"] = (self.ended_at - self.started_at).total_seconds()
        data["bytes_written"] = self.bytes_written
        data["throughput_bytes_per_second"] = round(self.throughput)
        data["achieved_class"] = self.achieved_class
        return data

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EraseReport:
        ver = data.get("verification")
        return cls(
            job_id=data.get("job_id"),
            device=DriveIdentity(**data["device"]),
            plan=ErasePlan.from_dict(data["plan"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            ended_at=datetime.fromisoformat(data["ended_at"]),
            passes=tuple(PassResult.from_dict(p) for p in data["passes"]),
            verification=_verify_from(ver) if ver else None,
            outcome=data["outcome"],
            reason=data.get("reason", ""),
            technician=data.get("technician"),
            donation=data.get("donation"),
            software=data.get("software", ""),
            tool=data.get("tool", ""),
            errors=tuple(Extent(**e) for e in data.get("errors", ())),
            canary=CanaryCheck.from_dict(data["canary"]) if data.get("canary") else None,
            hidden_areas=HiddenAreaChange.from_dict(data["hidden_areas"])
            if data.get("hidden_areas") else None,
        )


def _verify_from(v: dict[str, Any]) -> VerifyResult:
    ext = tuple(Extent(**e) for e in v.get("failed_extents", ()))
    return VerifyResult(**{**v, "failed_extents": ext})
