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


@dataclass(frozen=True)
class ErasePlan:
    """What will be done to one drive: ordered passes then a verification."""

    method: str
    passes: tuple[PassSpec, ...]
    verify: VerifyMode
    verify_seed: str | None = None
    standard: str = ""
    engine: str = "overwrite"                  # key of erase.engines.ENGINES
    options: dict[str, Any] = field(default_factory=dict)  # engine settings, e.g. ses
    sanitization_class: str = "clear"          # NIST SP 800-88: clear | purge
    technique: str = "overwrite"               # overwrite, block-erase, crypto-erase...

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErasePlan:
        passes = tuple(PassSpec(**p) for p in data["passes"])
        return cls(**{**data, "passes": passes})


@dataclass(frozen=True)
class Extent:
    """A byte range of the device, e.g. one that returned I/O errors."""

    offset: int
    length: int
    error: str = ""


@dataclass(frozen=True)
class PassResult:
    index: int
    pattern: str
    bytes_written: int
    seconds: float
    failed_extents: tuple[Extent, ...] = ()


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
class CanaryCheck:
    """Markers written before a firmware erase, and those found after it."""

    offsets: tuple[int, ...]
    survivors: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return not self.survivors


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
    canary: CanaryCheck | None = None

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
            passes=tuple(_pass_from(p) for p in data["passes"]),
            verification=_verify_from(ver) if ver else None,
            outcome=data["outcome"],
            reason=data.get("reason", ""),
            technician=data.get("technician"),
            donation=data.get("donation"),
            software=data.get("software", ""),
            errors=tuple(Extent(**e) for e in data.get("errors", ())),
            canary=CanaryCheck(tuple(data["canary"]["offsets"]),
                               tuple(data["canary"]["survivors"]))
            if data.get("canary") else None,
        )


def _pass_from(p: dict[str, Any]) -> PassResult:
    ext = tuple(Extent(**e) for e in p.get("failed_extents", ()))
    return PassResult(**{**p, "failed_extents": ext})


def _verify_from(v: dict[str, Any]) -> VerifyResult:
    ext = tuple(Extent(**e) for e in v.get("failed_extents", ()))
    return VerifyResult(**{**v, "failed_extents": ext})
