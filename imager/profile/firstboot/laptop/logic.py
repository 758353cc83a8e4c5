"""What the first-boot dialog decides, as pure functions (standard library only).

This package runs on the beneficiary's laptop, where imager is not installed: it is
shipped by the profile's package under /usr/lib/<slug>-accueil/python/firstboot/.
Nothing here touches the system; `system.py` reads the facts and applies the plan.

- the login comes from the person's name: first word, accents removed, lowercase
  ASCII, a valid name for useradd and adduser, never one that exists already;
- the password: at least `min_password` characters, typed twice the same; no
  complexity rules;
- the hostname comes from the asset tag (the file the deployment writes, else the
  SMBIOS chassis then board asset tag, else the SMBIOS serial number) unless the
  deployment already named the machine or the profile keeps a fixed name; the same
  rule as imager.imaging.after.hostname_for;
- the plan: the commands and files that create the account, set the hostname,
  optionally turn on LightDM's autologin, and disable the first boot.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field

# Desktop groups (as Debian's installer gives its first user, plus sudo: the
# beneficiary owns the machine). Only those that exist on the system are used.
DESKTOP_GROUPS = ("sudo", "audio", "video", "plugdev", "netdev", "lpadmin", "scanner",
                  "bluetooth", "cdrom", "dip", "users")
LOGIN_MAX = 32
FALLBACK_LOGIN = "utilisateur"
# A name both useradd and adduser accept (adduser's NAME_REGEX is the stricter).
VALID_LOGIN = re.compile(r"[a-z][a-z0-9-]{0,31}")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Letters NFKD does not split into an ASCII letter and an accent.
_LETTERS = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l",
                          "þ": "th", "ð": "d", "ı": "i", "ŀ": "l"})
_GECOS_BAD = re.compile(r"[:,=\x00-\x1f\x7f]")
REGULAR_UIDS = range(1000, 60000)


@dataclass(frozen=True)
class Config:
    """The first boot of one profile; written as config.json by the profile's package."""

    slug: str                                   # the network's slug, e.g. "reseau"
    unit: str = ""                              # the systemd unit to disable when done
    hostname_from: str = "asset-tag"            # or "fixed": keep the image's name
    hostname_prefix: str = "poste"
    default_hostname: str = "poste"             # the image's name until the first boot
    min_password: int = 8
    groups: tuple[str, ...] = DESKTOP_GROUPS
    placeholders: tuple[str, ...] = ()          # firmware strings that are no asset tag
    dmi_dir: str = "/sys/class/dmi/id"

    @property
    def asset_tag_file(self) -> str:
        """Written by the deployment with the network's own inventory number."""
        return f"/etc/{self.slug}/asset-tag"

    @property
    def marker(self) -> str:
        """Its own directory: /var/lib/<slug>-accueil belongs to the welcome page's
        message service (StateDirectory=), which must not be able to remove it."""
        return f"/var/lib/{self.slug}-premier-demarrage/fait"

    @property
    def autologin_file(self) -> str:
        return f"/etc/lightdm/lightdm.conf.d/70-{self.slug}-autologin.conf"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Config:
        data = json.loads(text)
        return cls(**{**data, "groups": tuple(data.get("groups", DESKTOP_GROUPS)),
                      "placeholders": tuple(data.get("placeholders", ()))})


@dataclass(frozen=True)
class SystemFacts:
    """What the first boot reads from the system before deciding."""

    users: frozenset[str] = frozenset()         # every name in /etc/passwd
    groups: frozenset[str] = frozenset()        # every name in /etc/group
    owners: tuple[str, ...] = ()                # regular users with a usable password
    hostname: str = ""                          # /etc/hostname
    hosts: str = ""                             # /etc/hosts
    # the deployment's file, SMBIOS chassis and board asset tags, SMBIOS serial number
    asset_tags: tuple[str | None, ...] = ()
    done: bool = False                          # the marker exists


@dataclass(frozen=True)
class Account:
    """What the person chose."""

    full_name: str
    login: str
    password: str = field(repr=False)
    autologin: bool = False


@dataclass(frozen=True)
class Command:
    """A command of the plan. `stdin` is secret (never logged) when `secret`;
    `live_only`: skipped when applied to another root than "/" (a test root);
    `may_fail`: its failure is logged, not fatal."""

    argv: tuple[str, ...]
    stdin: str | None = field(default=None, repr=False)
    secret: bool = False
    live_only: bool = False
    may_fail: bool = False


@dataclass(frozen=True)
class WriteFile:
    path: str
    text: str
    mode: int = 0o644


Step = Command | WriteFile


# --- the person's name and login --------------------------------------------------------


def ascii_fold(text: str) -> str:
    """Lowercase ASCII letters of `text` with accents removed ("Hélène" -> "helene");
    other characters are kept as they are."""
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def clean_name(full_name: str) -> str:
    """The name as the account keeps it (GECOS): spaces collapsed, without the
    characters /etc/passwd cannot hold (: , = and control characters)."""
    return " ".join(_GECOS_BAD.sub(" ", full_name).split())[:100]


