"""Drive identity from `lsblk -J -b` (pure parser) and its probe."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imager.errors import DeviceError
from imager.host.run import run
from imager.host.virtual import LABEL_KEYS, label_of
from imager.model import DriveIdentity
from imager.settings import Settings

COLUMNS = ("NAME,PATH,KNAME,TYPE,MODEL,VENDOR,SERIAL,WWN,SIZE,TRAN,ROTA,RM,RO,"
           "LOG-SEC,PHY-SEC,PKNAME,MOUNTPOINTS")


def parse(text: str) -> list[dict[str, Any]]:
    """The `blockdevices` list of lsblk's JSON output."""
    try:
        return list(json.loads(text)["blockdevices"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DeviceError(f"lsblk printed something that is not its JSON output: {exc}") from exc


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _transport(entry: dict[str, Any]) -> str | None:
    tran = _clean(entry.get("tran"))
    if tran:
        return tran
    if entry.get("type") == "loop":
        return "loop"
    kname = entry.get("kname") or ""
    for prefix, name in (("vd", "virtio"), ("nvme", "nvme"), ("mmcblk", "mmc")):
        if kname.startswith(prefix):
            return name
    return None


def identity(entry: dict[str, Any], *, backing_file: str | None = None) -> DriveIdentity:
    """A DriveIdentity from one lsblk entry."""
    return DriveIdentity(
        path=entry["path"], size=int(entry["size"]),
        logical_sector=int(entry.get("log-sec") or 512),
        physical_sector=int(entry.get("phy-sec") or 512),
        model=_clean(entry.get("model")), vendor=_clean(entry.get("vendor")),
        serial=_clean(entry.get("serial")), wwn=_clean(entry.get("wwn")),
        transport=_transport(entry), rotational=bool(entry.get("rota")),
        removable=bool(entry.get("rm")), backing_file=backing_file,
    )


def probe(path: str, settings: Settings) -> DriveIdentity:
    """Identify the drive at `path` (a block device, or an image file)."""
    if Path(path).is_file():
        real = os.path.realpath(path)
        return DriveIdentity(path=path, size=os.path.getsize(path), transport="file",
                             backing_file=real)
    return from_output(*read(path, settings))


def read(path: str, settings: Settings) -> tuple[str, str | None, dict[str, Any] | None]:
    """What identifies the block device at `path`: lsblk's output, the backing file of
    a loop device and the label the lab gave that file (or None)."""
    out = run(["lsblk", "-J", "-b", "-d", "-o", COLUMNS, path]).stdout
    entry = _first(out, path)
    bf = settings.sys_root / "block" / str(entry.get("kname")) / "loop" / "backing_file"
    backing = bf.read_text().strip() if bf.exists() else None
    label = label_of(backing, settings) if entry.get("type") == "loop" else None
    return out, backing, label


def from_output(out: str, backing: str | None, label: dict[str, Any] | None,
                *, path: str | None = None) -> DriveIdentity:
    """The identity lsblk's output tells; a lab label counts only on a loop device."""
    entry = _first(out, path)
    if label and entry.get("type") == "loop":
        entry = {**entry, **{k: label.get(k) for k in LABEL_KEYS if k != "rotational"},
                 "rota": bool(label.get("rotational"))}
    try:
        return identity(entry, backing_file=backing)
    except (KeyError, TypeError, ValueError) as exc:
        raise DeviceError(f"lsblk's output for {path or 'the drive'} lacks its "
                          f"{exc.args[0] if isinstance(exc, KeyError) else 'size'}: "
                          f"{type(exc).__name__}: {exc}") from exc


def _first(out: str, path: str | None) -> dict[str, Any]:
    entries = parse(out)
    if not entries or not isinstance(entries[0], dict):
        raise DeviceError(f"lsblk does not know {path or 'the drive'}: is it a block device?")
    return entries[0]
