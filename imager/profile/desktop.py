"""Checks of what the person meets on the laptop: the desktop, the browser and its
bookmarks, the welcome content, the first boot; and what a desktop profile cannot
do without (its packages, the firmware of donated laptops, a browser, a welcome
page, the person's own account)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imager.profile.checker import Checker
from imager.profile.model import Bookmark, Browser, FirstBoot, Network, Profile

# What each desktop cannot start without (`none`: no screen, e.g. the CI lab).
DESKTOPS: dict[str, tuple[str, ...]] = {"xfce": ("xfce4", "lightdm"), "none": ()}
# Without these, Wi-Fi, sound or CPU fixes are dead on most donated laptops; all
# come from the non-free-firmware component.
FIRMWARE: dict[str, str] = {
    "firmware-iwlwifi": "Intel Wi-Fi", "firmware-realtek": "Realtek Wi-Fi and Ethernet",
    "firmware-atheros": "Atheros/Qualcomm Wi-Fi", "firmware-brcm80211": "Broadcom Wi-Fi",
    "firmware-sof-signed": "sound on recent Intel laptops, SOF",
    "intel-microcode": "Intel CPU fixes", "amd64-microcode": "AMD CPU fixes",
}
ACCOUNTS = ("ask", "none")          # ask: the person creates their own at first boot
HOSTNAMES = ("asset-tag", "fixed")  # asset-tag: <prefix>-<asset tag, else serial number>

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?")      # room left for the tag


def desktop(raw: Any, c: Checker) -> str:
    """`desktop:` a key of DESKTOPS."""
    return c.choice(raw, "desktop", DESKTOPS, why="none: no screen, as the CI lab")


def browser(raw: Any, c: Checker, network: Network) -> Browser:
    """`browser:` its bookmarks (folder named after the network by default)."""
    m = c.mapping(raw, "browser", ("folder", "welcome_bookmark", "bookmarks"),
                  required=("bookmarks",), example="{bookmarks: [{title, url}, …]}") or {}
    welcome_title = m.get("welcome_bookmark")
    return Browser(c.text(m.get("folder"), "browser.folder", default=network.name),
                   _bookmarks(m.get("bookmarks"), "browser.bookmarks", c),
                   c.text(welcome_title, "browser.welcome_bookmark")
                   if welcome_title is not None else None)


def _bookmarks(raw: Any, path: str, c: Checker) -> tuple[Bookmark, ...]:
    out: list[Bookmark] = []
    for where, item in c.items(raw, path, what="bookmarks {title, url} or folders "
                                                "{title, bookmarks}"):
        m = c.mapping(item, where, ("title", "url", "bookmarks"), required=("title",),
                      example="{title: Emmaüs Connect, url: https://…}")
        bookmark = _bookmark(m, where, c) if m is not None else None
        if bookmark is not None:
            out.append(bookmark)
    return tuple(out)


def _bookmark(m: dict[str, Any], where: str, c: Checker) -> Bookmark | None:
    """A link, or a folder of bookmarks; None if it is neither or both."""
    title = c.text(m.get("title"), f"{where}.title")
    if ("url" in m) == ("bookmarks" in m):
        c.add(where, "give either `url:` (a link) or `bookmarks:` (a folder), not "
                     f"{'both' if 'url' in m else 'neither'}")
        return None
    if "url" in m:
        return Bookmark(title, c.url(m["url"], f"{where}.url"))
    children = _bookmarks(m["bookmarks"], f"{where}.bookmarks", c)
    if not children:
        c.add(f"{where}.bookmarks", "an empty folder: add bookmarks or remove it")
    return Bookmark(title, children=children)


def welcome(raw: Any, c: Checker, folder: Path) -> Path | None:
    """`welcome:` the welcome-content folder, relative to the profile's `folder`."""
    value = c.text(raw, "welcome")
    if not value:
        return None
    if Path(value).is_absolute():
        c.add("welcome", f"{value} is an absolute path: give it relative to {folder} "
                         "(e.g. welcome) so that the profile can be moved")
        return None
    where = (folder / value).resolve()
    if not where.is_dir():
        c.add("welcome", f"the welcome-content folder {where} does not exist: create it "
                         "or fix the path (relative to the profile's folder)")
        return None
    return where


def first_boot(raw: Any, c: Checker) -> FirstBoot:
    """`first_boot:` who creates the account, how the machine is named."""
    m = c.mapping(raw, "first_boot", ("account", "hostname", "hostname_prefix"),
                  required=("account", "hostname"),
                  example="{account: ask, hostname: asset-tag}") or {}
    account = c.choice(m.get("account"), "first_boot.account", ACCOUNTS,
                       why="ask: the person creates their own account and password at "
                           "first boot")
    hostname = c.choice(m.get("hostname"), "first_boot.hostname", HOSTNAMES,
                        why="asset-tag: <prefix>-<asset tag>, else the serial number")
    prefix = c.text(m.get("hostname_prefix"), "first_boot.hostname_prefix", pattern=_LABEL,
                    rule="1 to 20 lower-case letters, digits or inner dashes, e.g. poste",
                    default="poste")
    return FirstBoot(account, hostname, prefix)


def cross_checks(p: Profile, raw: dict[str, Any], c: Checker) -> None:
    """What depends on the desktop: a headless profile has no browser; a desktop
    needs what `_desktop_system` and `_desktop_person` say."""
    if p.desktop == "none":
        if p.browser is not None:
            c.add("browser", "a browser needs a desktop: remove `browser:` or set desktop: "
                             "xfce")
    elif p.desktop:
        _desktop_system(p, c)
        _desktop_person(p, raw.get("welcome") is not None, c)


def _desktop_system(p: Profile, c: Checker) -> None:
    """The desktop's packages and the firmware of donated laptops (non-free-firmware)."""
    listed = set(p.all_packages)
    missing = [x for x in DESKTOPS[p.desktop] if x not in listed]
    if missing:
        c.add("packages.desktop", f"desktop {p.desktop} needs {', '.join(missing)}: add "
                                  "under packages.desktop")
    if "non-free-firmware" not in p.debian.components:
        c.add("debian.components", "non-free-firmware is missing: add it. A desktop for "
              "donated laptops needs its firmware (Wi-Fi: iwlwifi, realtek, atheros, brcm; "
              "sound: sof; Intel/AMD CPU microcode); without it Wi-Fi and sound are dead on "
              "most of them")
    lacking = [f"{name} ({why})" for name, why in FIRMWARE.items() if name not in listed]
    if lacking:
        c.add("packages.firmware", f"missing {', '.join(lacking)}: add them under "
                                   "packages.firmware, or Wi-Fi/sound/CPU fixes are missing on "
                                   "many donated laptops")


def _desktop_person(p: Profile, has_welcome: bool, c: Checker) -> None:
    """A browser (firefox-esr), a welcome page, the person's own account."""
    if p.browser is None:
        c.add("browser", "missing: a desktop needs `browser:` (its bookmarks; the homepage "
                         "is the welcome page)")
    elif "firefox-esr" not in p.all_packages:
        c.add("packages.applications", "firefox-esr is missing: the browser policies are "
                                       "for firefox-esr; add it")
    if not has_welcome:
        c.add("welcome", "missing: a desktop needs `welcome:` (the welcome-content folder)")
    if p.first_boot.account == "none":
        c.add("first_boot.account", "a desktop needs `ask`: the person creates their own "
                                    "account and password (no password shared by every "
                                    "machine)")
