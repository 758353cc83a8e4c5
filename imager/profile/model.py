"""A validated profile as frozen values: what `imager.profile.spec.load` returns.

`Profile` is the whole file resolved (defaults filled, the welcome folder found);
`Profile.build_spec()` is what the image build takes, `Profile.to_dict()` the
same data as JSON. `ProfileError` lists every problem of a file that cannot be used.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imager.errors import UsageError
from imager.profile.buildspec import BuildSpec

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"


class ProfileError(UsageError):
    """A profile that cannot be used; `problems` has each one with its place and fix."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"profil / profile {source}: {len(self.problems)} problème(s) / "
                         "problem(s):\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class Network:
    name: str       # shown to people, e.g. "Réseau solidaire du numérique des Hautes-Alpes"
    slug: str       # names the profile's own package

    @property
    def package(self) -> str:
        """The profile's own Debian package, e.g. `rsn05-accueil`."""
        return f"{self.slug}-accueil"


@dataclass(frozen=True)
class Debian:
    suite: str = "trixie"
    mirror: str = MIRROR
    security_mirror: str = SECURITY_MIRROR
    components: tuple[str, ...] = ("main", "non-free-firmware")


@dataclass(frozen=True)
class Keyboard:
    layout: str = "fr"      # XKB layout
    variant: str = ""       # XKB variant ("": the layout's default)


@dataclass(frozen=True)
class Bookmark:
    """A link (`url`) or a folder of bookmarks (`children`, `url` empty)."""

    title: str
    url: str = ""
    children: tuple[Bookmark, ...] = ()

    @property
    def is_folder(self) -> bool:
        return not self.url


@dataclass(frozen=True)
class Browser:
    folder: str                         # the bookmarks' folder on the toolbar
    bookmarks: tuple[Bookmark, ...]
    welcome_bookmark: str | None = None  # title of a first bookmark to the welcome page


@dataclass(frozen=True)
class FirstBoot:
    account: str = "ask"            # one of desktop.ACCOUNTS
    hostname: str = "asset-tag"     # one of desktop.HOSTNAMES
    hostname_prefix: str = "poste"


@dataclass(frozen=True)
class ExtraPackage:
    name: str
    version: str
    why: str


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    version: str
    network: Network
    debian: Debian
    packages: dict[str, tuple[str, ...]]    # group -> Debian packages, in system.GROUPS order
    locale: str
    keyboard: Keyboard
    timezone: str
    desktop: str                            # a key of DESKTOPS
    browser: Browser | None                 # None without a desktop
    welcome: Path | None                    # the welcome-content directory, resolved
    first_boot: FirstBoot
    extra_packages: tuple[ExtraPackage, ...]
    disk_bytes: int
    source: Path                            # the profile.yaml it was read from
    digest: str                             # SHA-256 of that file

    def __hash__(self) -> int:      # `packages` is a dict: hash what identifies the file
        return hash((self.source, self.digest))

    @property
    def has_desktop(self) -> bool:
        return self.desktop != "none"

    @property
    def all_packages(self) -> tuple[str, ...]:
        """Every Debian package of every group, each once, in the file's order."""
        return tuple(dict.fromkeys(p for group in self.packages.values() for p in group))

    def build_spec(self, *, local_debs: Sequence[Path] = ()) -> BuildSpec:
        """What the image build needs. Extra packages are pinned (`name=version`);
        `local_debs` (the profile's own package, built beforehand) are installed last."""
        pinned = tuple(f"{x.name}={x.version}" for x in self.extra_packages)
        return BuildSpec(
            name=self.name, version=self.version, suite=self.debian.suite,
            mirror=self.debian.mirror, security_mirror=self.debian.security_mirror,
            components=self.debian.components, packages=self.all_packages + pinned,
            locale=self.locale, keyboard_layout=self.keyboard.layout,
            keyboard_variant=self.keyboard.variant, timezone=self.timezone,
            hostname=self.first_boot.hostname_prefix, disk_gib=self.disk_bytes / (1 << 30),
            local_debs=tuple(local_debs))

    def to_dict(self) -> dict[str, Any]:
        """The resolved profile as JSON-ready data, shaped like the YAML file (plus
        `network.package`, `welcome_path` resolved, `source` and `digest`)."""
        data = dataclasses.asdict(self)
        data["network"]["package"] = self.network.package
        if self.browser is not None:
            data["browser"]["bookmarks"] = [_bookmark_dict(b) for b in self.browser.bookmarks]
        data["welcome"] = os.path.relpath(self.welcome, self.source.parent) \
            if self.welcome else None
        data["welcome_path"] = str(self.welcome) if self.welcome else None
        data["image"] = {"disk": _size(data.pop("disk_bytes"))}
        data["source"] = str(data.pop("source"))
        data["digest"] = data.pop("digest")
        return data


def _bookmark_dict(b: Bookmark) -> dict[str, Any]:
    if b.is_folder:
        return {"title": b.title, "bookmarks": [_bookmark_dict(c) for c in b.children]}
    return {"title": b.title, "url": b.url}


def _size(n: int) -> str:
    return f"{n >> 30} GiB" if n % (1 << 30) == 0 else f"{n >> 20} MiB"

