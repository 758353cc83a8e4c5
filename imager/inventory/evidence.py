"""A drive's evidence: the tools' raw outputs an agent saw, read by the station.

The agent runs the tools (lsblk, hdparm, nvme-cli, smartctl, sg3_utils, mmc)
and sends what they printed, untouched, with the few facts it read from sysfs.
The station parses that itself, with the same probe (`read`): the tools the
probe asks for are answered from the evidence (`Replay`), a tool the agent did
not report counts as one that did not answer, so a missing output can only
take firmware methods away, never add one. The plan is then the station's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imager.errors import ImagerError
from imager.host.run import RunResult, run
from imager.inventory import lsblk
from imager.inventory.capabilities import DriveCapabilities
from imager.inventory.probe import HostFacts, Runner, capabilities
from imager.settings import Settings


@dataclass(frozen=True)
class ToolRun:
    """One tool as run on the agent: its command and what it printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "returncode": self.returncode,
                "stdout": self.stdout, "stderr": self.stderr}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolRun:
        return cls(tuple(data["argv"]), int(data["returncode"]), data["stdout"],
                   data.get("stderr", ""))


@dataclass(frozen=True)
class DriveEvidence:
    """Everything the station plans a drive from."""

    path: str
    lsblk: str                          # `lsblk -J -b -d -o COLUMNS path`, as printed
    backing_file: str | None = None     # a loop device's backing file
    label: dict[str, Any] | None = None  # the lab's label of that file
    facts: HostFacts = HostFacts()
    tools: tuple[ToolRun, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "lsblk": self.lsblk, "backing_file": self.backing_file,
                "label": self.label, "facts": self.facts.to_dict(),
                "tools": [t.to_dict() for t in self.tools]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriveEvidence:
        return cls(path=data["path"], lsblk=data["lsblk"], backing_file=data.get("backing_file"),
                   label=data.get("label"), facts=HostFacts.from_dict(data.get("facts") or {}),
                   tools=tuple(ToolRun.from_dict(t) for t in data.get("tools", ())))


class _Recorder:
    """A runner that keeps what every tool printed."""

    def __init__(self, runner: Runner) -> None:
        self.runner, self.runs = runner, list[ToolRun]()

    def __call__(self, argv: list[str]) -> RunResult:
        result = self.runner(argv)
        self.runs.append(ToolRun(tuple(argv), result.returncode, result.stdout, result.stderr))
        return result


class NotReported(ImagerError):
    """The probe asked for a tool the evidence does not hold."""


class Replay:
    """A runner answering from evidence: the output the agent reported for the
    same command, or NotReported (the probe notes it as a problem)."""

    def __init__(self, tools: tuple[ToolRun, ...]) -> None:
        self.outputs = {t.argv: t for t in tools}

    def __call__(self, argv: list[str]) -> RunResult:
        found = self.outputs.get(tuple(argv))
        if found is None:
            raise NotReported("not reported by the agent (counted as not answering)")
        return RunResult(found.argv, found.returncode, found.stdout, found.stderr, 0.0)


def collect(path: str, settings: Settings, *, runner: Runner | None = None) -> DriveEvidence:
    """Run the tools on the drive at `path` (on the agent) and keep what they printed."""
    out, backing, label = lsblk.read(path, settings)
    facts = HostFacts.of(path, settings)
    recorder = _Recorder(runner or (lambda argv: run(argv, check=False, timeout=120)))
    capabilities(lsblk.from_output(out, backing, label, path=path), settings,
                 runner=recorder, facts=facts)
    return DriveEvidence(path=path, lsblk=out, backing_file=backing, label=label,
                         facts=facts, tools=tuple(recorder.runs))


def read(evidence: DriveEvidence, settings: Settings) -> DriveCapabilities:
    """What the evidence says of the drive, parsed here (on the station)."""
    ident = lsblk.from_output(evidence.lsblk, evidence.backing_file, evidence.label,
                              path=evidence.path)
    if ident.path != evidence.path:
        raise ImagerError(f"the evidence is for {evidence.path} but lsblk's output describes "
                          f"{ident.path}: send the output of lsblk for the drive itself")
    return capabilities(ident, settings, runner=Replay(evidence.tools), facts=evidence.facts)
