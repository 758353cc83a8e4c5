"""The versions a live system build takes today, so its cache key follows them.

The live system's recipe (imager.boot.live.recipe) names packages, not versions:
keyed on the recipe alone, the cache would go on serving last month's kernel,
shim and GRUB after a Debian security update (a new shim may be what lets an
ex-Windows laptop's Secure Boot accept the station again). So each build first
asks the mirror and PyPI what it would install now (`resolve`: mmdebstrap
--simulate, pip --dry-run; nothing downloaded but indexes and metadata) and the
versions join the recipe in the key. Without a network, the newest build of the
same recipe is taken (`newest_for_recipe`), and said so. After a build, `check`
makes sure the root holds the versions resolved (the mirror did not change in
between).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from imager.boot import guest
from imager.errors import ImagerError
from imager.profile.debs import parse_simulated


@dataclass(frozen=True)
class Resolved:
    """Debian packages (name=version:arch) and wheels (name==version), sorted."""

    debs: tuple[str, ...]
    wheels: tuple[str, ...]

    def lines(self) -> list[str]:
        return [*self.debs, *self.wheels]

    def version_of(self) -> dict[str, str]:
        """Debian package name -> version."""
        return {line.split("=", 1)[0]: line.split("=", 1)[1].rsplit(":", 1)[0]
                for line in self.debs}


def resolve(*, suite: str, sources: Sequence[str], components: Sequence[str],
            packages: Sequence[str], python: guest.GuestPython,
            requirements: Sequence[str], work: Path) -> Resolved:
    """What a build would install now (ImagerError without the network)."""
    try:
        out = guest.simulate(suite=suite, sources=sources, packages=packages,
                             components=components, work=work / "apt")
        debs = tuple(sorted(p.key for p in parse_simulated(out)))
        if not debs:
            raise ImagerError(f"mmdebstrap --simulate listed no package for {suite}: check "
                              "the mirror and the package names")
        wheels = tuple(guest.wheel_versions(python, requirements, work / "pip"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Resolved(debs, wheels)


def newest_for_recipe(cache: Path, recipe_key: str) -> tuple[str, str] | None:
    """(key, built date) of the newest OS part built from the recipe `recipe_key`
    in `cache`, or None."""
    found = []
    for os_json in cache.glob("os-*/os.json"):
        try:
            manifest = json.loads(os_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.get("recipe_key") == recipe_key and manifest.get("os_key"):
            found.append((str(manifest.get("built", "")), str(manifest["os_key"])))
    if not found:
        return None
    built, key = max(found)
    return key, built


def _wheel(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def check(resolved: Resolved, installed: Mapping[str, str],
          fetched: Iterable[tuple[str, str]], wheels: Iterable[str]) -> None:
    """ImagerError when a package of the root (name -> version), one fetched for the
    boot files ((name, version)) or a wheel installed (its dist-info name,
    name-version) is not at the version resolved before the build: the mirror or
    PyPI changed in between, and the key would lie."""
    wanted = resolved.version_of()
    moved = sorted(f"{name} {version} (resolved {wanted[name]})"
                   for name, version in [*installed.items(), *fetched]
                   if name in wanted and wanted[name] != version)
    pinned = {_wheel(line.split("==")[0]): line.split("==")[1] for line in resolved.wheels}
    for dist in wheels:
        name, _, version = dist.rpartition("-")
        if _wheel(name) in pinned and pinned[_wheel(name)] != version:
            moved.append(f"{name} {version} (resolved {pinned[_wheel(name)]})")
    if moved:
        raise ImagerError("le miroir a changé pendant la construction / the mirror changed "
                          f"during the build: {', '.join(moved[:5])}; run `imager boot "
                          "build` again")
