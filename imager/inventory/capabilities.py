"""One value per drive: what it is and which erase methods it can do.

Built by the probe from the pure parsers' results; consumed by the erase plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from imager.inventory.hdparm import AtaIdentify, HostProtectedArea
from imager.inventory.nvme import NvmeController, NvmeNamespace
from imager.inventory.scsi import ScsiInquiry
from imager.inventory.smartctl import SmartReport
from imager.model import DriveIdentity

if TYPE_CHECKING:
    from imager.inventory.mmc import MmcExtCsd

Medium = Literal["hdd", "ssd", "usb-flash", "sd-mmc", "unknown"]
# Transports whose drives are never ATA drives (no HPA or DCO to hide sectors in).
NOT_ATA_TRANSPORTS = frozenset({"nvme", "mmc", "virtio", "loop", "file"})


@dataclass(frozen=True)
class DriveCapabilities:
    identity: DriveIdentity
    medium: Medium
    transport: str                       # sata, nvme, scsi, usb, mmc, virtio, loop, file
    ata: AtaIdentify | None = None       # hdparm -I (security state, sanitize modes)
    hpa: HostProtectedArea | None = None
    dco_real_max: int | None = None      # None: no usable DCO
    nvme: NvmeController | None = None
    nvme_namespace: NvmeNamespace | None = None
    nvme_other_namespaces: tuple[str, ...] = ()   # the rest of its NVM subsystem
    smart: SmartReport | None = None
    scsi_sanitize: frozenset[str] = frozenset()   # {"overwrite", "block", "crypto"}
    scsi_inquiry: ScsiInquiry | None = None      # sg_inq: vendor, product, unit serial
    mmc: MmcExtCsd | None = None         # eMMC EXT_CSD (mmc extcsd read); None for SD cards
    problems: tuple[str, ...] = ()       # what could not be probed, for the technician

    @property
    def ata_drive(self) -> bool | None:
        """Whether this is an ATA drive, which may hide sectors in an HPA or behind a DCO.

        True when it answered as one: on SATA, to hdparm (-I or -N), to smartctl in
        ATA (through a SAT bridge), or with the INQUIRY vendor "ATA" that a SCSI-to-ATA
        translation gives (SAT: libata, a SAS HBA's SATL). False when it is known not
        to be: NVMe, eMMC/SD, a virtual disk, or on SAS/SCSI a drive that answered
        SMART in SCSI, or SCSI INQUIRY under another vendor. None when nothing says:
        behind a USB bridge, the bridge answers INQUIRY and `smartctl -d scsi` for the
        drive, and a SATA disk in a dock looks like a USB stick."""
        if self.ata is not None or self.hpa is not None or self.transport in ("sata", "ata"):
            return True
        if self.transport in NOT_ATA_TRANSPORTS or self.nvme is not None \
                or self.mmc is not None:
            return False
        smart = self.smart if self.smart is not None and self.smart.answered else None
        inquiry = self.scsi_inquiry
        if (smart is not None and smart.protocol == "ATA") or \
                (inquiry is not None and inquiry.vendor.strip().upper() == "ATA"):
            return True
        if smart is not None and smart.protocol == "NVMe":
            return False
        if self.transport == "usb":
            return None
        if smart is not None and smart.protocol == "SCSI":
            return False     # smartctl picks SAT itself for a drive whose INQUIRY says ATA
        return False if inquiry is not None and self.transport in ("sas", "scsi") else None
