"""The first boot as package content: `firstboot_payload(slug)` -> Payload.

What it installs on the laptop (<lib> = /usr/lib/<slug>-accueil):
- <lib>/python/firstboot/: the program (the modules of imager.profile.firstboot.laptop,
  unchanged) and its config.json;
- <lib>/premier-demarrage: started by <slug>-premier-demarrage.service, ordered before
  display-manager.service; it runs `xinit <lib>/premier-demarrage-session -- Xorg :0
  vt7`, whose client is the GTK dialog; when the account is made, X stops and LightDM
  starts as usual;
- /usr/share/lightdm/lightdm.conf.d/60-<slug>-accueil.conf: LightDM lists the users
  (Debian hides them by default), so the person clicks their name.
The unit is enabled by the package's postinst and disabled by the first boot itself;
a marker file (/var/lib/<slug>-premier-demarrage/fait) stops it for good.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from imager.errors import UsageError
from imager.inventory.dmi import PLACEHOLDERS
from imager.profile.firstboot import laptop
from imager.profile.firstboot.laptop.logic import Config
from imager.profile.package import Payload, PayloadFile, check_name

# What the dialog needs on the laptop; the desktop profile's package list has them.
DEPENDS = (
    "python3 (>= 3.11)", "python3-gi", "gir1.2-gtk-3.0", "xinit", "xserver-xorg-core",
    "xserver-xorg-input-libinput | xserver-xorg-input-all", "lightdm", "sudo", "passwd",
    "fonts-dejavu-core",
)
PROGRAM = ("__init__.py", "__main__.py", "logic.py", "system.py", "dialog.py")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*[a-z0-9]")


def firstboot_payload(slug: str, *, hostname: str = "asset-tag",
                      default_hostname: str = "poste", hostname_prefix: str = "poste",
                      min_password: int = 8) -> Payload:
    """The first-boot dialog, its unit and LightDM's setting, for the network `slug`.

    hostname: "asset-tag" (profile first_boot.hostname) replaces the image's
    hostname `default_hostname` (BuildSpec.hostname) at first boot by
    <hostname_prefix>-<asset tag, else serial number> ("poste-rs05-0042"), unless the
    deployment already set another; "fixed" keeps it. min_password: the shortest
    password accepted."""
    if hostname not in ("asset-tag", "fixed"):
        raise UsageError(f"first_boot.hostname {hostname!r}: choose asset-tag or fixed")
    if not _SLUG.fullmatch(slug):
        raise UsageError(f"network slug {slug!r}: use lowercase letters, digits and inner "
                         "'-' only (e.g. 'reseau-solidaire')")
    package = check_name(f"{slug}-accueil")
    lib = f"/usr/lib/{package}"
    unit = f"{slug}-premier-demarrage.service"
    config = Config(slug=slug, unit=unit, hostname_from=hostname,
                    hostname_prefix=hostname_prefix,
                    default_hostname=default_hostname, min_password=min_password,
                    placeholders=tuple(sorted(PLACEHOLDERS)))
    fill = {"@PACKAGE@": package, "@LIB@": lib, "@UNIT@": unit, "@MARKER@": config.marker}
    source = Path(laptop.__file__).parent
    files = [PayloadFile(f"{lib}/python/firstboot/{name}", source / name) for name in PROGRAM]
    files += [
        PayloadFile(f"{lib}/python/firstboot/config.json", config.to_json().encode()),
        PayloadFile(f"{lib}/premier-demarrage", _template("premier-demarrage", fill), 0o755),
        PayloadFile(f"{lib}/premier-demarrage-session",
                    _template("premier-demarrage-session", fill), 0o755),
        PayloadFile(f"/usr/lib/systemd/system/{unit}",
                    _template("premier-demarrage.service", fill)),
        PayloadFile(f"/usr/share/lightdm/lightdm.conf.d/60-{package}.conf",
                    _template("lightdm.conf", fill)),
    ]
    return Payload(files=tuple(files), units=(unit,), depends=DEPENDS)


def _template(name: str, fill: dict[str, str]) -> bytes:
    text = resources.files("imager.profile.firstboot").joinpath("payload", name).read_text(
        encoding="utf-8")
    for key, value in fill.items():
        text = text.replace(key, value)
    return text.encode()
