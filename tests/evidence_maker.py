"""A drive's evidence as an agent sends it (imager.inventory.evidence), for tests
that play an agent by hand: lsblk's JSON for one disk, and the tools' outputs."""

from __future__ import annotations

import json
from typing import Any


def lsblk_json(path: str, size: int, *, serial: str | None = None, model: str | None = None,
               transport: str = "sata", rotational: bool = False) -> str:
    """What `lsblk -J -b -d -o COLUMNS path` prints for one whole disk."""
    name = path.rsplit("/", 1)[-1]
    return json.dumps({"blockdevices": [{
        "name": name, "path": path, "kname": name, "type": "disk", "model": model,
        "vendor": None, "serial": serial, "wwn": None, "size": size, "tran": transport,
        "rota": rotational, "rm": False, "ro": False, "log-sec": 512, "phy-sec": 512,
        "pkname": None, "mountpoints": [None]}]}, indent=3)


def evidence(path: str, size: int, *, serial: str | None = None, model: str | None = None,
             transport: str = "sata", tools: list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    """The `evidence` of a drive_attached event; no tool output unless given."""
    return {"path": path, "lsblk": lsblk_json(path, size, serial=serial, model=model,
                                              transport=transport),
            "backing_file": None, "label": None,
            "facts": {"exists": True, "nvme_others": None, "mmc_type": None},
            "tools": tools or []}
