"""What the profile's own package installs for the welcome page, as data: the
page (rendered), the message queue script, its systemd units and its system
user, each with its path on the laptop and its mode. The .deb build writes
them as they are; nothing here runs a tool.

On the laptop:
    /usr/share/<slug>-accueil/            the page: index.html, en.html, assets/
    /usr/lib/<slug>-accueil/accueil_messages.py
    /usr/lib/systemd/system/<slug>-accueil-messages.service       (127.0.0.1:<port>)
    /usr/lib/systemd/system/<slug>-accueil-messages-send.service  (+ .timer)
    /usr/lib/sysusers.d/<slug>-accueil.conf                       (the system user)
    /var/lib/<slug>-accueil/messages/     the queue (0700, made by systemd + the script)
The browser's home page is `homepage(slug)`, a file:// URL: the page opens
even when the local service is not running; only its form needs the service.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from imager.errors import UsageError
from imager.profile.package import Payload, PayloadFile
from imager.profile.welcome import site
from imager.profile.welcome.content import WelcomeContent

PAYLOAD = Path(__file__).parent / "payload"
UNITS = ("accueil-messages.service", "accueil-messages-send.service",
         "accueil-messages-send.timer")


def share_dir(slug: str) -> str:
    return f"/usr/share/{slug}-accueil"


def homepage(slug: str) -> str:
    """The browser's home page on the laptop."""
    return f"file://{share_dir(slug)}/index.html"


def welcome_payload(content: WelcomeContent, *, slug: str, build_dir: Path,
                    today: date) -> Payload:
    """The welcome page of `content` and its message queue as package content: the
    files, the queue's service and sender timer (enabled at install) and its
    system user (made by systemd-sysusers in postinst)."""
    files = payload_files(content, slug=slug, build_dir=build_dir, today=today)
    return Payload(files=tuple(files), units=(f"{slug}-{UNITS[0]}", f"{slug}-{UNITS[2]}"),
                   restart=(f"{slug}-{UNITS[0]}",),
                   postinst=(f"systemd-sysusers {slug}-accueil.conf",))


def payload_files(content: WelcomeContent, *, slug: str, build_dir: Path,
                  today: date) -> list[PayloadFile]:
    """Every file the package installs for the welcome page of `content`; the
    page is rendered into `build_dir` (build date `today`) on the way."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,40}", slug):
        raise UsageError(f"package slug {slug!r}: use lowercase letters, digits and '-'")
    pages = build_dir / "accueil"
    written = site.render(content, pages, today=today, message_url=content.messages.local_url)
    files = [PayloadFile(f"{share_dir(slug)}/{p.relative_to(pages).as_posix()}",
                         p.read_bytes(), 0o644) for p in written]
    script = PAYLOAD / "accueil_messages.py"
    files.append(PayloadFile(f"/usr/lib/{slug}-accueil/{script.name}", script.read_bytes(),
                             0o755))
    values = {"@SLUG@": slug, "@PORT@": str(content.messages.local_port),
              "@NETWORK@": content.network, "@PORTAL_URL@": content.messages.portal_url,
              "@KEEP_DAYS@": str(content.messages.keep_days)}
    for unit in UNITS:
        files.append(PayloadFile(f"/usr/lib/systemd/system/{slug}-{unit}",
                                 _filled(PAYLOAD / unit, values, unit=True), 0o644))
    gecos = {**values, "@NETWORK@": values["@NETWORK@"].replace(":", " -").replace('"', "'")}
    files.append(PayloadFile(f"/usr/lib/sysusers.d/{slug}-accueil.conf",
                             _filled(PAYLOAD / "accueil.sysusers", gecos, unit=False), 0o644))
    return files


def _filled(template: Path, values: dict[str, str], *, unit: bool) -> bytes:
    text = template.read_text(encoding="utf-8")
    for key, value in values.items():
        # systemd expands %-specifiers in unit files: a literal % is written %%.
        text = text.replace(key, value.replace("%", "%%") if unit else value)
    return text.encode("utf-8")
