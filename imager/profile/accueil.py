"""The profile's own package, `<slug>-accueil`, assembled from the profile: the
browsers' policies (home page locked to the welcome page, managed bookmarks), the
welcome page and its message queue, the first-boot dialog, and the profile's extra
packages as pinned dependencies. Its version is the profile's: a later fleet
update is a new version of this one package."""

from __future__ import annotations

import tempfile
import textwrap
from datetime import date
from pathlib import Path

from imager.profile.browser import policy_files
from imager.profile.firstboot.ship import firstboot_payload
from imager.profile.model import Profile
from imager.profile.package import Payload, PayloadFile, build_deb
from imager.profile.welcome import content
from imager.profile.welcome.packaging import homepage, welcome_payload


def payload(profile: Profile, *, build_dir: Path, today: date) -> Payload:
    """Everything the profile's package holds and does (the welcome page rendered
    into `build_dir` with `today` as its "updated on" date)."""
    slug = profile.network.slug
    parts = Payload(depends=tuple(f"{x.name} (= {x.version})" for x in profile.extra_packages))
    if profile.welcome is not None:
        parts += welcome_payload(content.load(profile.welcome), slug=slug,
                                 build_dir=build_dir, today=today)
    if profile.browser is not None:
        parts += Payload(files=tuple(PayloadFile(str(path), data) for path, data in
                                     policy_files(profile, homepage(slug)).items()))
    if profile.first_boot.account == "ask":
        parts += firstboot_payload(slug, hostname=profile.first_boot.hostname,
                                   default_hostname=profile.first_boot.hostname_prefix,
                                   hostname_prefix=profile.first_boot.hostname_prefix)
    return parts


def build(profile: Profile, out_dir: Path, *, today: date) -> Path:
    """The profile's package, `<slug>-accueil_<version>_all.deb`, in `out_dir`
    (built reproducibly: the same profile and day give the same bytes)."""
    with tempfile.TemporaryDirectory(prefix="imager-accueil-") as stage:
        return build_deb(payload(profile, build_dir=Path(stage), today=today),
                         name=profile.network.package, version=profile.version,
                         out_dir=out_dir,
                         maintainer=f"{profile.network.name} <accueil@{slug_host(profile)}>",
                         description=_description(profile))


def slug_host(profile: Profile) -> str:
    """The mail domain named in the package's Maintainer field: the network's slug
    under .invalid (RFC 2606) until profiles carry a contact address."""
    return f"{profile.network.slug}.invalid"


def _description(profile: Profile) -> str:
    text = (f"The harmonised system of {profile.network.name}: the browser opens on the "
            "local welcome page (help, digital-mediation places, workshops, a message "
            "to the network), the first boot creates the person's own account, and the "
            f"profile {profile.name} {profile.version} pins its extra packages.")
    return (f"{profile.network.slug}: welcome page, browser policies and first boot\n"
            + textwrap.fill(text, width=79))
