"""Identities of virtual drives (the lab bench's loop devices).

A loop device has no serial number or WWN, so the lab gives each of its disk
images a made-up but realistic label (manufacturer, model, serial, WWN), kept
in `<data dir>/lab/labels.json` and keyed by the image's real path. The probe
of a loop device applies the label of its backing file: the drive then has a
provable identity that survives a re-plug on another loop device, as a real
drive's serial survives a move to another dock. Only loop devices are
labelled; a real drive's identity always comes from the drive itself.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from imager.errors import UsageError
from imager.host.files import write_atomic
from imager.settings import Settings

# (vendor, model, rotational, serial prefix): shapes of drives donated laptops hold.
MODELS = (
    ("Samsung", "SSD 860 EVO 250GB", False, "S3Y"),
    ("Crucial", "CT240BX500SSD1", False, "1947E"),
    ("WDC", "WD5000LPCX-24VHAT0", True, "WX"),
    ("Seagate", "ST500LM021-1KJ152", True, "W62"),
    ("Kingston", "SA400S37240G", False, "50026B7"),
    ("Toshiba", "MQ01ABF050", True, "X6"),
)
LABEL_KEYS = ("vendor", "model", "serial", "wwn", "rotational")


def labels_path(settings: Settings) -> Path:
    return settings.data_dir / "lab" / "labels.json"


def read_labels(settings: Settings) -> dict[str, dict[str, Any]]:
    path = labels_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a lab label file ({exc}): delete it and run "
                         "`imager lab up` again") from exc
    return data if isinstance(data, dict) else {}


def label_of(backing_file: str | None, settings: Settings) -> dict[str, Any] | None:
    """The label of a loop device's backing file, if the lab gave it one."""
    if not backing_file:
        return None
    return read_labels(settings).get(os.path.realpath(backing_file))


def write_label(settings: Settings, image: Path, label: dict[str, Any]) -> None:
    """Give `image` a label (any previous label of it is replaced)."""
    labels = read_labels(settings)
    labels[os.path.realpath(image)] = {k: label.get(k) for k in LABEL_KEYS}
    path = labels_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(labels, indent=2, sort_keys=True).encode())


def made_up_label(rng: random.Random) -> dict[str, Any]:
    """A realistic identity for a virtual drive (unique WWN, plausible serial)."""
    vendor, model, rotational, prefix = rng.choice(MODELS)
    digits = "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTVWXYZ") for _ in range(15))
    return {"vendor": vendor, "model": model, "rotational": rotational,
            "serial": (prefix + digits)[:15],
            "wwn": f"0x5{rng.getrandbits(60):015x}"}
