"""A BuildSpec as JSON (for `imager profile build --spec-json`, and tests).

    {"name": "lab", "version": "2026.12.1", "packages": ["ifupdown"],
     "files": [{"path": "/etc/motd", "text": "Bonjour\\n", "mode": 420}],
     "boot_report": true, ...}

Any BuildSpec field may be given; `files` take `text` or `base64`; `boot_report`
adds the serial-console boot report (imager.profile.boot_report)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

from imager.errors import UsageError
from imager.profile import boot_report
from imager.profile.buildspec import BuildSpec, ImageFile

_TUPLES = ("components", "packages", "enable_units")


def spec_from_json(data: dict[str, Any], *, where: str = "spec") -> BuildSpec:
    """A BuildSpec from JSON data; UsageError names the bad field."""
    known = {f.name for f in dataclasses.fields(BuildSpec)} | {"boot_report"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{where}: champ inconnu / unknown field {unknown[0]!r}: the fields "
                         f"are {', '.join(sorted(known))}")
    values = {k: v for k, v in data.items() if k != "boot_report"}
    for name in _TUPLES:
        if name in values:
            values[name] = tuple(values[name])
    if "disk_gib" in values:
        values["disk_gib"] = float(values["disk_gib"])
    values["local_debs"] = tuple(Path(p) for p in data.get("local_debs", ()))
    values["files"] = tuple(_file(item, f"{where}: files[{i}]")
                            for i, item in enumerate(data.get("files", ())))
    if data.get("boot_report"):
        values["files"] = (*values["files"], *boot_report.FILES)
        values["enable_units"] = (*values.get("enable_units", ()), *boot_report.UNITS)
    try:
        return BuildSpec(**values)
    except TypeError as exc:
        raise UsageError(f"{where}: {exc}: give at least name and version") from exc


def _file(item: dict[str, Any], where: str) -> ImageFile:
    if not isinstance(item, dict) or not str(item.get("path", "")).startswith("/"):
        raise UsageError(f"{where}: give an absolute \"path\" and \"text\" or \"base64\"")
    if "text" in item:
        content = str(item["text"]).encode()
    elif "base64" in item:
        content = base64.b64decode(item["base64"])
    else:
        raise UsageError(f"{where} ({item['path']}): give its content as \"text\" or \"base64\"")
    return ImageFile(item["path"], content, int(item.get("mode", 0o644)))


def load_spec_json(path: Path) -> BuildSpec:
    """The BuildSpec in a JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"fichier illisible / cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise UsageError(f"{path} n'est pas du JSON / is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a JSON object with the BuildSpec fields is expected")
    return spec_from_json(data, where=str(path))
