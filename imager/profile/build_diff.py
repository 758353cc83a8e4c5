"""What differs between two OS image builds, from their manifests (pure).

    diff_builds(manifest_a, manifest_b) -> [Difference, ...]    ([] : the same build)

A manifest is an image manifest with its `os_build` part, that part alone, or a
build record (build.json): all three hold `packages` and `root_tar_sha256`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imager.errors import UsageError

KINDS = ("profile", "added", "removed", "changed", "rebuilt", "root_tar")


@dataclass(frozen=True, order=True)
class Difference:
    """One difference. kind: profile (name or version), added, removed, changed (a
    package's version), rebuilt (same version, another .deb), root_tar (its sha256)."""

    kind: str
    name: str                          # the package (name:arch) or the field
    before: str | None
    after: str | None

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.name} {self.after} (ajouté / added)"
        if self.kind == "removed":
            return f"- {self.name} {self.before} (retiré / removed)"
        if self.kind == "changed":
            return f"~ {self.name} {self.before} -> {self.after}"
        if self.kind == "rebuilt":
            return (f"~ {self.name}: même version, autre fichier / same version, another "
                    f".deb ({(self.before or '')[:12]} -> {(self.after or '')[:12]})")
        return f"~ {self.name}: {self.before} -> {self.after}"


def _build_part(manifest: Mapping[str, Any], which: str) -> Mapping[str, Any]:
    part = manifest.get("os_build", manifest)
    if not isinstance(part, Mapping) or not isinstance(part.get("packages"), list) \
            or not isinstance(part.get("root_tar_sha256"), str):
        raise UsageError(f"manifeste {which} sans construction / the {which} manifest has no "
                         "OS build (os_build.packages, os_build.root_tar_sha256): give the "
                         "manifest of an image made by `imager profile build`")
    return part


def _packages(part: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {f"{p['name']}:{p['arch']}": (str(p["version"]), str(p.get("sha256", "")))
            for p in part["packages"]}


def diff_builds(manifest_a: Mapping[str, Any],
                manifest_b: Mapping[str, Any]) -> list[Difference]:
    """The differences from build A to build B, by kind then name; [] when the two
    builds have the same profile, packages (.deb files) and root tar."""
    a, b = _build_part(manifest_a, "A"), _build_part(manifest_b, "B")
    found: list[Difference] = []
    for field in ("profile", "profile_version"):
        if a.get(field) != b.get(field):
            found.append(Difference("profile", field, _text(a.get(field)),
                                    _text(b.get(field))))
    pa, pb = _packages(a), _packages(b)
    for name in sorted(pa.keys() | pb.keys()):
        before, after = pa.get(name), pb.get(name)
        if before is None:
            found.append(Difference("added", name, None, after[0] if after else None))
        elif after is None:
            found.append(Difference("removed", name, before[0], None))
        elif before[0] != after[0]:
            found.append(Difference("changed", name, before[0], after[0]))
        elif before[1] and after[1] and before[1] != after[1]:
            found.append(Difference("rebuilt", name, before[1], after[1]))
    if a["root_tar_sha256"] != b["root_tar_sha256"]:
        found.append(Difference("root_tar", "root_tar_sha256", a["root_tar_sha256"],
                                b["root_tar_sha256"]))
    return sorted(found, key=lambda d: (KINDS.index(d.kind), d.name))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
