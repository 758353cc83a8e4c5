"""What the boot service saw of the laptops booting from the network, kept for the
board: one row per MAC address (imager.store.models.BootSighting), written by the
boot service's watch (imager.boot.watch), read by the board.

The stages, in the order a boot goes through them:
- `offered`: the proxy-DHCP told the laptop which loader to fetch;
- `shim`, `undionly`, `snponly`: the firmware fetched that first loader over TFTP;
- `grub`: shim fetched GRUB (so the firmware accepted shim);
- `config`: GRUB fetched its grub.cfg, or iPXE its boot.ipxe (so shim accepted GRUB);
- `asked`: the loader asked the station what to boot (`decision` says the answer);
- `kernel`: it fetched the live system's kernel;
- `initrd`: it fetched the live system (so the kernel was accepted);
- `enrolled`: the live system's agent enrolled with the laptop's boot token.
A boot that stops between two of them for longer than it should gets a `problem`
(imager.boot.watch.PROBLEMS says which and why); reaching a later stage clears it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.store.db import utcnow
from imager.store.models import BootSighting, BootToken

STAGES = ("offered", "shim", "undionly", "snponly", "grub", "config", "asked", "kernel",
          "initrd", "enrolled")
SHOWN_FOR = timedelta(hours=1)    # what the board lists: the boots of the last hour


@dataclass(frozen=True)
class Seen:
    """One laptop's boot as the watch last saw it."""

    mac: str
    stage: str
    stage_at: datetime
    first_at: datetime
    address: str | None = None
    serial: str | None = None
    firmware: str | None = None
    loaders: int = 0
    decision: str | None = None
    problem: str | None = None
    problem_at: datetime | None = None
    machine_id: int | None = None


def record(s: Session, seen: list[Seen]) -> None:
    """Write each laptop's boot (one row per MAC, replaced)."""
    now = utcnow()
    for item in seen:
        if item.stage not in STAGES:
            raise ValueError(f"boot stage {item.stage!r}: one of {', '.join(STAGES)}")
        row = s.scalar(select(BootSighting).where(BootSighting.mac == item.mac))
        if row is None:
            row = BootSighting(mac=item.mac)
            s.add(row)
        for name, value in asdict(item).items():
            setattr(row, name, value)
        row.updated_at = now
    s.flush()


def enrolled_since(s: Session, mac: str, since: datetime) -> bool:
    """Whether a boot token bound to `mac` was used (its agent enrolled) at or
    after `since`."""
    return s.scalar(select(BootToken.id).where(
        BootToken.mac == mac, BootToken.used_at.is_not(None),
        BootToken.used_at >= since).limit(1)) is not None


def recent(s: Session, *, now: datetime | None = None,
           within: timedelta = SHOWN_FOR) -> list[BootSighting]:
    """The boots seen lately, those with a problem first, then the newest."""
    since = (now or utcnow()) - within
    rows = s.scalars(select(BootSighting).where(BootSighting.updated_at >= since)
                     .order_by(BootSighting.updated_at.desc())).all()
    return sorted(rows, key=lambda row: row.problem is None)
