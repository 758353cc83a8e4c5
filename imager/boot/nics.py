"""The network cards a technician listed for iPXE under UEFI (`imager boot nic`):
a NIC Debian's network GRUB cannot drive gets iPXE's snponly.efi instead of shim.

Kept in <data dir>/boot/ipxe-nics.json; the boot service reads it at start.
"""

from __future__ import annotations

import json
from pathlib import Path

from imager.errors import UsageError
from imager.host.files import write_atomic
from imager.registry.boot import clean_mac
from imager.settings import Settings


def nics_path(settings: Settings) -> Path:
    return settings.data_dir / "boot" / "ipxe-nics.json"


def ipxe_macs(settings: Settings) -> tuple[str, ...]:
    """The listed MACs, sorted."""
    path = nics_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a list of network cards ({exc}): delete it and list "
                         "them again with `imager boot nic MAC --ipxe`") from exc
    macs = data.get("ipxe_macs", []) if isinstance(data, dict) else []
    return tuple(sorted({m for m in (clean_mac(str(x)) for x in macs) if m}))


def set_ipxe(settings: Settings, mac: str, *, ipxe: bool) -> tuple[str, ...]:
    """List (`ipxe`) or unlist `mac`; the new list."""
    clean = clean_mac(mac)
    if clean is None:
        raise UsageError(f"{mac!r} n'est pas une adresse MAC / is not a MAC address: write it "
                         "as 52:54:00:12:34:56")
    macs = set(ipxe_macs(settings))
    macs = macs | {clean} if ipxe else macs - {clean}
    listed = tuple(sorted(macs))
    write_atomic(nics_path(settings), json.dumps({"ipxe_macs": listed}, indent=2).encode())
    return listed
