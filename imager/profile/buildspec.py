"""What an OS image build needs from a profile, as one value.

`imager.profile.spec` turns a validated `profile.yaml` into a `BuildSpec`; the
image build (mmdebstrap, disk, GRUB) takes only this value, so the two sides can be
tested apart and the build cache can hash it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageFile:
    """A file the build writes into the image (a systemd unit, a script...)."""

    path: str                           # absolute path in the image, e.g. /etc/issue.d/x
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class BuildSpec:
    name: str                           # the profile's name, e.g. "bureau-solidaire"
    version: str                        # the profile's version, e.g. "2026.12.1"
    suite: str = "trixie"               # Debian suite
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    components: tuple[str, ...] = ("main", "non-free-firmware")
    packages: tuple[str, ...] = ()      # Debian packages, beyond the build's own base
    locale: str = "fr_FR.UTF-8"
    keyboard_layout: str = "fr"         # XKB layout
    keyboard_variant: str = ""          # XKB variant ("" for the layout's default)
    timezone: str = "Europe/Paris"
    hostname: str = "poste"             # until first boot sets it from the asset tag
    disk_gib: float = 8.0               # the raw image's size (it is sparse)
    # The profile's own packages (.deb files built beforehand), installed last.
    local_debs: tuple[Path, ...] = field(default_factory=tuple)
    # The day this version was released (ISO date, "2026-12-01"): every timestamp of
    # the image (SOURCE_DATE_EPOCH). "" takes it from a version of the form
    # YYYY.MM[.N] (the first of that month).
    released: str = ""
    # Files written into the image after the packages, and systemd units enabled
    # there (e.g. the lab's boot report on the serial console).
    files: tuple[ImageFile, ...] = ()
    enable_units: tuple[str, ...] = ()
