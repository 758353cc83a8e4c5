"""The kernel command line of the live system: what the boot service tells it.

    imager.station=https://HOST:PORT   the station's URL
    imager.token=TOKEN                 a single-use boot token (absent: the agent
                                       enrols pending and shows its pairing code)
    imager.mac=aa:bb:cc:dd:ee:ff       the MAC that booted (absent: every wired
                                       interface with a link)
    imager.boot=network|usb            how the laptop was booted (default network)

The station's CA is not on the command line: the boot service adds a third initrd
holding CA_PATH."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

CA_PATH = "/etc/imager/station-ca.pem"
BOOTS = ("network", "usb")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True)
class LiveCmdline:
    """What the live session reads on /proc/cmdline; `problems` lists what was
    given wrong (shown on the serial console, never a crash)."""

    station: str | None = None
    token: str | None = None
    mac: str | None = None
    boot: str = "network"
    problems: tuple[str, ...] = ()


def parse_cmdline(text: str) -> LiveCmdline:
    """The `imager.*` parameters of a kernel command line (the last one wins)."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    params = dict(w.split("=", 1) for w in words if w.startswith("imager.") and "=" in w)
    problems: list[str] = []
    station = params.get("imager.station") or None
    if station is not None and not station.startswith(("https://", "http://")):
        problems.append(f"imager.station={station} is not an http(s) URL")
        station = None
    mac = (params.get("imager.mac") or "").lower().replace("-", ":") or None
    if mac is not None and not _MAC.fullmatch(mac):
        problems.append(f"imager.mac={mac} is not a MAC address")
        mac = None
    boot = params.get("imager.boot") or "network"
    if boot not in BOOTS:
        problems.append(f"imager.boot={boot} is not one of {', '.join(BOOTS)}")
        boot = "network"
    return LiveCmdline(station=station.rstrip("/") if station else None,
                       token=params.get("imager.token") or None, mac=mac, boot=boot,
                       problems=tuple(problems))
