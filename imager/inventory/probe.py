"""Probe one drive: run the tools its transport answers to, parse, combine.

A tool that fails or is missing becomes a line in `problems` (shown to the
technician and kept on the record); it never stops the probe: the plan then
simply has fewer firmware methods to offer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from imager.errors import ImagerError
from imager.host.nvme import nvme_topology
from imager.host.run import RunResult, run
from imager.inventory import hdparm, lsblk, mmc, nvme, scsi, smartctl
from imager.inventory.capabilities import DriveCapabilities, Medium
from imager.inventory.hdparm import AtaIdentify, HostProtectedArea
from imager.inventory.mmc import MmcExtCsd
from imager.inventory.nvme import NvmeController, NvmeNamespace
from imager.inventory.scsi import ScsiInquiry
from imager.inventory.smartctl import SmartReport
from imager.model import DriveIdentity
from imager.settings import Settings

Runner = Callable[[list[str]], RunResult]
# Transports behind which an ATA drive may sit (USB-SATA bridge, SAS HBA, unknown).
BRIDGED = ("usb", "sas", "scsi", None)


@dataclass(frozen=True)
class HostFacts:
    """What the probe reads from the host besides the tools' outputs: whether the
    device node exists, the other namespaces of an NVMe namespace's subsystem (None:
    sysfs does not show it as one) and an MMC device's sysfs type ("MMC": eMMC, "SD")."""

    exists: bool = True
    nvme_others: tuple[str, ...] | None = None
    mmc_type: str | None = None

    @classmethod
    def of(cls, path: str, settings: Settings) -> HostFacts:
        topology = nvme_topology(path, settings)
        kind = settings.sys_root / "block" / Path(path).name / "device" / "type"
        try:
            mmc_type: str | None = kind.read_text().strip()
        except OSError:
            mmc_type = None
        return cls(exists=Path(path).exists(),
                   nvme_others=topology.others() if topology is not None else None,
                   mmc_type=mmc_type)

    def to_dict(self) -> dict[str, Any]:
        return {"exists": self.exists, "mmc_type": self.mmc_type,
                "nvme_others": list(self.nvme_others) if self.nvme_others is not None
                else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostFacts:
        others = data.get("nvme_others")
        return cls(exists=bool(data.get("exists", True)), mmc_type=data.get("mmc_type"),
                   nvme_others=tuple(others) if others is not None else None)


class _Parts(TypedDict, total=False):
    """What the tools told, as DriveCapabilities' fields of the same names."""

    ata: AtaIdentify
    hpa: HostProtectedArea
    dco_real_max: int | None
    nvme: NvmeController
    nvme_namespace: NvmeNamespace
    nvme_other_namespaces: tuple[str, ...]
    smart: SmartReport | None
    scsi_sanitize: frozenset[str]
    scsi_inquiry: ScsiInquiry | None
    mmc: MmcExtCsd


def _tool(argv: list[str], problems: list[str], runner: Runner) -> str | None:
    try:
        result = runner(argv)
    except ImagerError as exc:
        problems.append(f"{' '.join(argv)}: {exc}")
        return None
    if not result.ok and not result.stdout.strip():
        err = result.stderr.strip().splitlines()
        problems.append(f"{' '.join(argv)}: exit {result.returncode}"
                        + (f" ({err[-1]})" if err else ""))
        return None
    return result.stdout


def medium_of(ident: DriveIdentity, rotational: bool | None) -> Medium:
    """hdd / ssd / usb-flash / sd-mmc / unknown, from transport and rotation."""
    spins = ident.rotational if rotational is None else rotational
    if ident.transport in ("mmc",):
        return "sd-mmc"
    if ident.transport == "usb":
        return "hdd" if rotational else "usb-flash"
    if ident.transport in ("nvme",):
        return "ssd"
    if ident.transport in ("sata", "ata", "sas", "scsi", None):
        return "hdd" if spins else "ssd"
    return "unknown"


def _ata(path: str, problems: list[str], runner: Runner, *, bridged: bool = False) -> _Parts:
    """hdparm's answers. Behind an adapter (`bridged`: USB, SAS, SCSI) only a drive that
    answered IDENTIFY through it (a SAT bridge, a SAS HBA's SATL) is asked its hidden
    areas: what it answers then is a real check."""
    out: _Parts = {}
    text = _tool(["hdparm", "-I", path], problems, runner)
    if text and "Model Number" in text:
        out["ata"] = hdparm.parse_identify(text)
    elif bridged:
        return out
    hpa_text = _tool(["hdparm", "-N", path], problems, runner)
    if hpa_text and "max sectors" in hpa_text:
        out["hpa"] = hdparm.parse_hpa(hpa_text)
        dco = _tool(["hdparm", "--dco-identify", path], problems, runner)
        if dco:
            out["dco_real_max"] = hdparm.parse_dco_real_max(dco,
                                                            native_max=out["hpa"].native_max)
    return out


def _nvme(path: str, facts: HostFacts, problems: list[str], runner: Runner) -> _Parts:
    out: _Parts = {}
    if facts.nvme_others is not None:
        out["nvme_other_namespaces"] = facts.nvme_others
    else:  # no sysfs view: nvme-cli's list, by the controller's serial number
        listed = _tool(["nvme", "list", "-o", "json"], problems, runner)
        out["nvme_other_namespaces"] = nvme.siblings(nvme.parse_list(listed), path) \
            if listed else ()
    ctrl = _tool(["nvme", "id-ctrl", path, "-o", "json"], problems, runner)
    if ctrl:
        out["nvme"] = nvme.parse_id_ctrl(ctrl)
    ns = _tool(["nvme", "id-ns", path, "-o", "json"], problems, runner)
    if ns:
        out["nvme_namespace"] = nvme.parse_id_ns(ns)
    return out


def _mmc(path: str, facts: HostFacts, problems: list[str], runner: Runner) -> _Parts:
    """EXT_CSD of an eMMC; an SD card (sysfs type "SD") has none and is not asked."""
    if facts.mmc_type != "MMC":
        return {}
    text = _tool(["mmc", "extcsd", "read", path], problems, runner)
    try:
        return {"mmc": mmc.parse_extcsd(text)} if text else {}
    except ImagerError as exc:
        problems.append(f"mmc extcsd read {path}: {exc}")
        return {}


def _smart(path: str, transport: str | None, problems: list[str],
           runner: Runner) -> SmartReport | None:
    text = _tool(["smartctl", "-j", "-x", path], problems, runner)
    report = smartctl.parse(text) if text else None
    if report and not report.answered and transport == "usb":  # unknown USB bridge
        text = _tool(["smartctl", "-j", "-x", "-d", "scsi", path], problems, runner)
        report = smartctl.parse(text) if text else report
    return report


def probe(path: str, settings: Settings, *, runner: Runner | None = None) -> DriveCapabilities:
    """Everything the erase plan needs to know about the drive at `path`."""
    runner = runner or (lambda argv: run(argv, check=False, timeout=120))
    return capabilities(lsblk.probe(path, settings), settings, runner=runner)


def capabilities(ident: DriveIdentity, settings: Settings, *, runner: Runner,
                 facts: HostFacts | None = None) -> DriveCapabilities:
    """What the tools its transport answers to say of the drive `ident`; `facts`: the
    host's (default: read now from this host)."""
    path = ident.path
    facts = facts or HostFacts.of(path, settings)
    problems: list[str] = []
    parts: _Parts = {}
    if ident.transport in ("sata", "ata"):
        parts |= _ata(path, problems, runner)
    elif ident.transport in BRIDGED and facts.exists:
        parts |= _ata(path, problems, runner, bridged=True)
    elif ident.transport == "nvme":
        parts |= _nvme(path, facts, problems, runner)
    elif ident.transport == "mmc":
        parts |= _mmc(path, facts, problems, runner)
    if ident.transport in ("scsi", "sas", "usb", "virtio", None) and facts.exists:
        ops = _tool(["sg_opcodes", path], problems, runner)
        parts["scsi_sanitize"] = scsi.sanitize_modes(ops or "")
        inq = _tool(["sg_inq", path], problems, runner)
        parts["scsi_inquiry"] = scsi.parse_inquiry(inq) if inq and "Vendor identification" \
            in inq else None
    if ident.transport not in ("loop", "file"):
        parts["smart"] = _smart(path, ident.transport, problems, runner)
    ata = parts.get("ata")
    return DriveCapabilities(identity=ident, transport=ident.transport or "unknown",
                             medium=medium_of(ident, ata.rotational if ata else None),
                             problems=tuple(problems), **parts)
