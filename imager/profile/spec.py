"""A profile, `profiles/<name>/profile.yaml`: the harmonised system as data.

`load("bureau-solidaire")` reads and validates the file as a whole and returns a
frozen `Profile`; a bad file raises one `ProfileError` listing EVERY problem, each
with its place (`profiles/lab/profile.yaml:12 packages.base[3]`) and how to fix it.
An unknown key is refused with the nearest known key. `Profile.build_spec()` is
what the image build takes.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import zoneinfo
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imager import yamldoc
from imager.errors import UsageError
from imager.inventory.triage import parse_size
from imager.profile.buildspec import BuildSpec

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
FILE = "profile.yaml"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITES = ("trixie", "bookworm", "forky")            # codenames: "stable" changes meaning
COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
GROUPS = ("base", "firmware", "desktop", "sound", "applications", "printing",
          "accessibility", "fonts")
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
MIN_DISK = 1 << 30

_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")                 # Debian policy 5.6.1
_VERSION = re.compile(r"[0-9][A-Za-z0-9.+~]*")                  # a native version
_DEB_VERSION = re.compile(r"([0-9]+:)?[0-9][A-Za-z0-9.+~-]*")   # any Debian version
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
_LOCALE = re.compile(r"[a-z]{2,3}_[A-Z]{2}\.UTF-8")
_XKB = re.compile(r"[a-z][a-z0-9_-]*")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?")      # room left for the tag


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
    account: str = "ask"            # one of ACCOUNTS
    hostname: str = "asset-tag"     # one of HOSTNAMES
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
    packages: dict[str, tuple[str, ...]]    # group -> Debian packages, in GROUPS order
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


# --- where things are in the file ------------------------------------------------------

def nearest(word: str, known: Iterable[str]) -> str | None:
    """The known word closest to `word` (a typo's fix), if any is close."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _one_of(value: object, known: Collection[str]) -> str:
    near = nearest(value, known) if isinstance(value, str) else None
    hint = f"did you mean {near!r}? " if near else ""
    return f"{value!r} is not known: {hint}use one of {', '.join(known)}"


class _Check:
    """Problems of one document, each placed as `file:line key.path`."""

    def __init__(self, document: yamldoc.Document) -> None:
        self.document, self.source, self.written = document, document.source, document.written
        self.found: list[tuple[int, str]] = []
        for key, line in document.twice:
            self.add(key, "this key appears twice: keep one (YAML would silently keep the "
                          "last)", line=line)

    def line(self, path: str) -> int:
        return self.document.line(path)

    def add(self, path: str, message: str, *, line: int | None = None) -> None:
        line = line or self.line(path)
        self.found.append((line, f"{self.source}:{line} {path or '(top)'}: {message}"))

    def problems(self) -> yamldoc.Problems:
        return yamldoc.Problems(text for _, text in sorted(self.found, key=lambda f: f[0]))

    def mapping(self, raw: Any, path: str, allowed: Collection[str], *,
                required: Collection[str] = (), example: str = "") -> dict[str, Any] | None:
        """`raw` as a mapping: unknown keys refused (nearest known key suggested),
        required keys present."""
        if raw is None:
            return None     # reported as missing by the mapping above
        if not isinstance(raw, dict):
            self.add(path, f"expected a mapping{' such as ' + example if example else ''}, "
                           f"not {raw!r}")
            return None
        for key in raw:
            if key not in allowed:
                near = nearest(str(key), allowed)
                fix = f"did you mean {near!r}?" if near else "remove it"
                self.add(yamldoc.join(path, key), f"unknown key {key!r}: {fix} "
                                           f"(allowed here: {', '.join(allowed)})")
        for key in required:
            if raw.get(key) is None:
                self.add(yamldoc.join(path, key), f"missing: add `{key}:` under "
                                           f"{path or 'the top of the file'}")
        return raw

    def text(self, raw: Any, path: str, *, pattern: re.Pattern[str] | None = None,
             rule: str = "", default: str | None = None) -> str:
        """A non-blank string (matching `pattern`, explained by `rule`), else ''."""
        if raw is None and default is not None:
            return default
        if raw is None:
            return ""   # a missing required key is reported by `mapping`
        if not isinstance(raw, str) or not raw.strip():
            as_written = self.written.get(path, repr(raw))
            hint = f' (write it in quotes: "{as_written}")' \
                if isinstance(raw, bool | int | float) else ""
            self.add(path, f"expected text, not {as_written}{hint}")
            return ""
        value = raw.strip()
        if pattern is not None and not pattern.fullmatch(value):
            self.add(path, f"{value!r} is not valid: {rule}")
            return ""
        return value

    def url(self, raw: Any, path: str, *, default: str | None = None) -> str:
        value = self.text(raw, path, default=default)
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            self.add(path, f"{value!r} is not a web address: write it in full, "
                           "e.g. https://www.example.fr/")
            return ""
        return value

    def items(self, raw: Any, path: str, *, what: str) -> list[tuple[str, Any]]:
        """(path of item, item) for a list; a problem if it is not a list."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.add(path, f"expected a list of {what} (lines starting with `- `), "
                           f"not {raw!r}")
            return []
        for i in (i for i, item in enumerate(raw) if item is None):
            self.add(f"{path}[{i}]", "an empty item: fill it in or remove its `-` line")
        return [(f"{path}[{i}]", item) for i, item in enumerate(raw) if item is not None]


# --- the sections ----------------------------------------------------------------------

TOP = ("name", "title", "version", "network", "debian", "packages", "locale", "keyboard",
       "timezone", "desktop", "browser", "welcome", "first_boot", "extra_packages", "image")
REQUIRED = ("name", "title", "version", "network", "packages", "locale", "keyboard",
            "timezone", "desktop", "first_boot", "image")


def _network(raw: Any, c: _Check) -> Network:
    m = c.mapping(raw, "network", ("name", "slug"), required=("name", "slug"),
                  example="{name: Réseau solidaire…, slug: rsn05}") or {}
    return Network(c.text(m.get("name"), "network.name"),
                   c.text(m.get("slug"), "network.slug", pattern=_SLUG,
                          rule="lower-case letters, digits and dashes, 1 to 31 of them "
                               "(it names the package <slug>-accueil), e.g. rsn05"))


def _debian(raw: Any, c: _Check) -> Debian:
    keys = ("suite", "mirror", "security_mirror", "components")
    m = c.mapping({} if raw is None else raw, "debian", keys) or {}
    suite = c.text(m.get("suite"), "debian.suite", default="trixie")
    if suite and suite not in SUITES:
        c.add("debian.suite", _one_of(suite, SUITES) + " (a codename, not stable/testing, "
                              "so that a rebuild gets the same release)")
    components: list[str] = []
    for where, item in c.items(m.get("components", list(Debian.components)),
                               "debian.components", what="archive components"):
        value = c.text(item, where)
        if value and value not in COMPONENTS:
            c.add(where, _one_of(value, COMPONENTS))
        elif value:
            components.append(value)
    if "main" not in components:
        c.add("debian.components", "main is missing: add `main` (every package of Debian's "
                                   "system is there)")
    return Debian(suite or "trixie", c.url(m.get("mirror"), "debian.mirror", default=MIRROR),
                  c.url(m.get("security_mirror"), "debian.security_mirror",
                        default=SECURITY_MIRROR), tuple(components))


def _packages(raw: Any, c: _Check) -> dict[str, tuple[str, ...]]:
    m = c.mapping(raw, "packages", GROUPS, example="{base: [locales, …], desktop: […]}") or {}
    seen: dict[str, str] = {}
    out: dict[str, tuple[str, ...]] = {}
    for group in (g for g in GROUPS if g in m):
        names: list[str] = []
        for where, item in c.items(m[group], f"packages.{group}", what="Debian package names"):
            name = c.text(item, where, pattern=_PACKAGE,
                          rule="a Debian package name is lower-case letters, digits and "
                               "+ . - (check it with `apt-cache policy NAME`)")
            if name in seen:
                c.add(where, f"{name} is already listed at {seen[name]}: keep one")
            elif name:
                seen[name] = f"line {c.line(where)} ({where})"
                names.append(name)
        out[group] = tuple(names)
    if not seen and raw is not None:
        c.add("packages", "no package: list at least the base packages (e.g. base: [locales])")
    return out


def _keyboard(raw: Any, c: _Check) -> Keyboard:
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


def _locale(raw: Any, c: _Check) -> str:
    return c.text(raw, "locale", pattern=_LOCALE, rule="a UTF-8 locale such as fr_FR.UTF-8")


def _timezone(raw: Any, c: _Check) -> str:
    zone = c.text(raw, "timezone")
    if zone and zone not in zoneinfo.available_timezones():
        near = nearest(zone, zoneinfo.available_timezones())
        c.add("timezone", f"{zone!r} is not a time zone: "
                          + (f"did you mean {near!r}?" if near else "e.g. Europe/Paris"))
        return ""
    return zone


def _bookmarks(raw: Any, path: str, c: _Check) -> tuple[Bookmark, ...]:
    out: list[Bookmark] = []
    for where, item in c.items(raw, path, what="bookmarks {title, url} or folders "
                                                "{title, bookmarks}"):
        m = c.mapping(item, where, ("title", "url", "bookmarks"), required=("title",),
                      example="{title: Emmaüs Connect, url: https://…}")
        if m is None:
            continue
        title = c.text(m.get("title"), f"{where}.title")
        if ("url" in m) == ("bookmarks" in m):
            c.add(where, "give either `url:` (a link) or `bookmarks:` (a folder), not "
                         f"{'both' if 'url' in m else 'neither'}")
        elif "url" in m:
            out.append(Bookmark(title, c.url(m["url"], f"{where}.url")))
        else:
            children = _bookmarks(m["bookmarks"], f"{where}.bookmarks", c)
            if not children:
                c.add(f"{where}.bookmarks", "an empty folder: add bookmarks or remove it")
            out.append(Bookmark(title, children=children))
    return tuple(out)


def _browser(raw: Any, c: _Check, network: Network) -> Browser:
    m = c.mapping(raw, "browser", ("folder", "welcome_bookmark", "bookmarks"),
                  required=("bookmarks",), example="{bookmarks: [{title, url}, …]}") or {}
    welcome = m.get("welcome_bookmark")
    return Browser(c.text(m.get("folder"), "browser.folder", default=network.name),
                   _bookmarks(m.get("bookmarks"), "browser.bookmarks", c),
                   c.text(welcome, "browser.welcome_bookmark") if welcome is not None else None)


def _welcome(raw: Any, c: _Check, folder: Path) -> Path | None:
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


def _first_boot(raw: Any, c: _Check) -> FirstBoot:
    m = c.mapping(raw, "first_boot", ("account", "hostname", "hostname_prefix"),
                  required=("account", "hostname"),
                  example="{account: ask, hostname: asset-tag}") or {}
    account = c.text(m.get("account"), "first_boot.account")
    if account and account not in ACCOUNTS:
        c.add("first_boot.account", _one_of(account, ACCOUNTS) + " (ask: the person creates "
                                    "their own account and password at first boot)")
    hostname = c.text(m.get("hostname"), "first_boot.hostname")
    if hostname and hostname not in HOSTNAMES:
        c.add("first_boot.hostname", _one_of(hostname, HOSTNAMES) + " (asset-tag: "
                                     "<prefix>-<asset tag>, else the serial number)")
    prefix = c.text(m.get("hostname_prefix"), "first_boot.hostname_prefix", pattern=_LABEL,
                    rule="1 to 20 lower-case letters, digits or inner dashes, e.g. poste",
                    default="poste")
    return FirstBoot(account, hostname, prefix)


def _extra_packages(raw: Any, c: _Check, listed: Collection[str]) -> tuple[ExtraPackage, ...]:
    out: list[ExtraPackage] = []
    for where, item in c.items(raw, "extra_packages", what="{name, version, why}"):
        m = c.mapping(item, where, ("name", "version", "why"),
                      required=("name", "version", "why"),
                      example="{name: aide-a-distance, version: 1.0, why: …}")
        if m is None:
            continue
        name = c.text(m.get("name"), f"{where}.name", pattern=_PACKAGE,
                      rule="a Debian package name: lower-case letters, digits and + . -")
        if name in listed or name in (x.name for x in out):
            c.add(f"{where}.name", f"{name} is already installed by this profile: keep one")
        version = c.text(m.get("version"), f"{where}.version", pattern=_DEB_VERSION,
                         rule="a Debian version such as 1.2-1 (quoted if it looks like a "
                              "number: \"1.10\")")
        out.append(ExtraPackage(name, version, c.text(m.get("why"), f"{where}.why")))
    return tuple(out)


def _disk(raw: Any, c: _Check) -> int:
    m = c.mapping(raw, "image", ("disk",), required=("disk",), example="{disk: 8 GiB}") or {}
    size = parse_size(m["disk"]) if isinstance(m.get("disk"), str) else None
    if m.get("disk") is not None and (size is None or size < MIN_DISK or size % (1 << 20)):
        c.add("image.disk", f"expected a size of at least 1 GiB in whole MiB, such as "
                            f"8 GiB, not {m['disk']!r}")
        return 0
    return size or 0


def _desktop(raw: Any, c: _Check) -> str:
    desktop = c.text(raw, "desktop")
    if desktop and desktop not in DESKTOPS:
        c.add("desktop", _one_of(desktop, DESKTOPS) + " (none: no screen, as the CI lab)")
        return ""
    return desktop


def _desktop_needs(p: Profile, has_welcome: bool, c: _Check) -> None:
    """What a desktop profile cannot do without: its desktop's packages, the firmware
    of donated laptops (from non-free-firmware), a browser, a welcome page, the
    person's own account."""
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
    if p.browser is None:
        c.add("browser", "missing: a desktop needs `browser:` (its bookmarks; the homepage "
                         "is the welcome page)")
    elif "firefox-esr" not in listed:
        c.add("packages.applications", "firefox-esr is missing: the browser policies are "
                                       "for firefox-esr; add it")
    if not has_welcome:
        c.add("welcome", "missing: a desktop needs `welcome:` (the welcome-content folder)")
    if p.first_boot.account == "none":
        c.add("first_boot.account", "a desktop needs `ask`: the person creates their own "
                                    "account and password (no password shared by every "
                                    "machine)")


def _cross_checks(p: Profile, raw: dict[str, Any], c: _Check) -> None:
    """What depends on the desktop: a headless profile has no browser."""
    if p.desktop == "none":
        if p.browser is not None:
            c.add("browser", "a browser needs a desktop: remove `browser:` or set desktop: "
                             "xfce")
    elif p.desktop:
        _desktop_needs(p, raw.get("welcome") is not None, c)


def _header(raw: dict[str, Any], c: _Check, path: Path) -> tuple[str, str, str]:
    name = c.text(raw.get("name"), "name", pattern=_NAME,
                  rule="lower-case letters, digits and dashes, e.g. bureau-solidaire")
    if name and path.name == FILE and path.parent.name != name:
        c.add("name", f"{name!r} differs from the profile's folder {path.parent.name!r}: "
                      "rename one so they match")
    version = c.text(raw.get("version"), "version", pattern=_VERSION,
                     rule="digits and dots starting with a digit, e.g. \"2026.12.1\" (it is "
                          "the version of the profile's package)")
    return name, c.text(raw.get("title"), "title"), version


def parse(document: str, *, source: Path) -> Profile:
    """Validate a profile document read from `source` (its folder resolves `welcome`);
    raise ProfileError listing every problem with its place and fix."""
    shown = _shown(source)
    try:
        doc = yamldoc.read(document, shown)
    except yamldoc.InvalidYaml as exc:
        raise ProfileError(shown, [str(exc)]) from exc
    c = _Check(doc)
    raw = c.mapping({} if doc.value is None else doc.value, "", TOP, required=REQUIRED) or {}
    name, title, version = _header(raw, c, source)
    network = _network(raw.get("network"), c)
    packages = _packages(raw.get("packages"), c)
    listed = tuple(dict.fromkeys(p for group in packages.values() for p in group))
    browser = raw.get("browser")
    profile = Profile(
        name=name, title=title, version=version, network=network,
        debian=_debian(raw.get("debian"), c), packages=packages,
        locale=_locale(raw.get("locale"), c), keyboard=_keyboard(raw.get("keyboard"), c),
        timezone=_timezone(raw.get("timezone"), c), desktop=_desktop(raw.get("desktop"), c),
        browser=None if browser is None else _browser(browser, c, network),
        welcome=_welcome(raw.get("welcome"), c, source.parent),
        first_boot=_first_boot(raw.get("first_boot"), c),
        extra_packages=_extra_packages(raw.get("extra_packages"), c, listed),
        disk_bytes=_disk(raw.get("image"), c), source=source,
        digest=yamldoc.sha256(document))
    _cross_checks(profile, raw, c)
    if c.found:
        raise ProfileError(shown, c.problems())
    return profile


def _shown(path: Path) -> str:
    """The path as a person would type it: relative to the current folder if inside."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- finding profiles ------------------------------------------------------------------

def names(root: Path = PROFILES) -> list[str]:
    """The profiles in `root`: each folder holding a profile.yaml."""
    return sorted(p.parent.name for p in root.glob(f"*/{FILE}"))


def locate(name_or_path: str | Path, *, root: Path = PROFILES) -> Path:
    """The profile.yaml meant by a name (a folder of `root`), a folder or a file."""
    given = Path(name_or_path)
    if given.is_dir():
        given = given / FILE
    if given.is_file():
        return given
    if isinstance(name_or_path, str) and _NAME.fullmatch(name_or_path):
        if (root / name_or_path / FILE).is_file():
            return root / name_or_path / FILE
        known = names(root)
        near = nearest(name_or_path, known)
        hint = f"did you mean {near!r}? " if near else ""
        raise ProfileError(name_or_path, [
            f"no profile named {name_or_path!r} in {root}: {hint}the profiles are "
            f"{', '.join(known) or '(none)'} (`imager profile list`)"])
    raise ProfileError(str(name_or_path), [f"{name_or_path} does not exist: give a profile's "
                                           f"name or the path of its {FILE}"])


def load(name_or_path: str | Path, *, root: Path = PROFILES) -> Profile:
    """The validated profile named `name_or_path` in `root`, or at that path."""
    path = locate(name_or_path, root=root)
    try:
        document = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(_shown(path), [f"cannot be read: {exc}"]) from exc
    return parse(document, source=path)


def load_all(root: Path = PROFILES) -> Iterator[tuple[str, Profile | ProfileError]]:
    """Each profile of `root` by name: the Profile, or the error saying what is wrong."""
    for name in names(root):
        try:
            yield name, load(name, root=root)
        except ProfileError as exc:
            yield name, exc
