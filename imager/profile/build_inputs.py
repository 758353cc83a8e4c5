"""What a profile gives the image build: its BuildSpec with the profile's own
package built first, and the optional serial-console boot report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from imager.profile import accueil, boot_report, buildkey
from imager.profile import spec as profile_files
from imager.profile.buildspec import BuildSpec


def profile_build_spec(name: str, *, profiles: Path = profile_files.PROFILES,
                       debs_dir: Path) -> BuildSpec:
    """The BuildSpec of profile `name` (a name in `profiles`, or a path) with its own
    package `<slug>-accueil` built into `debs_dir`/<name>/, dated the profile's
    release day: the same profile gives the same .deb, so the build cache holds."""
    profile = profile_files.load(name, root=profiles)
    day = buildkey.release_day(profile.build_spec())
    out = debs_dir / profile.name
    out.mkdir(parents=True, exist_ok=True)
    return profile.build_spec(local_debs=(accueil.build(profile, out, today=day),))


def with_boot_report(spec: BuildSpec) -> BuildSpec:
    """`spec` with the serial-console boot report (imager.profile.boot_report)."""
    return dataclasses.replace(spec, files=(*spec.files, *boot_report.FILES),
                               enable_units=(*spec.enable_units, *boot_report.UNITS))