def login_from_name(full_name: str, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """The login for `full_name`: its first word that has Latin letters, in lowercase
    ASCII ("Marie-Hélène Dupont" -> "marie-helene"), "utilisateur" when no word has
    any (a name in another script), a number added when it is taken ("marie2")."""
    base = next((b for b in map(_login_part, clean_name(full_name).split()) if b),
                FALLBACK_LOGIN)
    login, n = base, 1
    while login in taken or login == "root":
        n += 1
        login = f"{base[:LOGIN_MAX - len(str(n))].rstrip('-')}{n}"
    assert VALID_LOGIN.fullmatch(login), login
    return login


def _login_part(word: str) -> str:
    """`word` as a login: ASCII letters, digits and inner '-', starting with a letter."""
    plain = re.sub(r"[^a-z0-9-]+", "", ascii_fold(word))
    return re.sub(r"^[^a-z]+", "", plain)[:LOGIN_MAX].rstrip("-")


# --- checks: each returns None or a problem the dialog shows (a key of TEXTS) ----------


@dataclass(frozen=True)
class Problem:
    key: str                                    # in TEXTS
    values: tuple[tuple[str, object], ...] = ()

    def say(self, lang: str) -> str:
        return say(self.key, lang, **dict(self.values))


def name_problem(full_name: str) -> Problem | None:
    if not clean_name(full_name):
        return Problem("name_empty")
    return None


def password_problem(password: str, again: str, *, minimum: int) -> Problem | None:
    if not password:
        return Problem("password_empty")
    if len(password) < minimum:
        return Problem("password_short", (("n", minimum), ("k", len(password))))
    if any(unicodedata.category(c) == "Cc" for c in password):
        return Problem("password_control")
    if password != again:
        return Problem("password_mismatch")
    return None


def account_problems(full_name: str, password: str, again: str, *,
                     minimum: int) -> list[Problem]:
    """Every problem of the form, the name's first."""
    return [p for p in (name_problem(full_name),
                        password_problem(password, again, minimum=minimum)) if p]


# --- hostname -----------------------------------------------------------------------------


def usable_tag(value: str | None, placeholders: tuple[str, ...]) -> str | None:
    """An asset tag, or None when it is empty, a firmware placeholder ("Default
    string", "No Asset Tag") or redacted ("XXXXXXXX", "00000000")."""
    text = " ".join((value or "").split())
    if not text or text.casefold() in {p.casefold() for p in placeholders}:
        return None
    if re.fullmatch(r"[\sXx*#.\-_0]*", text):
        return None
    return text


def hostname_from_tag(tag: str, prefix: str = "pc") -> str | None:
    """A valid one-label hostname from an asset tag ("RS05-0042" -> "pc-rs05-0042"),
    or None if the tag has no letter or digit or makes too long a name."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", tag)
                     if not unicodedata.combining(c))
    plain = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    name = f"{prefix}-{plain}" if prefix and plain else plain
    if not plain or not _LABEL.fullmatch(name) or name.isdigit():
        return None
    return name


def chosen_hostname(facts: SystemFacts, config: Config) -> str | None:
    """The hostname to set, or None to keep the current one: the deployment's name
    is kept; the image's default one is replaced by the first usable asset tag (or
    serial number), unless the profile keeps a fixed name."""
    if config.hostname_from != "asset-tag":
        return None
    if facts.hostname and facts.hostname != config.default_hostname:
        return None
    for tag in facts.asset_tags:
        usable = usable_tag(tag, config.placeholders)
        if usable and (name := hostname_from_tag(usable, config.hostname_prefix)):
            return name
    return None


def hosts_with(text: str, hostname: str) -> str:
    """/etc/hosts text with one `127.0.1.1 hostname` line: in place of the existing
    127.0.1.1 line(s), else after the 127.0.0.1 line, else first."""
    entry = f"127.0.1.1\t{hostname}"
    lines = text.splitlines()
    at = [i for i, ln in enumerate(lines) if ln.split()[:1] == ["127.0.1.1"]]
    if at:
        kept = [ln for i, ln in enumerate(lines) if i not in at[1:]]
        kept[at[0]] = entry
        return "\n".join(kept) + "\n"
    local = [i for i, ln in enumerate(lines) if ln.split()[:1] == ["127.0.0.1"]]
    where = local[0] + 1 if local else 0
    return "\n".join(lines[:where] + [entry] + lines[where:]) + "\n"


# --- the plan -------------------------------------------------------------------------------


def already_done(facts: SystemFacts) -> str | None:
    """Why the first boot has nothing to do, or None if it must ask."""
    if facts.done:
        return "the first boot was already done (its marker exists)"
    if facts.owners:
        return f"the machine already has a user with a password ({', '.join(facts.owners)})"
    return None


def plan(account: Account, facts: SystemFacts, config: Config) -> list[Step]:
    """The steps that create the account and end the first boot, in order."""
    groups = [g for g in config.groups if g in facts.groups]
    steps: list[Step] = [
        Command(("useradd", "--create-home", "--shell", "/bin/bash", "--user-group",
                 "--comment", clean_name(account.full_name),
                 *(("--groups", ",".join(groups)) if groups else ()), account.login)),
        Command(("chpasswd",), stdin=f"{account.login}:{account.password}\n", secret=True),
    ]
    hostname = chosen_hostname(facts, config)
    if hostname:
        steps += [WriteFile("/etc/hostname", f"{hostname}\n"),
                  WriteFile("/etc/hosts", hosts_with(facts.hosts or "127.0.0.1\tlocalhost\n",
                                                     hostname)),
                  Command(("hostnamectl", "set-hostname", hostname), live_only=True,
                          may_fail=True)]
    if account.autologin:
        steps.append(WriteFile(config.autologin_file, autologin_conf(account.login)))
    steps.append(WriteFile(config.marker, f"login={account.login}\n"
                           f"hostname={hostname or facts.hostname}\n"))
    if config.unit:
        steps.append(Command(("systemctl", "disable", config.unit), may_fail=True))
    return steps


def autologin_conf(login: str) -> str:
    return ("# Written by the first boot: the person chose to open their session\n"
            "# without typing their password. Delete this file to stop it.\n"
            f"[Seat:*]\nautologin-user={login}\nautologin-user-timeout=0\n")


# --- texts (French first; English when the person switches) ------------------------------


TEXTS: dict[str, dict[str, str]] = {
    "window_title": {"fr": "Premier démarrage", "en": "First start"},
    "title": {"fr": "Bonjour ! Ce poste est à vous.", "en": "Hello! This computer is yours."},
    "subtitle": {"fr": "Choisissez votre nom et votre mot de passe.",
                 "en": "Choose your name and your password."},
    "switch": {"fr": "_English", "en": "_Français"},
    "name": {"fr": "Votre prénom et votre nom", "en": "Your first name and last name"},
    "login": {"fr": "Votre identifiant sera : {login}", "en": "Your user name will be: {login}"},
    "login_none": {"fr": "Votre identifiant apparaîtra ici.",
                   "en": "Your user name will appear here."},
    "password": {"fr": "Votre mot de passe", "en": "Your password"},
    "password_hint": {"fr": "Au moins {n} caractères. Gardez-le pour vous.",
                      "en": "At least {n} characters. Keep it to yourself."},
    "again": {"fr": "Écrivez encore une fois votre mot de passe",
              "en": "Type your password once more"},
    "show": {"fr": "Afficher le mot de passe", "en": "Show the password"},
    "autologin": {"fr": "Au démarrage, ouvrir votre session sans taper votre mot de passe ?",
                  "en": "When the computer starts, open your session without your password?"},
    "autologin_no": {"fr": "Non : je tape mon mot de passe (conseillé)",
                     "en": "No: I type my password (advised)"},
    "autologin_yes": {"fr": "Oui : ma session s'ouvre toute seule",
                      "en": "Yes: my session opens by itself"},
    "autologin_hint": {"fr": "Si vous dites oui, toute personne qui allume ce poste verra "
                             "vos fichiers.",
                       "en": "If you say yes, anyone who switches this computer on will see "
                             "your files."},
    "step": {"fr": "Étape {i} sur 3", "en": "Step {i} of 3"},
    "next": {"fr": "Suivant", "en": "Next"},
    "back": {"fr": "Retour", "en": "Back"},
    "create": {"fr": "Créer mon compte", "en": "Create my account"},
    "working": {"fr": "Un instant : je prépare votre poste…",
                "en": "One moment: your computer is being prepared…"},
    "done_title": {"fr": "C'est prêt !", "en": "All set!"},
    "done": {"fr": "Votre identifiant est : {login}\nCliquez sur « Continuer ». Ensuite, "
                   "choisissez votre nom et tapez votre mot de passe.",
             "en": "Your user name is: {login}\nClick “Continue”. Then choose your name "
                   "and type your password."},
    "continue": {"fr": "Continuer", "en": "Continue"},
    "name_empty": {"fr": "Écrivez votre prénom.", "en": "Type your first name."},
    "password_empty": {"fr": "Choisissez un mot de passe.", "en": "Choose a password."},
    "password_short": {"fr": "Le mot de passe est trop court : il faut au moins {n} "
                             "caractères. Vous en avez écrit {k}.",
                       "en": "The password is too short: it needs at least {n} characters. "
                             "You typed {k}."},
    "password_control": {"fr": "Le mot de passe ne peut pas contenir de retour à la ligne. "
                               "Écrivez-le encore une fois.",
                         "en": "The password cannot contain a line break. Type it again."},
    "password_mismatch": {"fr": "Les deux mots de passe ne sont pas les mêmes. "
                                "Écrivez-les encore une fois.",
                          "en": "The two passwords are not the same. Type them again."},
    "failed": {"fr": "Le compte n'a pas pu être créé. Appelez un médiateur ou une "
                     "médiatrice et montrez-lui ce message :\n{detail}",
               "en": "The account could not be created. Call a mediator and show them "
                     "this message:\n{detail}"},
}
LANGUAGES = ("fr", "en")


def say(key: str, lang: str, **values: object) -> str:
    """The text `key` in `lang` ("fr" or "en"), with its {values} filled in."""
    return TEXTS[key][lang].format(**values)
