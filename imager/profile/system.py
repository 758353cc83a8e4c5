"""Checks of the installed system's fields of a profile: the Debian archive, the
package groups, locale, keyboard, time zone, the extra packages and the disk size."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Collection
from typing import Any

from imager.inventory.triage import parse_size
from imager.profile.checker import Checker, nearest
from imager.profile.model import MIRROR, SECURITY_MIRROR, Debian, ExtraPackage, Keyboard

SUITES = ("trixie", "bookworm", "forky")            # codenames: "stable" changes meaning
COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
GROUPS = ("base", "firmware", "desktop", "sound", "applications", "printing",
          "accessibility", "fonts")
MIN_DISK = 1 << 30

PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")                   # Debian policy 5.6.1
_DEB_VERSION = re.compile(r"([0-9]+:)?[0-9][A-Za-z0-9.+~-]*")   # any Debian version
_LOCALE = re.compile(r"[a-z]{2,3}_[A-Z]{2}\.UTF-8")
_XKB = re.compile(r"[a-z][a-z0-9_-]*")


def debian(raw: Any, c: Checker) -> Debian:
    """`debian:` (optional): suite, mirrors and archive components."""
    keys = ("suite", "mirror", "security_mirror", "components")
    m = c.mapping({} if raw is None else raw, "debian", keys) or {}
    suite = c.choice(m.get("suite"), "debian.suite", SUITES, default="trixie",
                     why="a codename, not stable/testing, so that a rebuild gets the same "
                         "release")
    components = _components(m.get("components", list(Debian.components)), c)
    return Debian(suite or "trixie", c.url(m.get("mirror"), "debian.mirror", default=MIRROR),
                  c.url(m.get("security_mirror"), "debian.security_mirror",
                        default=SECURITY_MIRROR), components)


def _components(raw: Any, c: Checker) -> tuple[str, ...]:
    components: list[str] = []
    for where, item in c.items(raw, "debian.components", what="archive components"):
        value = c.choice(item, where, COMPONENTS)
        if value:
            components.append(value)
    if "main" not in components:
        c.add("debian.components", "main is missing: add `main` (every package of Debian's "
                                   "system is there)")
    return tuple(components)


def packages(raw: Any, c: Checker) -> dict[str, tuple[str, ...]]:
    """`packages:` group -> Debian package names, each package in one group only."""
    m = c.mapping(raw, "packages", GROUPS, example="{base: [locales, …], desktop: […]}") or {}
    seen: dict[str, str] = {}       # package -> where it was first listed
    out = {group: _group(m[group], group, seen, c) for group in GROUPS if group in m}
    if not seen and raw is not None:
        c.add("packages", "no package: list at least the base packages (e.g. base: [locales])")
    return out


def _group(raw: Any, group: str, seen: dict[str, str], c: Checker) -> tuple[str, ...]:
    names: list[str] = []
    for where, item in c.items(raw, f"packages.{group}", what="Debian package names"):
        name = c.text(item, where, pattern=PACKAGE,
                      rule="a Debian package name is lower-case letters, digits and "
                           "+ . - (check it with `apt-cache policy NAME`)")
        if name in seen:
            c.add(where, f"{name} is already listed at {seen[name]}: keep one")
        elif name:
            seen[name] = f"line {c.line(where)} ({where})"
            names.append(name)
    return tuple(names)


def keyboard(raw: Any, c: Checker) -> Keyboard:
    """`keyboard:` an XKB layout, or {layout, variant}."""
    if isinstance(raw, str):
        raw = {"layout": raw}
    m = c.mapping(raw, "keyboard", ("layout", "variant"), required=("layout",),
                  example="{layout: fr, variant: ''}") or {}
    rule = "an XKB name: lower-case letters, digits, _ and - (see `localectl list-x11-keymap-"
    return Keyboard(c.text(m.get("layout"), "keyboard.layout", pattern=_XKB,
                           rule=rule + "layouts`), e.g. fr"),
                    c.text(m.get("variant") or None, "keyboard.variant", pattern=_XKB,
                           rule=rule + "variants fr`), e.g. oss; '' for the default",
                           default=""))


def locale(raw: Any, c: Checker) -> str:
    """`locale:` a UTF-8 locale."""
    return c.text(raw, "locale", pattern=_LOCALE, rule="a UTF-8 locale such as fr_FR.UTF-8")


def timezone(raw: Any, c: Checker) -> str:
    """`timezone:` a time zone this machine's tz database knows."""
    zone = c.text(raw, "timezone")
    if zone and zone not in zoneinfo.available_timezones():
        near = nearest(zone, zoneinfo.available_timezones())
        c.add("timezone", f"{zone!r} is not a time zone: "
                          + (f"did you mean {near!r}?" if near else "e.g. Europe/Paris"))
        return ""
    return zone


def extra_packages(raw: Any, c: Checker, listed: Collection[str]) -> tuple[ExtraPackage, ...]:
    """`extra_packages:` packages pinned to a version, each with why; none of `listed`."""
    out: list[ExtraPackage] = []
    for where, item in c.items(raw, "extra_packages", what="{name, version, why}"):
        m = c.mapping(item, where, ("name", "version", "why"),
                      required=("name", "version", "why"),
                      example="{name: aide-a-distance, version: 1.0, why: …}")
        if m is not None:
            taken = (*listed, *(x.name for x in out))
            out.append(_extra_package(m, where, taken, c))
    return tuple(out)


def _extra_package(m: dict[str, Any], where: str, taken: Collection[str], c: Checker,
                   ) -> ExtraPackage:
    name = c.text(m.get("name"), f"{where}.name", pattern=PACKAGE,
                  rule="a Debian package name: lower-case letters, digits and + . -")
    if name in taken:
        c.add(f"{where}.name", f"{name} is already installed by this profile: keep one")
    version = c.text(m.get("version"), f"{where}.version", pattern=_DEB_VERSION,
                     rule="a Debian version such as 1.2-1 (quoted if it looks like a "
                          "number: \"1.10\")")
    return ExtraPackage(name, version, c.text(m.get("why"), f"{where}.why"))


def disk(raw: Any, c: Checker) -> int:
    """`image: {disk: SIZE}` in bytes: at least 1 GiB, in whole MiB."""
    m = c.mapping(raw, "image", ("disk",), required=("disk",), example="{disk: 8 GiB}") or {}
    size = parse_size(m["disk"]) if isinstance(m.get("disk"), str) else None
    if m.get("disk") is not None and (size is None or size < MIN_DISK or size % (1 << 20)):
        c.add("image.disk", f"expected a size of at least 1 GiB in whole MiB, such as "
                            f"8 GiB, not {m['disk']!r}")
        return 0
    return size or 0
