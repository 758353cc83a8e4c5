"""Every erase method the station knows, as data: engine, options, class,
technique, the media it runs on, and what the drive must report to use it.

The policy (imager.erase.policy) lists these names per medium; the planner
(imager.erase.plan) keeps, in the policy's order, those the drive's
capabilities allow, and records why each other one was skipped. A firmware
method is claimed only from the drive's capability bits, never from a command
merely being accepted (QEMU accepts NVMe Format SES=2 with FNA bit 2 clear).

Classes follow IEEE 2883-2022, the media tables NIST SP 800-88 Rev. 2
defers to (Rev. 2 has none of its own; those of Rev. 1 Appendix A, withdrawn
in 2025, agree): host overwrite is Clear on every medium; firmware sanitize
(block, crypto, overwrite) is Purge; ATA Security Erase is Purge on a hard
disk but only Clear on flash (it need not reach spare blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imager.erase.ata import temporary_password
from imager.erase.methods import METHODS, overwrite_step, resolve
from imager.erase.nvme import read_after_erase
from imager.errors import UsageError
from imager.inventory.capabilities import DriveCapabilities
from imager.model import MethodStep, SanitizationClass

# Policy medium keys (imager.erase.plan.medium_key gives a drive's).
MEDIA = ("nvme", "sata-ssd", "sata-hdd", "sas-ssd", "sas-hdd", "usb-flash", "usb-disk",
         "emmc", "sd-card", "virtual", "unknown")
FLASH_MEDIA = frozenset({"nvme", "sata-ssd", "sas-ssd", "usb-flash", "emmc", "sd-card"})
ALL_MEDIA = frozenset(MEDIA)



@dataclass(frozen=True)
class Station:
    """What this station allows itself when running a method (from the policy)."""

    unfreeze: str = "never"   # "suspend": may suspend/resume to unfreeze ATA security


Requirement = Callable[[DriveCapabilities, Station], "str | None"]  # None: usable, else why not
Options = Callable[[DriveCapabilities, Station], dict[str, Any]]


@dataclass(frozen=True)
class MethodDef:
    name: str
    engine: str
    technique: str
    media: frozenset[str]
    requires: Requirement
    options: Options
    standard: str
    purge: bool = True                    # firmware sanitize: Purge on every medium it runs on
    purge_on_flash: bool = True           # False: only Clear on flash (ATA Security Erase)

    def class_on(self, medium: str) -> SanitizationClass:
        if not self.purge or (medium in FLASH_MEDIA and not self.purge_on_flash):
            return "clear"
        return "purge"

    def step(self, caps: DriveCapabilities, medium: str, station: Station) -> MethodStep:
        return MethodStep(method=self.name, engine=self.engine,
                          options=self.options(caps, station),
                          sanitization_class=self.class_on(medium), technique=self.technique,
                          standard=self.standard)


# -- requirements -------------------------------------------------------------

def _nvme(bit: str, what: str) -> Requirement:
    def check(caps: DriveCapabilities, station: Station) -> str | None:
        if caps.nvme is None:
            return "nvme id-ctrl did not answer"
        return None if getattr(caps.nvme, bit) else what
    return check


def _nvme_format_crypto(caps: DriveCapabilities, station: Station) -> str | None:
    if caps.nvme is None:
        return "nvme id-ctrl did not answer"
    if not caps.nvme.format_supported:
        return "OACS bit 1 clear: Format NVM not supported"
    if not caps.nvme.format_crypto_erase:
        return "FNA bit 2 clear: the controller does not advertise cryptographic erase"
    return None


def _nvme_format(caps: DriveCapabilities, station: Station) -> str | None:
    if caps.nvme is None:
        return "nvme id-ctrl did not answer"
    return None if caps.nvme.format_supported else "OACS bit 1 clear: Format NVM not supported"


def _nvme_reads_as(caps: DriveCapabilities, station: Station) -> dict[str, Any]:
    ns = caps.nvme_namespace
    reads = read_after_erase(getattr(ns, "dlfeat", 0)) if ns else None
    return {"reads_as": reads.hex()} if reads is not None else {}


def _ata_sanitize(mode: str) -> Requirement:
    def check(caps: DriveCapabilities, station: Station) -> str | None:
        if caps.ata is None:
            return "hdparm -I did not answer"
        if not caps.ata.sanitize:
            return "the drive has no ATA SANITIZE feature set"
        return None if mode in caps.ata.sanitize else f"SANITIZE {mode} not supported"
    return check


def _ata_security(enhanced: bool) -> Requirement:
    def check(caps: DriveCapabilities, station: Station) -> str | None:
        sec = caps.ata.security if caps.ata else None
        if sec is None or not sec.supported:
            return "the drive has no ATA Security feature set"
        if enhanced and not sec.enhanced_erase:
            return "enhanced security erase not supported"
        if sec.locked:
            return "security locked: unlock it with its password, or use another method"
        if sec.count_expired:
            return "security password attempts expired: power-cycle the drive"
        if sec.frozen and station.unfreeze != "suspend":
            return "security frozen — replug the drive or use another method"
        return None
    return check


def _scsi(action: str) -> Requirement:
    def check(caps: DriveCapabilities, station: Station) -> str | None:
        return None if action in caps.scsi_sanitize else \
            f"SANITIZE ({action}) not reported by REPORT SUPPORTED OPERATION CODES"
    return check


def _mmc(attr: str, what: str) -> Requirement:
    def check(caps: DriveCapabilities, station: Station) -> str | None:
        if caps.mmc is None:
            return "no eMMC EXT_CSD (mmc extcsd read did not answer)"
        return None if getattr(caps.mmc, attr) else what
    return check


def _mmc_reads_as(caps: DriveCapabilities, station: Station) -> dict[str, Any]:
    byte = getattr(caps.mmc, "erased_byte", None)
    return {"reads_as": f"{byte:02x}"} if byte is not None else {}


def _fixed(**options: Any) -> Options:
    return lambda caps, station: dict(options)


def _with(base: Options, **options: Any) -> Options:
    return lambda caps, station: {**base(caps, station), **options}


def _security_options(enhanced: bool) -> Options:
    def options(caps: DriveCapabilities, station: Station) -> dict[str, Any]:
        # The temporary password is drawn now so that it is in the plan, hence in
        # the registry: a run killed mid-erase leaves no drive locked by a
        # password nobody knows.
        out: dict[str, Any] = {"enhanced": enhanced, "unfreeze": station.unfreeze,
                               "password": temporary_password()}
        if not enhanced:
            out["reads_as"] = "00"  # ATA: SECURITY ERASE UNIT (normal) writes zeros
        return out
    return options


def _standard(interface: str) -> Callable[[str], str]:
    """The standard line of a firmware method of `interface` (IEEE 2883: NIST SP
    800-88 Rev. 2 has no media tables; those of Rev. 1 Appendix A are withdrawn)."""
    return lambda command: f"IEEE 2883-2022 ({interface}): {command}"


STD_NVME = _standard("NVMe")
STD_ATA = _standard("ATA")
STD_SCSI = _standard("SCSI")
STD_MMC = _standard("eMMC")
NVME_ONLY = frozenset({"nvme"})
ATA_MEDIA = frozenset({"sata-ssd", "sata-hdd"})
SCSI_MEDIA = frozenset({"sas-ssd", "sas-hdd", "usb-flash", "usb-disk"})
MMC_MEDIA = frozenset({"emmc"})

FIRMWARE: dict[str, MethodDef] = {m.name: m for m in (
    MethodDef("nvme-sanitize-crypto", "nvme-sanitize", "crypto-erase", NVME_ONLY,
              _nvme("sanitize_crypto", "SANICAP bit 0 clear: no sanitize crypto erase"),
              _with(_nvme_reads_as, action="crypto"), STD_NVME("Sanitize, Crypto Erase")),
    MethodDef("nvme-sanitize-block", "nvme-sanitize", "block-erase", NVME_ONLY,
              _nvme("sanitize_block", "SANICAP bit 1 clear: no sanitize block erase"),
              _with(_nvme_reads_as, action="block"), STD_NVME("Sanitize, Block Erase")),
    MethodDef("nvme-sanitize-overwrite", "nvme-sanitize", "overwrite", NVME_ONLY,
              _nvme("sanitize_overwrite", "SANICAP bit 2 clear: no sanitize overwrite"),
              _with(_nvme_reads_as, action="overwrite"), STD_NVME("Sanitize, Overwrite")),
    MethodDef("nvme-format-crypto", "nvme-format", "crypto-erase", NVME_ONLY,
              _nvme_format_crypto, _with(_nvme_reads_as, ses=2),
              STD_NVME("Format NVM, Secure Erase Settings 2 (cryptographic erase)")),
    MethodDef("nvme-format-user-data", "nvme-format", "user-data-erase", NVME_ONLY,
              _nvme_format, _with(_nvme_reads_as, ses=1),
              STD_NVME("Format NVM, Secure Erase Settings 1 (user data erase)")),
    MethodDef("ata-sanitize-crypto", "ata-sanitize", "crypto-erase", ATA_MEDIA,
              _ata_sanitize("crypto"), _fixed(mode="crypto"),
              STD_ATA("SANITIZE CRYPTO SCRAMBLE EXT")),
    MethodDef("ata-sanitize-block", "ata-sanitize", "block-erase", ATA_MEDIA,
              _ata_sanitize("block"), _fixed(mode="block"),
              STD_ATA("SANITIZE BLOCK ERASE EXT")),
    MethodDef("ata-sanitize-overwrite", "ata-sanitize", "overwrite", ATA_MEDIA,
              _ata_sanitize("overwrite"), _fixed(mode="overwrite", reads_as="00"),
              STD_ATA("SANITIZE OVERWRITE EXT")),
    MethodDef("ata-security-erase-enhanced", "ata-security-erase", "security-erase-enhanced",
              ATA_MEDIA, _ata_security(True), _security_options(True),
              STD_ATA("SECURITY ERASE UNIT, enhanced mode"), purge_on_flash=False),
    MethodDef("ata-security-erase", "ata-security-erase", "security-erase", ATA_MEDIA,
              _ata_security(False), _security_options(False),
              STD_ATA("SECURITY ERASE UNIT, normal mode"), purge_on_flash=False),
    MethodDef("scsi-sanitize-crypto", "scsi-sanitize", "crypto-erase", SCSI_MEDIA,
              _scsi("crypto"), _fixed(action="crypto"),
              STD_SCSI("SANITIZE CRYPTOGRAPHIC ERASE")),
    MethodDef("scsi-sanitize-block", "scsi-sanitize", "block-erase", SCSI_MEDIA,
              _scsi("block"), _fixed(action="block"), STD_SCSI("SANITIZE BLOCK ERASE")),
    MethodDef("scsi-sanitize-overwrite", "scsi-sanitize", "overwrite", SCSI_MEDIA,
              _scsi("overwrite"), _fixed(action="overwrite", reads_as="00"),
              STD_SCSI("SANITIZE OVERWRITE")),
    MethodDef("mmc-sanitize", "mmc-erase", "block-erase", MMC_MEDIA,
              _mmc("sanitize", "EXT_CSD SEC_FEATURE_SUPPORT: no SANITIZE"),
              _with(_mmc_reads_as, action="sanitize"), STD_MMC("SANITIZE")),
    MethodDef("mmc-secure-erase", "mmc-erase", "secure-erase", MMC_MEDIA,
              _mmc("secure_erase", "EXT_CSD SEC_FEATURE_SUPPORT: no secure erase"),
              _with(_mmc_reads_as, action="secure-erase"), STD_MMC("secure erase"),
              purge=False),
)}


def is_known(name: str) -> bool:
    """A firmware method, a named overwrite method or a pass list."""
    if name in FIRMWARE or name in METHODS:
        return True
    try:
        resolve(name)
    except UsageError:
        return False
    return True


def media_of(name: str) -> frozenset[str]:
    """The media a method can run on (overwrite: every one)."""
    return FIRMWARE[name].media if name in FIRMWARE else ALL_MEDIA


def class_on(name: str, medium: str) -> SanitizationClass:
    """The class method `name` reaches on `medium` (host overwrite: Clear)."""
    return FIRMWARE[name].class_on(medium) if name in FIRMWARE else "clear"


def why_not(name: str, caps: DriveCapabilities, station: Station) -> str | None:
    """Why `caps` cannot run method `name`, or None when it can."""
    return FIRMWARE[name].requires(caps, station) if name in FIRMWARE else None


def step_for(name: str, caps: DriveCapabilities, medium: str, station: Station) -> MethodStep:
    """The plan step of method `name` for this drive (random seeds drawn now)."""
    if name in FIRMWARE:
        return FIRMWARE[name].step(caps, medium, station)
    return overwrite_step(name)
