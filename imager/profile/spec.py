"""A profile, `profiles/<name>/profile.yaml`: the harmonised system as data.

`load("bureau-solidaire")` reads and validates the file as a whole and returns a
frozen `Profile`; a bad file raises one `ProfileError` listing EVERY problem, each
with its place (`profiles/lab/profile.yaml:12 packages.base[3]`) and how to fix it.
An unknown key is refused with the nearest known key. `Profile.build_spec()` is
what the image build takes.

This module checks the file as a whole (its top keys, name, version, network) and
is the public face of the package's parts, whose names it re-exports:
- model.py: the frozen values (`Profile`, `ProfileError`...);
- checker.py: reading a field, each problem placed as `file:line key.path`;
- system.py: the Debian archive, packages, locale, keyboard, time zone, disk;
- desktop.py: the desktop, browser, welcome content, first boot, and what a
  desktop cannot do without;
- files.py: where profiles are (`names`, `locate`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imager import yamldoc
from imager.profile import desktop, system
from imager.profile.checker import Checker, nearest
from imager.profile.desktop import ACCOUNTS, DESKTOPS, FIRMWARE, HOSTNAMES
from imager.profile.files import FILE, NAME, PROFILES, locate, names, shown
from imager.profile.model import (
    MIRROR,
    SECURITY_MIRROR,
    Bookmark,
    Browser,
    Debian,
    ExtraPackage,
    FirstBoot,
    Keyboard,
    Network,
    Profile,
    ProfileError,
)
from imager.profile.system import COMPONENTS, GROUPS, MIN_DISK, SUITES

__all__ = [
    "ACCOUNTS", "COMPONENTS", "DESKTOPS", "FILE", "FIRMWARE", "GROUPS", "HOSTNAMES",
    "MIN_DISK", "MIRROR", "PROFILES", "REQUIRED", "SECURITY_MIRROR", "SUITES", "TOP",
    "Bookmark", "Browser", "Debian", "ExtraPackage", "FirstBoot", "Keyboard", "Network",
    "Profile", "ProfileError", "load", "load_all", "locate", "names", "nearest", "parse",
]

TOP = ("name", "title", "version", "network", "debian", "packages", "locale", "keyboard",
       "timezone", "desktop", "browser", "welcome", "first_boot", "extra_packages", "image")
REQUIRED = ("name", "title", "version", "network", "packages", "locale", "keyboard",
            "timezone", "desktop", "first_boot", "image")

_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~]*")                  # a native version
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")


def load(name_or_path: str | Path, *, root: Path = PROFILES) -> Profile:
    """The validated profile named `name_or_path` in `root`, or at that path."""
    path = locate(name_or_path, root=root)
    try:
        document = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(shown(path), [f"cannot be read: {exc}"]) from exc
    return parse(document, source=path)


def load_all(root: Path = PROFILES) -> Iterator[tuple[str, Profile | ProfileError]]:
    """Each profile of `root` by name: the Profile, or the error saying what is wrong."""
    for name in names(root):
        try:
            yield name, load(name, root=root)
        except ProfileError as exc:
            yield name, exc


def parse(document: str, *, source: Path) -> Profile:
    """Validate a profile document read from `source` (its folder resolves `welcome`);
    raise ProfileError listing every problem with its place and fix."""
    where = shown(source)
    try:
        doc = yamldoc.read(document, where)
    except yamldoc.InvalidYaml as exc:
        raise ProfileError(where, [str(exc)]) from exc
    c = Checker(doc)
    raw = c.mapping({} if doc.value is None else doc.value, "", TOP, required=REQUIRED) or {}
    profile = _profile(raw, c, source, yamldoc.sha256(document))
    desktop.cross_checks(profile, raw, c)
    if c.found:
        raise ProfileError(where, c.problems())
    return profile


def _profile(raw: dict[str, Any], c: Checker, source: Path, digest: str) -> Profile:
    """Each field read in the file's order; a bad one is a problem in `c`."""
    name, title, version = _header(raw, c, source)
    network = _network(raw.get("network"), c)
    packages = system.packages(raw.get("packages"), c)
    listed = tuple(dict.fromkeys(p for group in packages.values() for p in group))
    browser = raw.get("browser")
    return Profile(
        name=name, title=title, version=version, network=network,
        debian=system.debian(raw.get("debian"), c), packages=packages,
        locale=system.locale(raw.get("locale"), c),
        keyboard=system.keyboard(raw.get("keyboard"), c),
        timezone=system.timezone(raw.get("timezone"), c),
        desktop=desktop.desktop(raw.get("desktop"), c),
        browser=None if browser is None else desktop.browser(browser, c, network),
        welcome=desktop.welcome(raw.get("welcome"), c, source.parent),
        first_boot=desktop.first_boot(raw.get("first_boot"), c),
        extra_packages=system.extra_packages(raw.get("extra_packages"), c, listed),
        disk_bytes=system.disk(raw.get("image"), c), source=source, digest=digest)


def _header(raw: dict[str, Any], c: Checker, path: Path) -> tuple[str, str, str]:
    name = c.text(raw.get("name"), "name", pattern=NAME,
                  rule="lower-case letters, digits and dashes, e.g. bureau-solidaire")
    if name and path.name == FILE and path.parent.name != name:
        c.add("name", f"{name!r} differs from the profile's folder {path.parent.name!r}: "
                      "rename one so they match")
    version = c.text(raw.get("version"), "version", pattern=_VERSION,
                     rule="digits and dots starting with a digit, e.g. \"2026.12.1\" (it is "
                          "the version of the profile's package)")
    return name, c.text(raw.get("title"), "title"), version


def _network(raw: Any, c: Checker) -> Network:
    m = c.mapping(raw, "network", ("name", "slug"), required=("name", "slug"),
                  example="{name: Réseau solidaire…, slug: rsn05}") or {}
    return Network(c.text(m.get("name"), "network.name"),
                   c.text(m.get("slug"), "network.slug", pattern=_SLUG,
                          rule="lower-case letters, digits and dashes, 1 to 31 of them "
                               "(it names the package <slug>-accueil), e.g. rsn05"))
