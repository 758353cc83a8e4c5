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
